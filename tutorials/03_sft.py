# %% [markdown]
# # 03 · Supervised fine-tuning
# **You need** lessons 01 and 02 (the tokenizer, the GPT). **You will see** next-token training on
# the response tokens only — the prompt is given, not learned: the masked targets, the loss and a
# few updates in the open, then the whole run and its curve; then samples from the model scored by
# the world's gold reward. The SFT model should write fluent reviews whose mean reward is near the
# corpus's: fluent, but far from optimal, which is what preference tuning is for.
# Run: `python tutorials/03_sft.py` (a minute or so on 2 cores).

# %%
import math

import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo import world
from minidpo.harness.tutorial import claim, show, tutorial_run
from minidpo.data import collate, render, sft_targets
from minidpo.model import GPT, GPTConfig
from minidpo.sft import SFTConfig
from minidpo.training import make_optimizer

run = tutorial_run("03: supervised fine-tuning")
torch.set_printoptions(linewidth=140)

# %% [markdown]
# ## SFT in the open: targets, loss, five updates
# A row is `<|prompt|> prompt <|response|> response <|end|>`, with a mask that is True on the
# response tokens. The targets are the inputs shifted by one, and every target that is not a
# response token is set to −100, which `cross_entropy` ignores. Its default reduction is the mean
# over every scored token of the batch, so the loss of a batch of B rows is
# $$\mathcal{L}_{SFT} = -\frac{1}{\sum_b |y_b|}\sum_{b=1}^{B}\sum_{t \in y_b} \log \pi_\theta(y_{b,t} \mid x_b, y_{b,<t})$$
# (a long response weighs more than a short one: one token, one vote). A fresh GPT predicts every
# token about equally, so its loss starts near ln |V|. Then five AdamW updates on the same four
# rows: the loss must fall.

# %%
cfg = run.settings(SFTConfig)
examples = world.make_corpus(4, seed=run.seed)
rows = [render(run.tok, p, r) for p, r in examples]
ids, mask = collate(rows, run.tok.end_id)
inputs, targets = sft_targets(ids, mask)
print(f"{examples[0][0]!r} -> {examples[0][1]!r}")
print("input ids :", inputs[0].tolist())
print("targets   :", targets[0].tolist(), "(−100 = not scored)")
torch.manual_seed(run.seed)
model = GPT(GPTConfig(**{**cfg.model, "vocab_size": run.tok.vocab_size}))
_, loss = model(inputs, targets)
first_loss = loss.item()
print(f"loss {first_loss:.3f} nats/token; ln |V| = ln {run.tok.vocab_size} = {math.log(run.tok.vocab_size):.3f}")
scored = targets != -100
by_hand = -torch.log_softmax(model(inputs), -1).gather(2, targets.clamp(min=0)[..., None]).squeeze(-1)[scored].mean()
print(f"by hand, the mean over the {int(scored.sum())} response tokens of the batch: {by_hand.item():.3f}")
claim("cross_entropy with −100 targets is the mean over the batch's response tokens",
      abs(by_hand.item() - first_loss) < 1e-5, by_hand=round(by_hand.item(), 6), library=round(first_loss, 6))
optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
for _ in range(5):  # five steps on the same four examples: the loss must fall
    optimizer.zero_grad()
    model(inputs, targets)[1].backward()
    optimizer.step()
five_steps = model(inputs, targets)[1].item()
print(f"after five steps on these four rows: {five_steps:.3f}")
claim("five updates on the same four rows lower their loss", five_steps < first_loss,
      before=round(first_loss, 3), after=round(five_steps, 3))

# %% [markdown]
# *Question*: what would happen to the training signal if the prompt tokens were scored too?
# (The answer, with the numbers of this batch, is at the end of the lesson.)

# %% [markdown]
# ## The whole run
# `stage_sft` is this step on random batches of the corpus, with AdamW, a warmup and cosine decay,
# and held-out reviews of films never trained on. An interrupted run resumes bit-identically.
# Reading its log: `val` is the held-out loss, *measured* every `eval_every` steps; a line between
# two measurements repeats the last one measured (so step 50 shows step 0's value), and the
# figure's dotted line joins the measured points: it is not a measurement in between (the faint
# training-batch curve, logged every step, shows how fast the loss really fell). `tok/s` counts
# every position of the padded batches, padding included. The matmul peak is timed for a moment at
# the start: if something else used the cores then, the peak reads low and the percentage of it can
# pass 100 %.

# %%
metrics = P.stage_sft(run)
print(f"held-out loss {metrics['val_loss_init']:.2f} -> {metrics['val_loss']:.3f} nats/token "
      f"(measured at steps {metrics['history']['val_step'][:3]}…), "
      f"{metrics['tokens_per_s'] / 1e3:.1f}k tokens/s in {metrics['seconds']:.0f}s")
claim("the held-out loss falls by more than 1 nat per token", metrics["val_loss"] < metrics["val_loss_init"] - 1,
      start=round(metrics["val_loss_init"], 3), end=round(metrics["val_loss"], 3))
if metrics.get("mfu"):
    print(f"that is {100 * metrics['mfu']:.0f}% of this machine's fp32 matmul peak "
          f"({metrics['matmul_peak_flops'] / 1e9:.0f} GFLOP/s, measured at the start)")
fig = plots.sft_curve(metrics["history"], run.path("sft_curve.png"))
print("figure:", run.path("sft_curve.png"))
show(fig)

# %% [markdown]
# ## Samples on films never seen in training, scored by the gold reward
# Temperature 1 (exactly the model's distribution). The numbers every later lesson reports:
# - **gold reward r\*(x, y)**: the world's own score of a response (`minidpo/world.py`, which we
#   wrote, so it is exact): the sum of each sentence's sentiment word (from −1 to +1, ×1.5 after
#   "very"), minus 1 per ungrammatical or repeated sentence, 0.5 per reused sentiment word, 1 per
#   sentence beyond the third, 1 for a missing full stop, 2 for an empty response. No model ever
#   sees it during training except through the labels of lesson 04.
# - **fluency**: the fraction of samples the world's grammar accepts (every sentence one the grammar
#   can write about this film, none repeated, one to three of them, a final full stop).
# - **unique**: the fraction of distinct responses among the samples (a diversity measure that still
#   works in a vocabulary of 94 words).
# - **±** is the standard deviation of the gold reward over the samples (how spread they are), not
#   the uncertainty of the mean: that is the standard error, std/√n, printed beside it.

# %%
ev = P.stage_eval_sft(run)
n_sft, n_corpus = len(ev["gold"]), len(ev["corpus"]["gold"])
se_sft, se_corpus = ev["gold_std"] / n_sft ** 0.5, ev["corpus"]["gold_std"] / n_corpus ** 0.5
print(f"SFT samples ({n_sft}): gold {ev['gold_reward']:+.3f} ± {ev['gold_std']:.2f} (standard error {se_sft:.3f}), "
      f"fluency {ev['fluency']:.3f}, unique {ev['unique_frac']:.3f}")
print(f"corpus ({n_corpus})     : gold {ev['corpus']['gold_reward']:+.3f} ± {ev['corpus']['gold_std']:.2f} "
      f"(standard error {se_corpus:.3f})")
for s in ev["samples"][:6]:
    print(f"  {s['prompt']:32s} -> {s['response']}  ({s['gold']:+.1f})")
best_title = ev["samples"][0]["prompt"][len(world.PROMPT_PREFIX):]
best = f"{best_title} was a very brilliant film. The acting was very superb. The music was very wonderful."
best_gold = world.gold_reward(ev["samples"][0]["prompt"], best)
print(f"one of the best responses the world allows: {best!r} ({best_gold:+.1f})")
gap = ev["gold_reward"] - ev["corpus"]["gold_reward"]
claim("the SFT samples' mean gold reward is within 3 standard errors of the corpus's",
      abs(gap) < 3 * (se_sft ** 2 + se_corpus ** 2) ** 0.5, difference=round(gap, 3),
      standard_error=round((se_sft ** 2 + se_corpus ** 2) ** 0.5, 3))
claim("the SFT samples spread less than the corpus (a smaller std of the gold reward)",
      ev["gold_std"] < ev["corpus"]["gold_std"], sft=round(ev["gold_std"], 3), corpus=round(ev["corpus"]["gold_std"], 3))
claim("the SFT model is far from optimal: its mean gold reward is more than 3 below the best response's",
      ev["gold_reward"] < best_gold - 3, sft=round(ev["gold_reward"], 3), best=best_gold)
claim("most SFT samples are fluent (over 90 %)", ev["fluency"] > 0.9, fluency=round(ev["fluency"], 3))
fig = plots.gold_histograms({"corpus": ev["corpus"]["gold"], "SFT samples": ev["gold"]},
                            run.path("sft_gold_hist.png"), "Gold reward: SFT samples vs corpus")
print("figure:", run.path("sft_gold_hist.png"))
show(fig)

# %% [markdown]
# ## Answers
# *What if the prompt tokens were scored too?* The model would also be trained to *write* prompts:
# `Review: <title>` is the same few words every time plus a title drawn at random from the training
# films (their number is printed below; the other films are held out), so it teaches nothing about
# reviews, and part of every gradient would go to guessing titles. How large a part, in the batch of
# the first step:

# %%
prompt_tokens = int((~mask[:, 1:] & (ids[:, 1:] != run.tok.end_id)).sum())
response_tokens = int(mask[:, 1:].sum())
train_titles, heldout_titles = world.split_titles()
print(f"titles: {len(train_titles)} for training, {len(heldout_titles)} held out")
print(f"scored now: {response_tokens} response tokens; scoring the prompts too would add {prompt_tokens} "
      f"({prompt_tokens / (prompt_tokens + response_tokens):.0%} of the tokens in the loss)")
claim("scoring the prompts would put more than a fifth of the loss on guessing titles",
      prompt_tokens / (prompt_tokens + response_tokens) > 0.2,
      share=round(prompt_tokens / (prompt_tokens + response_tokens), 3))

# %% [markdown]
# ## What to remember
# - SFT is next-token cross-entropy on the response tokens only; the prompt is masked with −100.
# - `cross_entropy` averages over every scored token of the batch, not per sequence.
# - The SFT model is fluent, its mean gold reward near the corpus's and far from the best: the
#   starting point (and the reference π_ref) of everything that follows.
# - A "±" beside a mean is a spread over samples unless it says "standard error".
