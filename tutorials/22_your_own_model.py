# %% [markdown]
# # 22 · Your own model and your own pairs
# **You need** lessons 03 (SFT), 09 (a DPO run) and 10 (reading a run); nothing else: the files are
# shipped. **You will see** a GPT-2 folder and HH-RLHF-style pairs taken from import to export: the
# layouts and the chat template, SFT on the chosen replies, DPO, a verdict without a gold reward
# (held-out accuracy beside its baselines, with standard errors, the KL and a degeneration check),
# transformers, and what a real GPT-2 small costs on this CPU.
# Off the toy there is no gold reward: nobody can score a reply to a real question in three lines
# of Python. What is left is what a practitioner has: a GPT-2 folder, a file of pairs as it ships
# (here in Anthropic HH-RLHF's layout, the data of the DPO paper's dialogue experiment), the DPO
# paper's recipe (SFT on the chosen replies, then DPO from that model), and evidence that needs no
# gold: held-out preference accuracy, margins, the log-probs of chosen and rejected, and replies
# to held-out prompts read side by side. At the end the tuned model leaves as a folder that
# transformers loads.
#
# **The shipped files** (`python -m minidpo.tools.own_data` makes them again, byte for byte from seed
# 0, and a test holds that). `data/tiny_gpt2/` is a 2-layer GPT-2-shaped model that we *pretrained*
# on film text: 3,000 dialogues about films in which every assistant turn helps, and 1,000 of the toy
# world's reviews. That text was drawn apart from the pair files: **none of its assistant turns is a
# reply of either file**, chosen or rejected, and each answers the question asked about the film
# asked, so it holds no worse reply of any kind (section 2 checks the first, and that it holds no
# hedge or brush-off). Like a real pretrained model, the base knows the kind of talk the pairs come from and
# has read neither side of any pair. In `data/hh_train.jsonl`
# (400 pairs) and `data/hh_val.jsonl` (200, films never trained on, no reply of the training file)
# the chosen reply answers the question asked, about the film asked; the rejected one is one of seven
# kinds of worse reply, each composed from parts, so that almost no two are alike: a good answer to
# *another* question, a good answer about *another film*, the film's title with a word dropped,
# hedges, a brush-off, one clause said three times, or the chosen reply's opening that then turns
# away. Each line names its kind in a key HH does not have, `rejected_kind` (readers ignore it; this
# lesson reads it to say *which* pairs a model gets right).
# Run: `python tutorials/22_your_own_model.py` (`--fast`: a smoke run). The same commands take a real
# GPT-2 and real data.

# %%
import importlib.util
import json
import math
import re
import time
from collections import Counter

import torch

from minidpo import chat, world
from minidpo.data import collate, sft_targets
from minidpo.dpo import pair_logps
from minidpo.evaluate import response_logps
from minidpo.harness import pipeline as P
from minidpo.harness.compare import paired
from minidpo.harness.runfolder import Run
from minidpo.harness.tutorial import claim, tutorial_run
from minidpo.interop.gpt2 import export_run, folder_tokenizer, import_gpt2, import_into_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.tokenizer import shipped_file
from minidpo.tools import own_data
from minidpo.tools.bench import GPT2_SMALL, describe_spread, dpo_step_cost

start = time.perf_counter()
lesson = tutorial_run("22: your own model and your own pairs")
FOLDER, TRAIN, VAL = shipped_file("tiny_gpt2"), shipped_file("hh_train.jsonl"), shipped_file("hh_val.jsonl")

# %% [markdown]
# ## 1. The pairs as they ship
# An HH line holds two whole dialogues and no prompt: the prompt is implicit, the conversation both
# share. minidpo cuts it after the **last** `\n\nAssistant:` marker, so each reply stays whole.
# TRL cuts at the first *character* where the two strings differ (stepping back over one space).
# Both rules written out, on the file's lines:

# %%
lines = [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines()]
val_lines = [json.loads(line) for line in VAL.read_text(encoding="utf-8").splitlines()]


def trl_split(chosen, rejected):
    """TRL's rule for an implicit string prompt (`extract_prompt`), written out: walk both strings to
    the first character that differs and step back over one space before it; when one string is the
    start of the other, the walk ends on the shorter one's LAST character (the loop's variable is
    left there), so that character becomes the whole chosen completion."""
    n = min(len(chosen), len(rejected))
    i = next((i for i in range(n) if chosen[i] != rejected[i]), None)
    if i is None:
        i = n - 1
    elif chosen[i - 1] == " ":
        i -= 1
    return chosen[:i], chosen[i:], rejected[i:]


def marker_split(chosen, rejected):
    """Ours: everything up to and including the last assistant marker."""
    cut = chosen.rindex(chat.GENERATION_PROMPT) + len(chat.GENERATION_PROMPT)
    assert chosen[:cut] == rejected[:cut]
    return chosen[:cut], chosen[cut:], rejected[cut:]


ours = [marker_split(x["chosen"], x["rejected"]) for x in lines]
trl = [trl_split(x["chosen"], x["rejected"]) for x in lines]
same = [t == o for t, o in zip(trl, ours)]
library = [chat.split_hh(x["chosen"], x["rejected"]) for x in lines]
# where TRL's cut falls when it differs: after whole shared words (its completions then start with a
# space); inside a word, when the first words that differ begin with the same letters ("The s|core" /
# "The s|ongs"); or before the last character, when the chosen reply is the start of the rejected one
contained = [not s and x["rejected"].startswith(x["chosen"]) for s, x in zip(same, lines)]
inside_word = [not s and not c and not t[1].startswith(" ") for s, c, t in zip(same, contained, trl)]
after_words = [not s and not c and not w for s, c, w in zip(same, contained, inside_word)]
n_differ = len(lines) - sum(same)
print(f"{len(lines)} lines; TRL's split is ours in {sum(same)}, and cuts inside the replies in {n_differ}: "
      f"{sum(after_words)} after whole shared words, {sum(inside_word)} inside a word, {sum(contained)} before the "
      f"last character (the chosen reply is the start of the rejected one); the library's chat.split_hh = ours on "
      f"all: {library == ours}")
for name, where in (("after shared words", after_words), ("inside a word", inside_word),
                    ("before the last character", contained)):
    i = next((i for i, w in enumerate(where) if w), None)
    if i is not None:
        print(f"TRL, cut {name}: prompt ends {trl[i][0][-30:]!r}\n   chosen {trl[i][1][:50]!r}\n   rejected "
              f"{trl[i][2][:50]!r}\n   minidpo's chosen {ours[i][1][:50]!r}")
claim("TRL's character split is not 'where both replies begin with the same words': it also cuts inside a word "
      "whose first letters both replies share, and where the chosen reply is the start of the rejected one it "
      "leaves the chosen completion one character", sum(inside_word) > 0 and sum(contained) > 0,
      inside_a_word=sum(inside_word), chosen_one_character=sum(contained), lines_split_differently=n_differ)

# %% [markdown]
# What the file holds: the kinds of rejected reply, how many replies are distinct, and whether any
# held-out reply was already in the training file.

# %%
replies = [own_data.replies(x) for x in lines]
val_replies = [own_data.replies(x) for x in val_lines]
kinds = Counter(x["rejected_kind"] for x in lines)
print("kinds of rejected reply (training file):", dict(kinds.most_common()))
distinct = {side: len({r[k] for r in replies}) for k, side in enumerate(("chosen", "rejected"))}
seen = {r for pair in replies for r in pair}
print(f"distinct replies: chosen {distinct['chosen']} of {len(lines)}, rejected {distinct['rejected']} of {len(lines)}")
claim("the rejected replies are varied: at least 3 in 4 are distinct, of 7 kinds",
      distinct["rejected"] >= 0.75 * len(lines) and len(kinds) == len(own_data.REJECTED_KINDS),
      distinct_rejected=distinct["rejected"], kinds=len(kinds))
claim("no held-out reply (chosen or rejected) is a reply of the training file",
      all(r not in seen for pair in val_replies for r in pair), held_out_pairs=len(val_lines))

# %% [markdown]
# Conversations (TRL's message lists, UltraFeedback's) become text through ONE chat template, HH's
# own form: `\n\nName: content` per message (System, Human, Assistant), then the generation prompt
# `\n\nAssistant:`. Every role stays in the text, so it survives tokenizing and decoding:

# %%
messages = [{"role": "system", "content": "You talk about films."}, {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello. Which film?"}, {"role": "user", "content": "Is The Quiet Bridge good?"}]
rendered = "".join(f"\n\n{chat.NAMES[m['role']]}: {m['content']}" for m in messages) + "\n\nAssistant:"
print(repr(rendered))
print(f"the library renders the same: {chat.render_prompt(messages) == rendered}")

# %% [markdown]
# ## 2. Import the GPT-2 folder
# The folder's `config.json`, weights and tokenizer files become the run's `sft.pt` and
# tokenizer (lesson 02's GPT, with GPT-2's tanh GELU); the same call takes a real GPT-2.
# `pretraining.json` says what the model read; the pretraining text is made again here from its
# seed and checked against the folder's record and against every reply of the pair files.

# %%
config = json.loads((FOLDER / "config.json").read_text())
print({k: config[k] for k in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "activation_function")})
record = json.loads((FOLDER / "pretraining.json").read_text())
text = own_data.make_files(record["seed"])["text"]
answered = {turn.split("\n\nHuman:")[0][1:] for doc in text for turn in doc.split(chat.GENERATION_PROMPT)[1:]}
file_replies = {r for pair in replies + val_replies for r in pair}
print(f"pretrained on {record['pretraining_text']['documents']} documents of film text "
      f"({record['settings']['steps']} steps; its last loss {record['loss_last_50_steps']:.3f} nats a token), "
      f"{len(answered)} distinct assistant turns")
claim("the base model read none of the pair files' replies: the pretraining text made again from its seed is the "
      "one the folder records, none of its assistant turns is a reply of either file, and it holds no hedge or "
      "brush-off", own_data.sha256("\n".join(text).encode()) == record["pretraining_text"]["sha256"]
      and not answered & file_replies and not any(s in doc for doc in text for s in own_data.HEDGES + own_data.BRUSH_OFFS),
      file_replies=len(file_replies), shared=len(answered & file_replies))
run = Run.create(lesson.out / "own_model", seed=lesson.seed, fast=lesson.fast, device=lesson.device.type)
run.tok = folder_tokenizer(FOLDER, run.path("tokenizer.tiktoken"))
run.quiet = True
run.claim_folder()
import_into_run(run, FOLDER)
base = run.load_policy("sft.pt")
print(f"tokenizer: {run.tok.kind}, {run.tok.vocab_size} tokens; roles read back from the tokens: "
      f"{chat.parse_prompt(run.tok.decode(run.tok.encode_prompt(rendered))) == messages}")

# %% [markdown]
# ## 3. SFT on the chosen replies
# The DPO paper's first step on HH. One batch by hand: prompt and reply tokenized apart, the
# prompt's targets −100, the cross-entropy over the reply tokens only. Then the library's stage
# (`sft --data` on the command line), held-out loss on held-out films.

# %%
pairs, _ = read_preferences(TRAIN)
encoded, _ = encode_pairs(run.tok, pairs[:8], base.config.block_size)
ids, mask = collate([chosen for chosen, _ in encoded], run.tok.end_id)
x, y = sft_targets(ids, mask)
with torch.no_grad():
    _, first_loss = base(x, y)
prompt_tokens = len(run.tok.encode_prompt(pairs[0]["prompt"]))
masked = bool((y[0, :prompt_tokens - 1] == -100).all() and y[0, prompt_tokens - 1] != -100)
print(f"row 0: {prompt_tokens} prompt tokens, all targets -100 but the last (it predicts the reply's first "
      f"token): {masked}; {int(mask[0].sum())} reply tokens; loss on the 8 chosen replies before SFT: {first_loss.item():.3f}")
sft_settings = dict(epochs=3, lr=1e-3) if not run.fast else dict(steps=20, lr=3e-4, max_pairs=160)
sft_metrics = P.stage_sft_on_pairs(run, TRAIN, VAL, **sft_settings)
print(f"SFT: {sft_metrics['steps']} steps, held-out loss (nats a reply token) {sft_metrics['val_loss_init']:.3f} -> "
      f"{sft_metrics['val_loss']:.3f}; the imported model is kept as base.pt")

# %% [markdown]
# ## 4. DPO from the SFT model
# The SFT model is now the policy's start AND its reference (its log-probs cached once); β = 0.1,
# TRL's default for real data.

# %%
dpo_settings = dict(beta=0.1, lr=2e-4, epochs=2 if not run.fast else 1)
m = P.stage_dpo(run, TRAIN, VAL, max_pairs=64 if run.fast else None, **dpo_settings)
first, last = m["history"][0], m["history"][-1]
print(f"DPO: {m['steps']} steps, held-out loss {first['eval/loss']:.4f} (ln 2 = {math.log(2):.4f}) -> "
      f"{last['eval/loss']:.4f}")

# %% [markdown]
# ## 5. Judging without a gold reward
# On the held-out pairs (films never trained on), how often does a score rank the chosen reply
# above the rejected one? (Ties count as wrong, TRL's way.) Compared like for like — each model's
# raw log-prob log π(y), and each implicit reward β·log π/π_ref against the model it moved from:
# the SFT model against the imported base, DPO against its own reference (the SFT model, the one
# its loss saw), and DPO against the base (the whole recipe). And a score that needs no model: the
# longer reply, and the base's log-prob per reply token (a summed log-prob favours short replies:
# does length explain it?). Each accuracy p on n pairs has a binomial standard error √(p(1 − p)/n);
# two scores are compared pair by pair (the same pairs), with the 95 % interval of the difference.

# %%
sft, dpo = run.load_policy("sft.pt"), run.load_policy("dpo.pt")
val_pairs, _ = read_preferences(VAL)
val_enc, _ = encode_pairs(run.tok, val_pairs, sft.config.block_size)
n_val = len(val_pairs)
logps = {name: pair_logps(model, val_enc, run.tok.end_id, average=False)
         for name, model in (("base", base), ("sft", sft), ("dpo", dpo))}
reply_tokens = torch.tensor([[int(sum(c[1])), int(sum(r[1]))] for c, r in val_enc], dtype=torch.float)
beta = dpo_settings["beta"]
scores = {"longer reply (tokens)": reply_tokens,
          "base log-prob": logps["base"], "base log-prob per reply token": logps["base"] / reply_tokens,
          "SFT log-prob": logps["sft"], "DPO log-prob": logps["dpo"],
          "SFT's implicit reward (vs base)": beta * (logps["sft"] - logps["base"]),
          "DPO's implicit reward (vs SFT, its reference)": beta * (logps["dpo"] - logps["sft"]),
          "DPO's implicit reward (vs base)": beta * (logps["dpo"] - logps["base"])}
right = {name: (s[:, 0] > s[:, 1]).float() for name, s in scores.items()}  # a tie is wrong
se = lambda p: math.sqrt(p * (1 - p) / n_val)
kind_names = sorted(own_data.REJECTED_KINDS)
val_kinds = [p["rejected_kind"] for p in val_pairs]
print(f"{n_val} held-out pairs. accuracy ± its standard error, then by kind of rejected reply "
      f"({', '.join(f'{k} {val_kinds.count(k)}' for k in kind_names)})")
print(f"{'':47s} {'all':>12s} " + " ".join(f"{k[:10]:>10s}" for k in kind_names))
for name, r in right.items():
    p = r.mean().item()
    by_kind = [sum(x for x, k in zip(r.tolist(), val_kinds) if k == kind) / max(1, val_kinds.count(kind)) for kind in kind_names]
    print(f"{name:47s} {p:.3f} ± {se(p):.3f} " + " ".join(f"{b:10.2f}" for b in by_kind))
acc = {name: r.mean().item() for name, r in right.items()}
dpo_key, sft_key, base_key = "DPO's implicit reward (vs SFT, its reference)", "SFT's implicit reward (vs base)", "base log-prob"


def versus(a: str, b: str):
    """a − b pair by pair: the Difference, and how many pairs only a (only b) ranks right."""
    d = paired(right[a].tolist(), right[b].tolist())
    only_a, only_b = int(((right[a] == 1) & (right[b] == 0)).sum()), int(((right[a] == 0) & (right[b] == 1)).sum())
    print(f"{a} − {b}: {d.mean:+.3f} (95 % interval {d.low:+.3f} … {d.high:+.3f}, {n_val} pairs, one training seed): "
          f"{only_a} pairs right only for the first, {only_b} only for the second")
    return d, only_a, only_b


gain, only_dpo, only_sft = versus(dpo_key, sft_key)
behind, only_dpo_vs_base, only_base = versus(dpo_key, base_key)
claim("a model that never read a rejected reply already ranks at least 9 held-out pairs in 10 by its raw log-prob, "
      "and not by length: per reply token it ranks about as many, while the longer reply is the chosen one in under "
      "half the pairs", acc[base_key] >= 0.9 and acc["base log-prob per reply token"] >= 0.9
      and acc["longer reply (tokens)"] < 0.5, base=acc[base_key], per_token=acc["base log-prob per reply token"],
      longer=acc["longer reply (tokens)"])
claim("DPO's implicit reward ranks more held-out pairs right than SFT's (its 95 % interval is above 0)",
      gain.verdict == "above", dpo=acc[dpo_key], sft=acc[sft_key], pairs_only_dpo=only_dpo, pairs_only_sft=only_sft)
claim("but fewer than the base's raw log-prob: the score DPO trained is not the best ranking of these pairs",
      behind.verdict == "below", dpo=acc[dpo_key], base=acc[base_key], pairs_only_base=only_base)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The approximate 95 % (Wilson score) interval of a proportion k/n: unlike p ± 1.96·SE it stays
    honest on a few dozen pairs and at 0 or 1."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


cut_idx = [i for i, k in enumerate(val_kinds) if k == "title_cut"]
cut_n, cut_right, cut_base = len(cut_idx), int(right[dpo_key][cut_idx].sum()), int(right[base_key][cut_idx].sum())
cut_low, cut_high = wilson(cut_right, cut_n)
cut_reading = ("prefers the cut title: the whole 95 % interval of its accuracy is below 0.5 — one kind goes the wrong way"
               if cut_high < 0.5 else "ranks the whole title above the cut one: the whole 95 % interval is above 0.5"
               if cut_low > 0.5 else "shows no measurable preference either way: the 95 % interval of its accuracy covers 0.5")
claim(f"on the {cut_n} pairs whose rejected reply cuts the film's title, DPO's implicit reward ranks {cut_right} right "
      f"(ties count as wrong) and {cut_reading}", cut_n > 0,
      right=cut_right, of=cut_n, low=cut_low, high=cut_high)
if cut_n >= 2:
    cut_vs_base = paired(right[dpo_key][cut_idx].tolist(), right[base_key][cut_idx].tolist())
    claim(f"on those pairs DPO's implicit reward against the base's raw log-prob (pair by pair): "
          f"{cut_vs_base.mean:+.3f} (95 % interval {cut_vs_base.low:+.3f} … {cut_vs_base.high:+.3f}): "
          + {"below": "the base ranks more of them right", "above": "DPO's implicit reward ranks more of them right",
             "no measurable difference": "no measurable difference"}[cut_vs_base.verdict],
          cut_vs_base.n == cut_n, dpo_right=cut_right, base_right=cut_base)

# %% [markdown]
# How to read the table. A raw log-prob asks "is this likely text here?"; an implicit reward asks
# "how much did tuning raise this reply against that one?". A model that read only helpful film
# talk finds a hedge, a brush-off or a loop unlikely whatever it is asked, so raw log-probs rank
# most of these pairs without any preference training — the score to beat is the best of the rows,
# never the weakest. An implicit reward sees only what its training changed, which is why it can be
# near a coin flip for a tuning that raises both replies alike (as SFT on the chosen replies may)
# and still rank well for one trained on the contrast (DPO). A kind where DPO goes the wrong way, if
# the claim above finds one, is read as a warning; one guess (a guess, not shown): the many
# wrong-film pairs teach DPO to push down replies that name a film in full, and a cut title names
# less of one.

# %%
sft_p, sft_k = acc[sft_key], int(right[sft_key].sum())
sft_low, sft_high = wilson(sft_k, n_val)
near_coin = sft_low <= 0.5 <= sft_high
claim(f"this run: SFT's implicit reward ranks {sft_p:.3f} of the held-out pairs right (± {se(sft_p):.3f}; 95 % interval "
      f"{sft_low:.3f} … {sft_high:.3f}): "
      + ("indistinguishable from a coin flip" if near_coin else
         f"measurably {'better' if sft_p > 0.5 else 'worse'} than a coin flip, so SFT did not raise both sides alike"),
      n_val > 0, accuracy=sft_p, standard_error=se(sft_p))

# %% [markdown]
# The margin DPO trained (`rewards/margins`, β·h with h = log π/π_ref(chosen) − log π/π_ref(rejected))
# and where it came from: the chosen and the rejected log-probs, each against the reference. A
# margin is not a score to maximise: σ(β·h) near 1 means the loss stopped pushing that pair, and a
# large h says how far the policy has moved from its reference on these replies. So the KL beside
# it: KL(π‖π_ref) = E over the policy's own replies (temperature 1, 2 per held-out prompt) of
# Σ_t log π/π_ref, in nats.

# %%
change = (logps["dpo"] - logps["sft"]).mean(0)
h = (logps["dpo"] - logps["sft"])[:, 0] - (logps["dpo"] - logps["sft"])[:, 1]
margin = beta * h.mean().item()
print(f"margin (rewards/chosen − rewards/rejected): {margin:+.3f}; = the run's eval/rewards/margins "
      f"{last['eval/rewards/margins']:+.3f}; median h {h.median().item():.2f} nats; σ(β·h) > 0.9 on "
      f"{(torch.sigmoid(beta * h) > 0.9).float().mean().item():.2f} of the pairs")
print(f"log-probs from SFT to DPO, held-out means (nats a reply): chosen {change[0]:+.2f}, rejected {change[1]:+.2f}")
claim("DPO widened the margin by pushing both replies down, the rejected ones much further: the held-out chosen "
      "replies lost log-prob too (the loss only asks the gap to grow)", change[0] < 0 and change[1] < change[0], chosen_change=change[0].item(), rejected_change=change[1].item())
prompts_all = [p["prompt"] for p in val_pairs]
kl_prompts = prompts_all * 2
gen = make_generator(lesson.seed, run.device)
kl = {}
for name, model, ref in (("SFT vs base", sft, base), ("DPO vs SFT", dpo, sft)):
    drawn = sample(model, run.tok, kl_prompts, gen, temperature=1.0, max_new_tokens=64)
    per_reply = (response_logps(model, run.tok, kl_prompts, drawn).logps
                 - response_logps(ref, run.tok, kl_prompts, drawn).logps)
    kl[name] = (per_reply.mean().item(), per_reply.std().item() / math.sqrt(len(per_reply)))
    print(f"KL({name}) = {kl[name][0]:.2f} ± {kl[name][1]:.2f} nats a reply ({len(per_reply)} replies)")
saturated = (torch.sigmoid(beta * h) > 0.9).float().mean().item()
claim("the margin is a warning, not a success: on a third or more of the held-out pairs σ(β·h) > 0.9 (the loss "
      "has all but stopped pushing them), and DPO moved further from its reference than SFT moved from the base",
      saturated >= 1 / 3 and kl["DPO vs SFT"][0] - kl["SFT vs base"][0] > 2 * math.hypot(kl["DPO vs SFT"][1], kl["SFT vs base"][1]),
      median_h=h.median().item(), saturated=saturated, kl_dpo=kl["DPO vs SFT"][0], kl_sft=kl["SFT vs base"][0])

# %% [markdown]
# A degeneration check on greedy replies to all the held-out prompts, SFT against DPO, counted from
# the text alone: a repeated word 3-gram (a loop); a reply cut at the token limit (no end); and the
# film's title — when the question names the film, does the reply name it whole, name another film,
# or drop a word of it ("The Golden" for "The Golden Engine")? Each is a fraction of the replies (of
# those whose question names a film, for the three title columns); "distinct" is the fraction of
# different replies, and the last column counts the questions that name a film. Then read some.

# %%
TITLE = re.compile(r"The (?:" + "|".join(world.TITLE_ADJ) + r")(?: (?:" + "|".join(world.TITLE_NOUN) + r"))?"
                   r"|The (?:" + "|".join(world.TITLE_NOUN) + r")\b")


def film_named(question: str) -> str | None:
    return next((t for t in world.TITLES if t in question), None)


def degeneration(prompts: list[str], texts: list[str], ended: list[bool]) -> dict:
    """Fractions of replies with a repeated word 3-gram, cut at the token limit, and, where the last
    question names a film, naming it whole / naming another film / a cut title."""
    def loops(t):
        w = t.split()
        grams = list(zip(w, w[1:], w[2:]))
        return len(grams) != len(set(grams))
    asked = [(film_named(chat.parse_prompt(p)[-1]["content"]), t) for p, t in zip(prompts, texts)]
    named = [(film, TITLE.findall(t)) for film, t in asked if film is not None]
    return {"repeated 3-gram": sum(map(loops, texts)) / len(texts), "no end": 1 - sum(ended) / len(ended),
            "film named whole": sum(film in found for film, found in named) / len(named),
            "another film": sum(any(f in world.TITLES and f != film for f in found) for film, found in named) / len(named),
            "title cut": sum(any(f not in world.TITLES for f in found) for film, found in named) / len(named),
            "distinct": len(set(texts)) / len(texts), "asked about a film": len(named)}


greedy, checks = {}, {}
for name, model in (("SFT", sft), ("DPO", dpo)):
    drawn = sample(model, run.tok, prompts_all, make_generator(0, run.device), temperature=0, max_new_tokens=64)
    greedy[name] = [run.tok.decode_response(r) for r in drawn]
    checks[name] = degeneration(prompts_all, greedy[name], [r[-1] == run.tok.end_id for r in drawn])
print(f"{'greedy replies':16s} " + " ".join(f"{k:>18s}" for k in checks["SFT"]))
for name, c in checks.items():
    print(f"{name:16s} " + " ".join(f"{v:18.3f}" if isinstance(v, float) else f"{v:18d}" for v in c.values()))
named = checks["DPO"]["asked about a film"]
whole = {k: round(c["film named whole"] * named) for k, c in checks.items()}
cut = {k: round(c["title cut"] * named) for k, c in checks.items()}


def title_marks(texts: list[str]) -> list[tuple[int, int]]:
    """Per question that names a film (in the prompts' order): does the reply name it whole, does it cut a title?"""
    marks = []
    for p, t in zip(prompts_all, texts):
        film = film_named(chat.parse_prompt(p)[-1]["content"])
        if film is not None:
            found = TITLE.findall(t)
            marks.append((int(film in found), int(any(f not in world.TITLES for f in found))))
    return marks


marks = {k: title_marks(t) for k, t in greedy.items()}  # the same questions for both: paired question by question
said = {"below": "less often than", "above": "more often than", "no measurable difference": "about as often as"}
if named >= 2:
    d_whole = paired([m[0] for m in marks["DPO"]], [m[0] for m in marks["SFT"]])
    d_cut = paired([m[1] for m in marks["DPO"]], [m[1] for m in marks["SFT"]])
    wrong_way = d_whole.verdict == "below" and d_cut.verdict == "above"
    claim(f"on the {named} questions that name a film (greedy replies, paired question by question): DPO names the film "
          f"whole {said[d_whole.verdict]} SFT ({whole['DPO']} against {whole['SFT']}; difference {d_whole.mean:+.3f}, 95 % "
          f"interval {d_whole.low:+.3f} … {d_whole.high:+.3f}) and cuts a title {said[d_cut.verdict]} SFT ({cut['DPO']} "
          f"against {cut['SFT']}; {d_cut.mean:+.3f}, {d_cut.low:+.3f} … {d_cut.high:+.3f})"
          + ("; the kind of pair its implicit reward gets wrong shows in its own replies" if wrong_way and cut_high < 0.5 else ""),
          d_whole.n == d_cut.n == named, questions_naming_a_film=named)
for i in range(4):
    turns = chat.parse_prompt(prompts_all[i])
    print(f"[question {sum(t['role'] == 'user' for t in turns)}] Human: {turns[-1]['content']}\n   SFT:{greedy['SFT'][i]}"
          f"\n   DPO:{greedy['DPO'][i]}")

# %% [markdown]
# Read the replies with the counts: a reply that names another film, or a title with a word missing,
# is what the table counts; a broken sentence is what no count here catches, and only reading finds.
# They are greedy replies to four prompts of one run: examples, not evidence.

# %% [markdown]
# ## 6. Out, to transformers
# `export` writes a Hugging Face GPT-2 folder; its tokenizer_config.json carries the chat template.
# Imported back, it is the same model bit for bit. This run renders the carried template with jinja2
# (the engine `apply_chat_template` runs it in); when transformers is installed it also loads the
# folder, renders the prompt with `apply_chat_template` and generates.

# %%
to = run.path("exported")
if not to.exists():
    export_run(run.out, "dpo", run.tok, to)
again = import_gpt2(to)
bit_for_bit = all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), dpo.state_dict().values()))
template = json.loads((to / "tokenizer_config.json").read_text())["chat_template"]
print(f"{sorted(f.name for f in to.iterdir())}\nre-imported bit for bit: {bit_for_bit}; "
      f"chat template carried: {template == chat.CHAT_TEMPLATE}")
if importlib.util.find_spec("jinja2"):
    import jinja2
    jinja = jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True)
    print(f"the carried template rendered by jinja2 = chat.render_prompt: {jinja == chat.render_prompt(messages)}")
if importlib.util.find_spec("transformers"):
    from transformers import AutoTokenizer, GPT2LMHeadModel, __version__
    hf_tok, hf_model = AutoTokenizer.from_pretrained(to), GPT2LMHeadModel.from_pretrained(to)
    hf_prompt = hf_tok.apply_chat_template(chat.parse_prompt(prompts_all[0]), tokenize=False, add_generation_prompt=True)
    generated = hf_model.generate(**hf_tok(hf_prompt, return_tensors="pt"), max_new_tokens=64, do_sample=False,
                                  eos_token_id=run.tok.end_id, pad_token_id=run.tok.end_id)
    hf_reply = hf_tok.decode(generated[0, len(hf_tok(hf_prompt)["input_ids"]):], skip_special_tokens=True)
    print(f"transformers {__version__}: apply_chat_template gives our prompt {hf_prompt == prompts_all[0]}; greedy "
          f"reply {hf_reply!r}, ours {greedy['DPO'][0]!r}: same {hf_reply == greedy['DPO'][0]}")
else:
    print("(transformers is not installed here, so this run did not run it; docs/your-own-data.md records a check "
          "by hand with transformers 5.25.0. `pip install transformers` and this cell renders with "
          "apply_chat_template and generates with the exported folder)")

# %% [markdown]
# ## 7. What a real GPT-2 small costs here
# A GPT-2-small-shaped model (random weights, 124 M parameters) on this machine: one pair, its two
# rows of different lengths padded to the longer (as minidpo pads a batch: to its longest row),
# timed 5 times each, interleaved, after a warm-up: the DPO step (forward, backward, AdamW) and the
# reference's forward pass (minidpo caches it once a run, one pass per pair). A shared machine's
# slow spells show in the max; the min is the least disturbed run. `--fast` times a tiny model instead.
# Everything after the measurement is arithmetic from it.

# %%
shape = dict(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32) if run.fast else GPT2_SMALL
rows_at = (64, 16, 32) if run.fast else (256, 64, 128)  # longest row, prompt, shortest row
cost = dpo_step_cost(shape, pairs=1, tokens=rows_at[0], prompt_tokens=rows_at[1], shortest=rows_at[2], reps=5)
print(f"{cost['params'] / 1e6:.1f} M parameters, {torch.get_num_threads()} threads; rows of {cost['real_tokens']} "
      f"tokens padded to {cost['padded_tokens']}; first loss {cost['first_loss']:.4f}\n"
      f"  DPO step: {describe_spread(cost['step'])}\n  reference's pass: {describe_spread(cost['reference'])}")
claim("the reference's forward pass costs less than a training step (their fastest runs, the least disturbed by "
      "other work): caching it once spares that pass at every later epoch", cost["reference"]["min"] < cost["step"]["min"],
      reference_min_s=cost["reference"]["min"], step_min_s=cost["step"]["min"])
scale = 16 * 512 / cost["padded_tokens"]  # 8 pairs whose longest row is 512 tokens, padded as measured
hh_steps = 160_000 // 8
days = {k: hh_steps * scale * (cost["step"][k] + cost["reference"][k]) / 86400 for k in ("min", "median", "max")}
gpu = (6 + 2) * cost["params"] * 16 * 512 / 50e12  # 6N FLOPs a token to train, 2N for the reference's pass
print(f"arithmetic from that, scaled by padded tokens (attention's T² share ignored): a step of 8 pairs whose longest row is 512 tokens, with its "
      f"reference pass, ≈ {scale * (cost['step']['median'] + cost['reference']['median']):.0f} s here; HH's 160,000 "
      f"pairs once ≈ {days['median']:.1f} days (from the fastest and slowest runs: {days['min']:.1f} to "
      f"{days['max']:.1f})")
print(f"arithmetic, not measured (no GPU ran this): at an assumed 50 TFLOP/s a GPU would take ≈ {gpu:.2f} s for "
      f"that step; scripts/gpu_check.sh measures a step of this shape on a real GPU")
seconds = time.perf_counter() - start
print(f"this lesson took {seconds:.0f} s")

# %% [markdown]
# ## What this file cannot show
# One training seed, and 200 held-out pairs: an accuracy's standard error is at most √(0.25/200) ≈ 0.035,
# and a difference of 0.05 between two scores is 10 pairs; the intervals above are over pairs, not
# over training runs, so they do not say how another seed would land. The pairs are ours: a grammar of film
# talk, labels without noise (HH's annotators agree with each other far less often), and seven kinds
# of worse reply — held-out accuracy says which of *those* kinds a score separates, not how good a
# reply is. The replies are read by counting what their text shows (loops, titles), never by a
# reward of their quality. And the model is a 0.15 M-parameter toy: what holds here is a way of
# reading a run, not a forecast of GPT-2's numbers.
#
# ## Questions
# 1. *Why does SFT come before DPO?* The paper's reason (§4): its pairs were sampled from an SFT
#    model, and DPO's reference should be the policy that produced them; when that model is not
#    available, fine-tuning on the chosen replies brings π_ref close to it, which mitigates the
#    distribution shift between the policy that made the pairs and the reference DPO uses. Here
#    nobody sampled the pairs (we wrote them), and the base already read talk of their kind: the claim
#    below says how far SFT had to move it, against how far DPO moved after.
# 2. *Did the chosen log-probs fall?* Section 5's claim reads the signs: DPO widens the margin,
#    and may do it by pushing both replies down (lesson 16); the held-out pairs here got no push of
#    their own, so their log-probs moved with the shared parameters.
# 3. *When do TRL's split and ours differ?* Wherever the two replies begin with the same
#    *characters*: after whole shared words, inside a word whose first letters both share
#    ("The s|core" / "The s|ongs"), and, when the chosen reply is the start of the rejected one, before
#    its last character; section 1 counts each in this file.

# %%
shift = (logps["sft"] - logps["base"]).mean(0)
loss_moved = 1 - sft_metrics["val_loss"] / sft_metrics["val_loss_init"]
claim("here SFT moved the base little: the held-out loss on the chosen replies fell by under a tenth, and SFT's KL "
      "from the base is a fraction of DPO's from SFT", 0 < loss_moved < 0.1 and kl["SFT vs base"][0] < 0.5 * kl["DPO vs SFT"][0],
      loss_fell_by=loss_moved, chosen_gain=shift[0].item(), rejected_gain=shift[1].item(),
      kl_sft_vs_base=kl["SFT vs base"][0], kl_dpo_vs_sft=kl["DPO vs SFT"][0])
print(f"answers: chosen {change[0]:+.2f}, rejected {change[1]:+.2f} nats from SFT to DPO; lines split differently: "
      f"{n_differ} ({sum(inside_word)} inside a word, {sum(contained)} with a one-character chosen completion)")

# %% [markdown]
# ## What to remember
# - Real files come in layouts: HH's implicit prompt ends at the last `\n\nAssistant:`; TRL's
#   character split cuts wherever the replies' first *characters* agree, whole words or not (and
#   leaves one character when the chosen reply is the start of the rejected one);
#   conversations become text through one template that keeps every role, and the exported folder
#   carries it.
# - The paper's recipe off the toy: SFT on the chosen replies, then DPO with that model as the start
#   and the reference (`sft --data`, then `dpo --data`).
# - Without a gold reward, judge on held-out pairs like for like: every model's raw log-prob and
#   every implicit reward against the model it moved from, with standard errors and the difference
#   in pairs; the margin read with the KL (a huge h is a warning); a degeneration check; the replies
#   read. And say what the file cannot show.
