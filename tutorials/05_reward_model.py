# %% [markdown]
# # 05 · The reward model (RLHF, step 1)
# **You need** lesson 04 (the pairs and their noisy labels). **You will see** classic RLHF's first
# step: the SFT GPT plus a scalar head read at the last response token (the `<|end|>` token, which
# has read the whole response), trained with the Bradley–Terry loss on the same pairs DPO will use.
# One step in the open first, then the whole run. Its ceiling is the oracle accuracy: how often
# the gold reward itself agrees with the noisy labels.
# Run: `python tutorials/05_reward_model.py` (about half a minute after lesson 04).

# %%
import math

import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.data import pair_batch
from minidpo.losses import bradley_terry_loss
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.reward_model import RMConfig, RewardModel
from minidpo.harness.stages import ensure
from minidpo.training import make_optimizer

run = tutorial_run("05: a Bradley–Terry reward model")
ensure(run, "prefs")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# ## One Bradley–Terry step in the open
# The model says how likely the labeller was to prefer y_w (Bradley & Terry 1952):
# $$P(y_w \succ y_l \mid x) = \sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big), \qquad
# \mathcal{L} = -\log\sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big) + \lambda\big(r_\phi(x, y_w) + r_\phi(x, y_l)\big)^2$$
# The first term is the Bradley–Terry loss (the DPO paper's eq. 2). It sees only reward
# differences, so it leaves the reward's level free; the second, with a small λ (`center_weight`),
# only pins that level near 0 — training adds it, so this step does too. The head starts at zero,
# so every reward is 0, every pair's probability is ½ and the loss is exactly ln 2 (the second term
# is 0). Chosen and rejected rows go through one forward pass, as in DPO.

# %%
cfg = run.settings(RMConfig)
sft = run.load_policy("sft.pt")
rm = RewardModel(sft.config).to(run.device)
rm.backbone.load_state_dict(sft.state_dict())
pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(run.tok, pairs[:cfg.batch_size], sft.config.block_size)
ids, mask = pair_batch(encoded, run.device, run.tok.end_id)
print(f"batch: {len(encoded)} pairs -> input_ids {tuple(ids.shape)}, response mask {tuple(mask.shape)}")
scores = rm.raw(ids, mask)
chosen, rejected = scores[:len(encoded)], scores[len(encoded):]
loss = bradley_terry_loss(chosen, rejected).mean() + cfg.center_weight * ((chosen + rejected) ** 2).mean()
first_loss = loss.item()
print(f"step 0: rewards all {scores.abs().max().item():.1f}; loss {first_loss:.6f} (ln 2 = {math.log(2):.6f})")
optimizer = make_optimizer(rm, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
optimizer.step()
scores = rm.raw(ids, mask).detach()
bt_after = bradley_terry_loss(scores[:len(encoded)], scores[len(encoded):]).mean().item()
centring_after = cfg.center_weight * ((scores[:len(encoded)] + scores[len(encoded):]) ** 2).mean().item()
after = bt_after + centring_after
print(f"after one step: loss {after:.4f} (Bradley–Terry {bt_after:.4f} + centring {centring_after:.1e}, λ = {cfg.center_weight}); r(y_w) − r(y_l) of the first pairs: {(scores[:6] - scores[len(encoded):][:6])}")

# %% [markdown]
# *Question*: Bradley–Terry only sees reward **differences**. What happens to the loss if you add 5
# to every reward? (Answered, with this batch, at the end.)

# %% [markdown]
# ## The whole run
# Two epochs over the pairs; held-out pairs scored along the way. A reward model is only a proxy:
# compare its accuracy with the oracle's, and its scores with the gold reward on fresh samples.

# %%
m = P.stage_reward_model(run)
print(f"held-out pairwise accuracy {m['val_accuracy']:.3f}; oracle {m['oracle_accuracy']:.3f}; "
      f"ratio {m['accuracy_vs_oracle']:.2f}")
print(f"correlation with the gold reward on fresh SFT samples of held-out films: {m['gold_correlation_heldout']:.2f}")
print(f"normalisation: raw reward mean {m['normalisation']['raw_mean']:+.3f}, std {m['normalisation']['raw_std']:.3f} "
      "on reference samples -> shifted and scaled to mean 0, std 1 before RL")
fig = plots.reward_model_figure(m, run.path("reward_model.png"))
print("figure:", run.path("reward_model.png"))
show(fig)


# %% [markdown]
# ## Answers
# *Add 5 to every reward?* The Bradley–Terry term does not change: it reads only r(y_w) − r(y_l).
# Only the small centring term notices, which is why training adds it: without it nothing would
# hold the level. So the level is a convention, and the trained reward is normalised to mean 0,
# std 1 on SFT samples before RL, so one β means the same KL strength whatever level the head
# learned. On this batch:

# %%
shifted = bradley_terry_loss(scores[:len(encoded)] + 5, scores[len(encoded):] + 5).mean().item()
shifted_centring = cfg.center_weight * ((scores[:len(encoded)] + scores[len(encoded):] + 10) ** 2).mean().item()
print(f"Bradley–Terry term {bt_after:.6f}; with every reward + 5: {shifted:.6f} (difference {abs(shifted - bt_after):.1e}); "
      f"the centring term {centring_after:.1e} -> {shifted_centring:.3f}")

# %% [markdown]
# ## What to remember
# - A reward model is the SFT backbone plus a scalar head, trained as a Bradley–Terry classifier
#   of the pairs; it can only learn reward differences within a prompt.
# - Its held-out accuracy is bounded by the oracle's, and it is a proxy: its correlation with the
#   gold reward on fresh samples is well below 1, which lesson 13 turns into over-optimisation.
# - **Exercise**: write it yourself and have it graded — `python -m minidpo grade bradley-terry-loss`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
