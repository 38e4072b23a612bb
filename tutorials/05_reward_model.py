# %% [markdown]
# # 05 · The reward model (RLHF, step 1)
# **You need** lesson 04 (the pairs and their noisy labels). **You will see** classic RLHF's first
# step: the SFT GPT plus a scalar head read at the last response token (the `<|end|>` token, which
# has read the whole response), trained with the Bradley–Terry loss on the same pairs DPO will use.
# One step in the open first, then the whole run. Its ceiling is the oracle accuracy (lesson 04):
# how often the gold reward itself agrees with the noisy labels, a tie counted ½.
# Run: `python tutorials/05_reward_model.py` (about half a minute after lesson 04).

# %%
import math

import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import claim, show, tutorial_run
from minidpo.data import pair_batch
from minidpo.losses import bradley_terry_loss
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.reward_model import RMConfig, RewardModel
from minidpo.rlhf import leave_one_out_advantages
from minidpo.harness.stages import ensure
from minidpo.training import make_optimizer

run = tutorial_run("05: a Bradley–Terry reward model")
ensure(run, "prefs")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# ## One Bradley–Terry step in the open
# The model says how likely the labeller was to prefer the chosen response y_w over the rejected
# y_l (Bradley & Terry 1952; σ is the logistic function of lesson 04), with a learned reward
# $r_\phi$ — φ stands for the reward model's parameters (the GPT backbone and its scalar head):
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
claim("at step 0 every reward is 0 and the loss is ln 2", scores.abs().max().item() == 0 and abs(first_loss - math.log(2)) < 1e-6,
      loss=round(first_loss, 6))
optimizer = make_optimizer(rm, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
optimizer.step()
scores = rm.raw(ids, mask).detach()
bt_after = bradley_terry_loss(scores[:len(encoded)], scores[len(encoded):]).mean().item()
centring_after = cfg.center_weight * ((scores[:len(encoded)] + scores[len(encoded):]) ** 2).mean().item()
after = bt_after + centring_after
print(f"after one step: loss {after:.4f} (Bradley–Terry {bt_after:.4f} + centring {centring_after:.1e}, λ = {cfg.center_weight}); r(y_w) − r(y_l) of the first pairs: {(scores[:6] - scores[len(encoded):][:6])}")
claim("one step lowers the loss on its batch", after < first_loss, before=round(first_loss, 6), after=round(after, 6))

# %% [markdown]
# *Question*: Bradley–Terry only sees reward **differences**. What happens to the loss if you add 5
# to every reward? (Answered, with this batch, at the end.)

# %% [markdown]
# ## The whole run
# Two epochs over the pairs; held-out pairs scored along the way. A reward model is only a proxy:
# compare its accuracy with the oracle's on the same held-out pairs (lesson 04 printed the oracle on
# the training pairs too; the two sets differ), and its scores with the gold reward on fresh samples.
# Its accuracy counts a tie ½, as the oracle's does.

# %%
m = P.stage_reward_model(run)
print(f"held-out pairwise accuracy {m['val_accuracy']:.3f}; the oracle on the same held-out pairs {m['oracle_accuracy']:.3f}; "
      f"ratio {m['accuracy_vs_oracle']:.2f}")
claim("the reward model beats chance but stays below the oracle on the held-out pairs",
      0.5 < m["val_accuracy"] < m["oracle_accuracy"], reward_model=round(m["val_accuracy"], 3),
      oracle=round(m["oracle_accuracy"], 3))
print(f"correlation with the gold reward on fresh SFT samples of held-out films: {m['gold_correlation_heldout']:.2f}")
claim("it is a proxy: its correlation with the gold reward on fresh samples is well below 1 (under 0.9)",
      m["gold_correlation_heldout"] < 0.9, correlation=round(m["gold_correlation_heldout"], 3))
norm = m["normalisation"]
print(f"normalisation: raw reward mean {norm['raw_mean']:+.3f}, std {norm['raw_std']:.3f} on "
      f"{cfg.norm_samples} SFT samples of training films -> shifted and scaled to mean 0, std 1 before RL")
fig = plots.reward_model_figure(m, run.path("reward_model.png"))
print("figure:", run.path("reward_model.png"))
show(fig)


# %% [markdown]
# ## Answers
# *Add 5 to every reward?* The Bradley–Terry term does not change: it reads only r(y_w) − r(y_l).
# Only the small centring term notices, which is why training adds it: without it nothing would
# hold the level. So the level is a convention — and RL does not care about it either: a constant
# added to every reward changes neither the optimum π* ∝ π_ref·e^{r/β} (Z absorbs it, lesson 07)
# nor REINFORCE's leave-one-out advantages (lesson 06: each reward minus the mean of the others).
# What RL does care about is the reward's *scale*: in R = r − β·KL, dividing r by s is the same as
# multiplying β by s. So before RL the trained reward is divided by its standard deviation on SFT
# samples (the raw std printed above; subtracting the mean is only a convention), and one β means the
# same KL strength whatever scale the head learned. On this batch (its chosen rewards read as
# groups of four samples, as REINFORCE will read them):

# %%
shifted = bradley_terry_loss(scores[:len(encoded)] + 5, scores[len(encoded):] + 5).mean().item()
shifted_centring = cfg.center_weight * ((scores[:len(encoded)] + scores[len(encoded):] + 10) ** 2).mean().item()
print(f"Bradley–Terry term {bt_after:.6f}; with every reward + 5: {shifted:.6f} (difference {abs(shifted - bt_after):.1e}); "
      f"the centring term {centring_after:.1e} -> {shifted_centring:.3f}")
claim("adding 5 to every reward leaves the Bradley–Terry term unchanged", abs(shifted - bt_after) < 1e-6,
      difference=abs(shifted - bt_after))
groups = scores[:len(encoded) // 4 * 4].view(-1, 4)
advantages = leave_one_out_advantages(groups)
shift_change = (leave_one_out_advantages(groups + 5) - advantages).abs().max().item()
scaled = leave_one_out_advantages(groups / norm["raw_std"])
scale_ratio = (scaled.norm() / advantages.norm()).item()
print(f"leave-one-out advantages: + 5 changes them by at most {shift_change:.1e}; ÷ raw std {norm['raw_std']:.3f} "
      f"multiplies them by {scale_ratio:.3f} (1/std = {1 / norm['raw_std']:.3f})")
claim("a shift leaves the advantages as they were; the division by the std rescales them",
      shift_change < 1e-5 and abs(scale_ratio - 1 / norm["raw_std"]) < 1e-4,
      shift_change=shift_change, scale=round(scale_ratio, 4))

# %% [markdown]
# ## What to remember
# - A reward model is the SFT backbone plus a scalar head, trained as a Bradley–Terry classifier
#   of the pairs; it can only learn reward differences within a prompt.
# - Its held-out accuracy is bounded, in expectation, by the oracle's on the same pairs, and it is a
#   proxy: its correlation with the gold reward on fresh samples is well below 1, which lesson 14
#   turns into over-optimisation.
# - RL is blind to the reward's level (a shift), not to its scale: the normalisation that matters
#   is the division by the standard deviation.
# - **Exercise**: write it yourself and have it graded — `python -m minidpo grade bradley-terry-loss`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
