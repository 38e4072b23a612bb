# %% [markdown]
# # 10 · The paper's Figure 2, and why it comes out the way it does here
# The DPO paper's Figure 2 (left) plots, for every method and hyperparameter, the reward reached
# against the KL divergence to the reference: a method whose points lie higher at the same KL makes
# the better trade. On IMDb the paper found DPO's frontier above PPO's, even above PPO on the
# ground-truth reward. Here we redo it on our world, with every method of the paper (DPO, PPO,
# PPO-GT, Preferred-FT, Unlikelihood) plus REINFORCE and GRPO, three seeds, and both ways of
# labelling the pairs — and then measure *why* it comes out the way it does.
#
# Run: `python tutorials/10_frontier.py`. The full study takes about half an hour the first time
# (every unit is reused afterwards, and an interrupted run resumes); `--fast` is a smoke run.

# %%
from minidpo.harness import plots
from minidpo.studies.ablation import print_ablation, run_ablation
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.studies.frontier import KL_TARGETS, at_kl, envelope, points_of, print_matched, run_frontier

run = tutorial_run("10: the reward-vs-KL frontier and the ablation")

# %% [markdown]
# ## Every unit, then the frontier
# A unit is one method at one grid point (β, mostly) in one labelling condition with one seed,
# evaluated at three points along training on the 50 held-out films (400 samples each: gold reward,
# KL to the reference, fluency). The progress line says which unit runs and the time left.

# %%
result = run_frontier(run)
points, sft = result["points"], result["sft"]
print(f"{len(points)} evaluated points; SFT: gold {sft['gold_reward']:+.3f}, fluency {sft['fluency']:.3f}")

# %% [markdown]
# ## From points to a frontier
# In one seed, a method's frontier is its **upper envelope**: starting from the SFT model at KL 0,
# keep each point whose gold reward beats every point at lower KL, and join them with straight
# lines. Reading the envelope at a fixed KL ("matched KL") compares methods at the same budget of
# divergence from the reference. Here is DPO's envelope in the first seed, with Bradley–Terry labels:

# %%
seed = result["seeds"][0]
env = envelope(points_of(points, "dpo", "bt", seed), sft)
for kl, gold, fluency in env:
    print(f"  KL {kl:5.2f}  gold {gold:+.3f}  fluency {fluency:.3f}")
for kl in KL_TARGETS:
    got = at_kl(env, kl)
    print(f"  at KL {kl}: " + (f"gold {got[0]:+.3f}" if got else "beyond the last point (not extrapolated)"))

# %% [markdown]
# ## The matched-KL table: every method, both labellings, mean ± std over seeds
# *Predict before reading*: with noisy Bradley–Terry labels, does DPO or REINFORCE win at KL = 2?
# With deterministic labels? Where does PPO-GT — RL on the true reward — sit?

# %%
print_matched(result)
fig = plots.frontier_figure(result, run.path("frontier_lesson.png"))
print("figure:", run.path("frontier_lesson.png"))
show(fig)

# %% [markdown]
# ## The ablation: from our setting to the paper's, one factor at a time
# Each row changes one thing from the row above: the labels (noisy → deterministic), the amount of
# data (4× more pairs), the RL algorithm (REINFORCE → PPO), the RL reward (learned → gold). Each
# row gives DPO and the RL method of that row at the same matched KL, and the paired difference
# DPO − RL over seeds. A difference is called larger than the spread only when it exceeds two
# standard errors; otherwise the honest reading is "no measurable difference".

# %%
ablation = run_ablation(run)
print_ablation(ablation)

# %% [markdown]
# *Questions*
# 1. Which row changes the sign (or the size) of DPO − RL the most? That factor is this world's
#    answer to "why does our result differ from the paper's".
# 2. PPO-GT optimises the gold reward itself. If DPO beats it at matched KL, DPO's trade-off is
#    better even than RL with a perfect reward model — the paper's strongest claim. Does it here?
# 3. Fluency: read `fluency_mean` in `frontier.json` at the same KL. Which methods buy reward with
#    broken sentences?
