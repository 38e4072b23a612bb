"""Off the toy: conversations with their roles, one chat template, and the layouts people ship.

Preference data as it ships comes in three layouts; each line becomes the same
{prompt, chosen, rejected} of strings that the toy's pairs are (`to_pair`):

  Anthropic HH-RLHF   {"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": "…"}: whole dialogues, the
                      prompt implicit in both. The prompt is the shared dialogue up to and including the
                      LAST "\\n\\nAssistant:" marker; the completions are what follows it (with its space).
  TRL conversational  "prompt" a list of messages and one assistant message in each of "chosen" and
                      "rejected", or no "prompt" and two whole conversations (the prompt is the messages
                      they share).
  UltraFeedback       "prompt" a string and "chosen"/"rejected" whole conversations that repeat it as
  (binarized)         their last user turn; other keys (scores, ids, "messages") are ignored.

THE CHAT TEMPLATE (HH's own form, so an HH prompt already is its rendering): every message is
"\\n\\n" + its role's name + ": " + its content, names System, Human (the user) and Assistant, and
the prompt ends in the generation prompt "\\n\\nAssistant:"; a completion is " " + the assistant's
content. No role is dropped and no end-of-turn token is added (HH has none): a reply ends where the
tokenizer's end token ends the response. `CHAT_TEMPLATE` says the same in Jinja, the language of
transformers' `apply_chat_template`; an export carries it in tokenizer_config.json.

TRL cuts an implicit string prompt at the first character where chosen and rejected differ (stepping
back over one space). Where that falls at the assistant marker the two splits are the same strings;
where both replies begin alike ("The acting was superb" / "The acting was dull") TRL's prompt takes
"The acting was" out of both replies, and trains on " superb" / " dull"; a cut can fall inside a word
("The s" + "core" / "ongs"), and where the chosen string is the start of the rejected one TRL's loop
stops on its last character, which is then the whole chosen completion. Here the replies stay whole.
"""
from __future__ import annotations

import re

NAMES = {"system": "System", "user": "Human", "assistant": "Assistant"}  # role -> its name in the text
TURN = "\n\n{}: "
GENERATION_PROMPT = "\n\nAssistant:"
MARKERS = tuple(f"\n\n{name}:" for name in NAMES.values())

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}"
    "{{ '\\n\\n' + {'system': 'System', 'user': 'Human', 'assistant': 'Assistant'}[message['role']]"
    " + ': ' + message['content'] }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}")


def chat_template(before: str = "", after: str = "") -> str:
    """CHAT_TEMPLATE for a tokenizer whose prompts are wrapped in format tokens (minidpo's own
    `<|prompt|> … <|response|>`): `before` first, `after` behind the generation prompt."""
    if not before and not after:
        return CHAT_TEMPLATE
    return "{{ '" + before + "' }}" + CHAT_TEMPLATE.replace(
        "{{ '\\n\\nAssistant:' }}", "{{ '\\n\\nAssistant:" + after + "' }}")


def render_prompt(messages: list[dict]) -> str:
    """The prompt text of a conversation: every message with its role's name, then the generation
    prompt. A message whose content holds a turn marker is refused: it would read as two turns."""
    out = []
    for i, m in enumerate(messages):
        marker = next((k for k in MARKERS if k in m["content"]), None)
        if marker is not None:
            raise ValueError(f"message {i} ({m['role']}) holds the turn marker {marker!r}: rendered, it "
                             "would read as another turn")
        out.append(TURN.format(NAMES[m["role"]]) + m["content"])
    return "".join(out) + GENERATION_PROMPT


def render_completion(content: str) -> str:
    return " " + content


_SPLIT = re.compile("\n\n(" + "|".join(NAMES.values()) + "):")
_ROLE = {name: role for role, name in NAMES.items()}


def parse_prompt(text: str) -> list[dict]:
    """The messages of a rendered prompt (`render_prompt`'s inverse): who said what, read back."""
    parts = _SPLIT.split(text)
    if parts[0] or len(parts) < 3 or parts[-2:] != ["Assistant", ""]:
        raise ValueError("not a rendered prompt (turns '\\n\\nName: …' ending in '\\n\\nAssistant:')")
    return [{"role": _ROLE[name], "content": content.removeprefix(" ")}
            for name, content in zip(parts[1:-2:2], parts[2:-2:2])]


# --- the layouts ------------------------------------------------------------------------------
def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen completion, rejected completion) of an HH-RLHF line: the prompt ends with
    the last "\\n\\nAssistant:" marker, which chosen and rejected must share with all before it."""
    cut = []
    for key, text in (("chosen", chosen), ("rejected", rejected)):
        i = text.rfind(GENERATION_PROMPT)
        if i < 0:
            raise ValueError(f"no 'prompt', and {key!r} has no '\\n\\nAssistant:' turn (an implicit prompt, "
                             "as in HH-RLHF, ends at the last one)")
        if "\n\nHuman:" in text[i:]:
            raise ValueError(f"{key!r} ends in a Human turn, not the assistant's")
        cut.append(i + len(GENERATION_PROMPT))
    if chosen[:cut[0]] != rejected[:cut[1]]:
        raise ValueError("'chosen' and 'rejected' do not share a prompt (their dialogues differ before the "
                         "last '\\n\\nAssistant:')")
    return chosen[:cut[0]], chosen[cut[0]:], rejected[cut[1]:]


def messages(value, key: str) -> list[dict]:
    """A list of {"role", "content"} messages, checked (other keys of a message are ignored)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key!r} must be a non-empty list of messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in NAMES or not isinstance(m.get("content"), str):
            raise ValueError(f"{key}[{i}] must be {{\"role\": one of {', '.join(NAMES)}, \"content\": a string}}")
    return value


def _turns(value, key: str) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages(value, key)]


def from_conversations(obj: dict) -> tuple[list[dict], str, str]:
    """(prompt messages, chosen reply, rejected reply) of a line whose completions are conversations:
    TRL's explicit prompt (messages), TRL's implicit one (the messages chosen and rejected share) or
    UltraFeedback's (a string prompt that the conversations repeat as their last user turn)."""
    chosen, rejected = _turns(obj.get("chosen"), "chosen"), _turns(obj.get("rejected"), "rejected")
    for key, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1][0] != "assistant":
            raise ValueError(f"{key!r} ends in a {turns[-1][0]} turn, not the assistant's")
    prompt = obj.get("prompt")
    if isinstance(prompt, list):
        prompt = _turns(prompt, "prompt")
    else:
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n < len(chosen) - 1 or n < len(rejected) - 1:
            raise ValueError("'chosen' and 'rejected' do not share a prompt (their conversations differ before "
                             "their last message)")
        shared, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if isinstance(prompt, str):  # UltraFeedback: the string repeats the last user turn (or is it, alone)
            users = [c for r, c in shared if r == "user"]
            if not shared:
                shared = [("user", prompt)]
            elif not users or users[-1] != prompt:
                raise ValueError("the string 'prompt' is not the conversations' last user turn (UltraFeedback's "
                                 "conversations repeat it)")
        elif prompt is not None:
            raise ValueError(f"'prompt' must be a string or a list of messages, not {type(prompt).__name__}")
        elif not shared:
            raise ValueError("no 'prompt', and chosen and rejected share no first messages (an implicit prompt "
                             "is the messages they share)")
        prompt = shared
    for key, completion in (("chosen", chosen), ("rejected", rejected)):
        if len(completion) != 1 or completion[0][0] != "assistant":
            raise ValueError(f"{key!r} must end in exactly one assistant message after the prompt")
    if prompt[-1][0] == "assistant":
        raise ValueError("the prompt's last turn is the assistant's: the reply would be a second one")
    return [{"role": r, "content": c} for r, c in prompt], chosen[0][1], rejected[0][1]


def to_pair(obj: dict) -> dict:
    """{prompt, chosen, rejected} as text from a line of any layout above (plain string pairs are
    returned as they are). Other keys are kept. Raises ValueError saying what is wrong."""
    if isinstance(obj.get("chosen"), list) or isinstance(obj.get("rejected"), list) or isinstance(obj.get("prompt"), list):
        prompt, chosen, rejected = from_conversations(obj)
        return {**obj, "prompt": render_prompt(prompt), "chosen": render_completion(chosen),
                "rejected": render_completion(rejected)}
    if "prompt" not in obj and isinstance(obj.get("chosen"), str) and isinstance(obj.get("rejected"), str):
        prompt, chosen, rejected = split_hh(obj["chosen"], obj["rejected"])
        return {**obj, "prompt": prompt, "chosen": chosen, "rejected": rejected}
    return obj
