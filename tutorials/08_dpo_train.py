# %% [markdown]
# # 08 · Training with DPO
# The same preference pairs as the reward model, one loss, no sampling, no reward model. First one
# training step in the open, tensor by tensor; then the whole run, its curves, and the policy on the
# held-out films. Watch `logps/chosen`: it falls too. DPO trains the *margin*; the probability mass
# it frees goes somewhere no label looked at, so fluency is reported beside every win rate.
# Run: `python tutorials/08_dpo_train.py` (about half a minute after lesson 04; `--fast`: seconds).

# %%
import math

import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.dpo import DPOConfig, batch_loss, compute_reference_logps
from minidpo.evaluate import first_per_prompt
from minidpo.losses import dpo_gradient_weight
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.harness.stages import ensure
from minidpo.training import make_optimizer

run = tutorial_run("08: DPO training and evaluation")
ensure(run, "eval_sft", "prefs")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# ## One step in the open
# **The batch.** Each pair becomes two rows, prompt + chosen and prompt + rejected, tokenized
# separately so no BPE merge crosses the boundary; the response mask is True on response tokens.
# **The reference** scores every pair once, before training (and is never run again):
# $\log\pi_{ref}(y_w|x)$ and $\log\pi_{ref}(y_l|x)$, a tensor of shape (N, 2).

# %%
cfg = run.settings(DPOConfig)
policy = run.load_policy("sft.pt").train()
pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(run.tok, pairs, policy.config.block_size)
batch = encoded[:cfg.batch_size]
reference = compute_reference_logps(run.load_policy("sft.pt"), batch, run.tok.end_id, cfg.average_logps)
print(f"a batch of {len(batch)} pairs; reference log-probs {tuple(reference.shape)}; first three:\n{reference[:3]}")

# %% [markdown]
# **The loss** (DPO eq. 7), with the policy's own log-probs from one forward pass over the
# 2 × batch rows:
# $$h = \Big[\log\tfrac{\pi(y_w|x)}{\pi_{ref}(y_w|x)}\Big] - \Big[\log\tfrac{\pi(y_l|x)}{\pi_{ref}(y_l|x)}\Big],
# \qquad \mathcal{L} = -\log\sigma(\beta h)$$
# At step 0 the policy *is* the reference, so every h is 0 and the loss is exactly ln 2; the
# implicit rewards $\hat r = \beta\log\pi/\pi_{ref}$ are all 0 — and the gradient is not.

# %%
loss, record, metrics = batch_loss(policy, batch, reference, cfg, run.tok.end_id)
first_loss = loss.item()
print(f"step 0: loss {first_loss:.6f} (ln 2 = {math.log(2):.6f}); rewards/chosen {metrics['rewards/chosen']:+.2e}, "
      f"margins {metrics['rewards/margins']:+.2e}")
print("log π(y_w) of the first three pairs:", record.chosen_logps[:3].detach())

# %% [markdown]
# **The gradient** (the paper's §4): $\nabla\mathcal{L} = -\beta\,\sigma(\hat r_l - \hat r_w)\,
# [\nabla\log\pi(y_w|x) - \nabla\log\pi(y_l|x)]$. The weight $\sigma(\hat r_l - \hat r_w)$ is ½ for
# every pair now; it shrinks for pairs the implicit reward already ranks right.

# %%
weights = dpo_gradient_weight(*record.implicit_rewards())
print("gradient weight of each pair at step 0:", weights[:6])
optimizer = make_optimizer(policy, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0).item()
optimizer.step()
after, record_after, metrics_after = batch_loss(policy, batch, reference, cfg, run.tok.end_id)
print(f"gradient norm {grad_norm:.3f}; after one step the same batch: loss {first_loss:.4f} -> {after.item():.4f}, "
      f"accuracy {metrics_after['rewards/accuracies']:.2f}, margin {metrics_after['rewards/margins']:+.4f}")

# %% [markdown]
# *Try*: make β ten times smaller and re-run this cell: the loss moves less per step (the margin
# is multiplied by β inside the sigmoid), yet the policy can drift further before the loss cares.

# %% [markdown]
# ## The whole run
# `stage_dpo` is this step in a loop over two epochs, with a learning-rate warmup and cosine decay,
# and held-out pairs scored every 20 steps. The metric names are those of the DPO reference code
# and TRL. *Predict*: will `logps/chosen` go up?

# %%
m = P.stage_dpo(run)
print(f"{m['steps']} steps in {m['seconds']:.0f}s; reference log-probs read from the cache: {m['reference_logps_cached']}")
first, last = m["history"][1], m["history"][-1]
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
          "logps/chosen", "logps/rejected"):
    print(f"{k:20s} {first[k]:+.3f} -> {last[k]:+.3f}")
fig = plots.dpo_metrics_figure(m["history"], run.path("dpo_metrics.png"))
print("figure:", run.path("dpo_metrics.png"))
show(fig)

# %% [markdown]
# ## On the held-out films
# Samples at temperature 1 on 50 films never trained on, scored by the gold reward; win rate
# against the SFT model's samples of the same prompts (same seed), ties ½.

# %%
ev = P.stage_eval_dpo(run)
sft = P.stage_eval_sft(run)
print(f"DPO: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f} (SFT {sft['fluency']:.3f})")
print(f"held-out implicit-reward accuracy {m['val_implicit_reward_accuracy']:.3f}")
for i in first_per_prompt(sft["samples"])[:6]:  # one sample each of six films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT: {a['response']} ({a['gold']:+.1f})\n   DPO: {b['response']} ({b['gold']:+.1f})")
