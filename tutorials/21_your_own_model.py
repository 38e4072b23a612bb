# %% [markdown]
# # 21 · Your own model and your own pairs
# **You need** lessons 03 (SFT), 09 (a DPO run) and 10 (reading a run); nothing else: the files are
# shipped. **You will see** a GPT-2 folder and HH-RLHF-style pairs taken from import to export: the
# layouts and the chat template, SFT on the chosen replies, DPO, a verdict without a gold reward,
# transformers, and what a real GPT-2 small costs on this CPU.
# Off the toy there is no gold reward: nobody can score a reply to a real question in three lines
# of Python. What is left is what a practitioner has: a GPT-2 folder, a file of pairs as it ships
# (here in Anthropic HH-RLHF's layout, the data of the DPO paper's dialogue experiment), the DPO
# paper's recipe (SFT on the chosen replies, then DPO from that model), and evidence that needs no
# gold: held-out preference accuracy, margins, the log-probs of chosen and rejected, and replies
# to held-out prompts read side by side. At the end the tuned model leaves as a folder that
# transformers loads.
# Run: `python tutorials/21_your_own_model.py` (`--fast`: a smoke run). It works on a tiny
# GPT-2-shaped folder and a small HH-format file shipped in data/ (our own sentences:
# `python -m minidpo.tools.own_data` makes them); the same commands take a real GPT-2 and real data.

# %%
import importlib.util
import json
import math
import time

import torch

from minidpo import chat
from minidpo.checkpoint import read_json
from minidpo.data import collate, sft_targets
from minidpo.dpo import pair_logps
from minidpo.harness import pipeline as P
from minidpo.harness.runfolder import Run
from minidpo.harness.tutorial import tutorial_run
from minidpo.interop.gpt2 import export_run, folder_tokenizer, import_gpt2, import_into_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.sft import PairsSFTConfig
from minidpo.tokenizer import shipped_file
from minidpo.tools.bench import GPT2_SMALL, dpo_step_cost

start = time.perf_counter()
lesson = tutorial_run("21: your own model and your own pairs")
FOLDER, TRAIN, VAL = shipped_file("tiny_gpt2"), shipped_file("hh_train.jsonl"), shipped_file("hh_val.jsonl")

# %% [markdown]
# ## 1. The pairs as they ship
# An HH line holds two whole dialogues and no prompt: the prompt is implicit, the conversation both
# share. minidpo cuts it after the **last** `\n\nAssistant:` marker, so each reply stays whole.
# TRL cuts at the first character where the two strings differ (stepping back over one space).
# Both rules written out, on the file's lines:

# %%
lines = [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines()]


def trl_split(chosen, rejected):
    """TRL's rule for an implicit string prompt: the longest common prefix, less a trailing space."""
    i = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
    if i > 0 and chosen[i - 1] == " ":
        i -= 1
    return chosen[:i], chosen[i:], rejected[i:]


def marker_split(chosen, rejected):
    """Ours: everything up to and including the last assistant marker."""
    cut = chosen.rindex(chat.GENERATION_PROMPT) + len(chat.GENERATION_PROMPT)
    assert chosen[:cut] == rejected[:cut]
    return chosen[:cut], chosen[cut:], rejected[cut:]


ours = [marker_split(x["chosen"], x["rejected"]) for x in lines]
same = [trl_split(x["chosen"], x["rejected"]) == o for x, o in zip(lines, ours)]
library = [chat.split_hh(x["chosen"], x["rejected"]) for x in lines]
print(f"{len(lines)} lines; TRL's split is ours in {sum(same)}, and cuts inside the replies in "
      f"{len(lines) - sum(same)}; the library's chat.split_hh = ours on all: {library == ours}")
example = next(x for x, s in zip(lines, same) if not s)
for name, (prompt, chosen, rejected) in (("TRL", trl_split(**example)), ("minidpo", marker_split(**example))):
    print(f"{name:8s} prompt ends {prompt[-40:]!r}\n         chosen {chosen!r}\n         rejected {rejected!r}")

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

# %%
config = json.loads((FOLDER / "config.json").read_text())
print({k: config[k] for k in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "activation_function")})
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
sft_settings = dict(epochs=3, lr=1e-3) if not run.fast else dict(steps=20, lr=1e-3, max_pairs=160)
sft_metrics = P.stage_sft_on_pairs(run, TRAIN, VAL, **sft_settings)
print(f"SFT: {sft_metrics['steps']} steps, held-out loss {sft_metrics['val_loss_init']:.3f} -> "
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
# Three numbers on the held-out pairs (films never trained on). The implicit reward
# r̂ = β·log π/π_ref ranks chosen above rejected how often (ties count as wrong, TRL's way)? Compared
# with the SFT model's own ranking, log π_sft(chosen) > log π_sft(rejected) — which is what SFT alone
# would give — and with the SFT model's implicit reward against the imported one.

# %%
sft, dpo = run.load_policy("sft.pt"), run.load_policy("dpo.pt")
val_pairs, _ = read_preferences(VAL)
val_enc, _ = encode_pairs(run.tok, val_pairs, sft.config.block_size)
print(f"{len(val_pairs)} held-out pairs")
logps = {name: pair_logps(model, val_enc, run.tok.end_id, average=False)
         for name, model in (("base", base), ("sft", sft), ("dpo", dpo))}
ranks_right = lambda scores: (scores[:, 0] > scores[:, 1]).float().mean().item()  # a tie is wrong
accuracy = {"SFT log-probs (chosen > rejected)": ranks_right(logps["sft"]),
            "SFT's implicit reward vs the import": ranks_right(logps["sft"] - logps["base"]),
            "DPO's implicit reward vs SFT": ranks_right(logps["dpo"] - logps["sft"])}
sft_acc, dpo_acc = accuracy["SFT log-probs (chosen > rejected)"], accuracy["DPO's implicit reward vs SFT"]
for name, a in accuracy.items():
    print(f"held-out preference accuracy, {name}: {a:.3f}")
rewards = dpo_settings["beta"] * (logps["dpo"] - logps["sft"])
margin = (rewards[:, 0] - rewards[:, 1]).mean().item()
change = (logps["dpo"] - logps["sft"]).mean(0)
print(f"margin (rewards/chosen − rewards/rejected): {margin:+.3f}; = the run's eval/rewards/margins "
      f"{last['eval/rewards/margins']:+.3f}")
print(f"log-probs from SFT to DPO, held-out means: chosen {change[0]:+.2f} ({'went up' if change[0] > 0 else 'went DOWN'}), "
      f"rejected {change[1]:+.2f}")

# %% [markdown]
# And read the replies: the SFT model and the DPO model, greedy, on held-out prompts.

# %%
prompts = [p["prompt"] for p in val_pairs[:3]]
replies = {name: [run.tok.decode_response(r) for r in sample(model, run.tok, prompts, make_generator(0, run.device),
                                                                 temperature=0, max_new_tokens=40)]
           for name, model in (("SFT", sft), ("DPO", dpo))}
for i, prompt in enumerate(prompts):
    turns = chat.parse_prompt(prompt)
    print(f"[{len(turns)} turns] Human: {turns[-1]['content']}\n   SFT:{replies['SFT'][i]}\n   DPO:{replies['DPO'][i]}")

# %% [markdown]
# ## 6. Out, to transformers
# `export` writes a Hugging Face GPT-2 folder; its tokenizer_config.json carries the chat template,
# so `apply_chat_template` renders a conversation as minidpo does. Imported back, it is the same
# model bit for bit.

# %%
to = run.path("exported")
if not to.exists():
    export_run(run.out, "dpo", run.tok, to)
again = import_gpt2(to)
bit_for_bit = all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), dpo.state_dict().values()))
template = json.loads((to / "tokenizer_config.json").read_text())["chat_template"]
print(f"{sorted(f.name for f in to.iterdir())}\nre-imported bit for bit: {bit_for_bit}; "
      f"chat template carried: {template == chat.CHAT_TEMPLATE}")
if importlib.util.find_spec("transformers"):
    from transformers import AutoTokenizer, GPT2LMHeadModel
    hf_tok, hf_model = AutoTokenizer.from_pretrained(to), GPT2LMHeadModel.from_pretrained(to)
    hf_prompt = hf_tok.apply_chat_template(chat.parse_prompt(prompts[0]), tokenize=False, add_generation_prompt=True)
    generated = hf_model.generate(**hf_tok(hf_prompt, return_tensors="pt"), max_new_tokens=40, do_sample=False,
                                  eos_token_id=run.tok.end_id, pad_token_id=run.tok.end_id)
    hf_reply = hf_tok.decode(generated[0, len(hf_tok(hf_prompt)["input_ids"]):], skip_special_tokens=True)
    print(f"transformers: same prompt {hf_prompt == prompts[0]}; greedy reply {hf_reply!r}, ours "
          f"{replies['DPO'][0]!r}: same {hf_reply == replies['DPO'][0]}")
else:
    print("(transformers is not installed here: `pip install transformers` and this cell generates with the "
          "exported folder)")

# %% [markdown]
# ## 7. What a real GPT-2 small costs here
# One DPO step of a GPT-2-small-shaped model (random weights, 124 M parameters) on this machine:
# one pair of 256-token rows, timed; a real step (8 pairs × 512 tokens, as scripts/gpu_check.sh
# times on a GPU) scaled from it by its tokens. `--fast` times a tiny model instead.

# %%
shape = dict(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32) if run.fast else GPT2_SMALL
cost = dpo_step_cost(shape, pairs=1, tokens=64 if run.fast else 256, prompt_tokens=16 if run.fast else 64)
step_8x512 = cost["seconds"] * (16 * 512) / (cost["rows"] * cost["tokens"])
hh_epoch_days = 160_000 / 8 * step_8x512 / 86400
gpu_step = 6 * cost["params"] * 16 * 512 / 50e12  # the README's arithmetic: 6N FLOPs a token at 50 TFLOP/s
print(f"{cost['params'] / 1e6:.1f} M parameters: {cost['seconds']:.2f} s per DPO step of {cost['rows']} x "
      f"{cost['tokens']} tokens ({cost['tokens_per_s']:.0f} tokens/s, {torch.get_num_threads()} threads); "
      f"first loss {cost['first_loss']:.4f}")
print(f"a step of 8 pairs x 512 tokens ≈ {step_8x512:.0f} s here; HH's 160,000 pairs once ≈ {hh_epoch_days:.1f} days; "
      f"at 50 TFLOP/s on a GPU ≈ {gpu_step:.2f} s a step")
seconds = time.perf_counter() - start
print(f"this lesson took {seconds:.0f} s")

# %% [markdown]
# ## Questions
# 1. *Why does SFT come before DPO?* DPO's reference should be a model under which the chosen
#    replies are likely; the paper fine-tunes on them first. Here SFT's own log-probs already rank
#    the held-out pairs (the first accuracy above), and DPO moves from there.
# 2. *Did the chosen log-probs fall?* Read the sign printed in section 5: DPO widens the margin,
#    and may do it by pushing both replies down (lesson 15); the held-out means say which it did here.
# 3. *When do TRL's split and ours differ?* Exactly on the lines where both replies begin with the
#    same words; section 1 counts them in this file.

# %%
print(f"answers: SFT's own ranking {sft_acc:.3f}, DPO's implicit reward {dpo_acc:.3f}; chosen {change[0]:+.2f}, "
      f"rejected {change[1]:+.2f}; lines where the splits differ: {len(lines) - sum(same)}")

# %% [markdown]
# ## What to remember
# - Real files come in layouts: HH's implicit prompt ends at the last `\n\nAssistant:` (TRL's
#   character split agrees only where the replies start differently); conversations become text
#   through one template that keeps every role, and the exported folder carries it.
# - The paper's recipe off the toy: SFT on the chosen replies, then DPO with that model as the start
#   and the reference (`sft --data`, then `dpo --data`).
# - Without a gold reward, judge on held-out pairs: the implicit reward's accuracy against what the
#   SFT model's own log-probs already rank right, the margin, whether the chosen log-probs fell —
#   and read the replies.
