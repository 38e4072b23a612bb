# %% [markdown]
# # 03 · Supervised fine-tuning
# **You need** lessons 01 and 02 (the tokenizer, the GPT). **You will see** next-token training on
# the response tokens only — the prompt is given, not learned: the masked targets, the loss and a
# few updates in the open, then the whole run and its curve; then samples from the model scored by
# the world's gold reward. The SFT model should write fluent reviews whose rewards spread like the
# corpus's: fluent, but far from optimal, which is what preference tuning is for.
# Run: `python tutorials/03_sft.py` (about 1.5 minutes on 2 cores).

# %%
import math

import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo import world
from minidpo.harness.tutorial import show, tutorial_run
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
optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
for _ in range(5):  # five steps on the same four examples: the loss must fall
    optimizer.zero_grad()
    model(inputs, targets)[1].backward()
    optimizer.step()
print(f"after five steps on these four rows: {model(inputs, targets)[1].item():.3f}")

# %% [markdown]
# *Question*: what would happen to the training signal if the prompt tokens were scored too?
# (The answer, with the numbers of this batch, is at the end of the lesson.)

# %% [markdown]
# ## The whole run
# `stage_sft` is this step on random batches of the corpus, with AdamW, a warmup and cosine decay,
# and held-out reviews of films never trained on. An interrupted run resumes bit-identically.

# %%
metrics = P.stage_sft(run)
print(f"held-out loss {metrics['val_loss_init']:.2f} -> {metrics['val_loss']:.3f} nats/token, "
      f"{metrics['tokens_per_s'] / 1e3:.1f}k tokens/s in {metrics['seconds']:.0f}s")
if metrics.get("mfu"):
    print(f"that is {100 * metrics['mfu']:.0f}% of this machine's fp32 matmul peak "
          f"({metrics['matmul_peak_flops'] / 1e9:.0f} GFLOP/s, measured at the start)")
fig = plots.sft_curve(metrics["history"], run.path("sft_curve.png"))
print("figure:", run.path("sft_curve.png"))
show(fig)

# %% [markdown]
# ## Samples on films never seen in training, scored by the gold reward
# Temperature 1 (exactly the model's distribution). Fluent but mixed: the SFT model imitates a
# corpus of positive, negative and neutral reviews, so its mean gold reward sits near the corpus's.

# %%
ev = P.stage_eval_sft(run)
print(f"SFT samples: gold {ev['gold_reward']:+.3f} ± {ev['gold_std']:.2f}, fluency {ev['fluency']:.3f}, "
      f"unique {ev['unique_frac']:.3f}")
print(f"corpus     : gold {ev['corpus']['gold_reward']:+.3f} ± {ev['corpus']['gold_std']:.2f}")
for s in ev["samples"][:6]:
    print(f"  {s['prompt']:32s} -> {s['response']}  ({s['gold']:+.1f})")
fig = plots.gold_histograms({"corpus": ev["corpus"]["gold"], "SFT samples": ev["gold"]},
                            run.path("sft_gold_hist.png"), "Gold reward: SFT samples vs corpus")
print("figure:", run.path("sft_gold_hist.png"))
show(fig)

# %% [markdown]
# ## Answers
# *What if the prompt tokens were scored too?* The model would also be trained to *write* prompts:
# `Review: <title>` is the same few words every time plus a title drawn at random from 400, so it
# teaches nothing about reviews, and part of every gradient would go to guessing titles. How large
# a part, in the batch of the first step:

# %%
prompt_tokens = int((~mask[:, 1:] & (ids[:, 1:] != run.tok.end_id)).sum())
response_tokens = int(mask[:, 1:].sum())
print(f"scored now: {response_tokens} response tokens; scoring the prompts too would add {prompt_tokens} "
      f"({prompt_tokens / (prompt_tokens + response_tokens):.0%} of the tokens in the loss)")

# %% [markdown]
# ## What to remember
# - SFT is next-token cross-entropy on the response tokens only; the prompt is masked with −100.
# - `cross_entropy` averages over every scored token of the batch, not per sequence.
# - The SFT model is fluent and as mixed as its corpus under the gold reward: the starting point
#   (and the reference π_ref) of everything that follows.
