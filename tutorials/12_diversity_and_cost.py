# %% [markdown]
# # 12 · Diversity against β, and the cost of RL
# Perfectly maximising a reward collapses the policy onto the few best responses. β is the leash:
# we sweep it for both methods and watch the gold reward, the per-token entropy and the fraction of
# unique responses. Then the bill: wall time, tokens through the model, samples generated and peak
# memory, for the RLHF road against the DPO road.
# Run: `python tutorials/12_diversity_and_cost.py` (about 2 minutes after `python -m minidpo run`).

# %%
from minidpo.harness import pipeline as P
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.studies.cost import cost_table
from minidpo.studies.diversity import run_diversity

run = tutorial_run("12: diversity vs β and the cost of RL")
points = run_diversity(run)
sft = P.stage_eval_sft(run)
print(f"SFT: gold {sft['gold_reward']:+.3f}, entropy {sft['entropy']:.3f}, unique {sft['unique_frac']:.3f}")

# %% [markdown]
# ## What β buys
# The maximiser of the KL-regularised objective, π* ∝ π_ref·exp(r/β), keeps π_ref's spread at large
# β and collapses onto the best responses as β → 0. Per-token entropy of π over its own samples
# and the fraction of unique responses measure that spread (distinct-2 says little in a vocabulary
# this small). *Predict*: which method loses more diversity at its smallest β?

# %%
for method in ("rlhf", "dpo"):
    pts = sorted((p for p in points if p["method"] == method), key=lambda p: p["beta"])
    lo, hi = pts[0], pts[-1]
    print(f"{method.upper()}: β {hi['beta']} -> {lo['beta']}: entropy {hi['entropy']:.3f} -> {lo['entropy']:.3f}, "
          f"unique {hi['unique_frac']:.3f} -> {lo['unique_frac']:.3f}, gold {hi['gold_reward']:+.3f} -> {lo['gold_reward']:+.3f}")
from minidpo.harness import plots
fig = plots.diversity_figure(points)
print("figure:", run.out / "diversity" / "diversity.png")
show(fig)

# %% [markdown]
# ## The bill
# Every road from the SFT model to a tuned policy, in one folder: DPO against REINFORCE, PPO and
# GRPO (each with its reward model): wall time, the models held in memory while training (PPO holds
# four: policy, reference, reward and value model), parameters, tokens through forward and backward
# passes, samples generated, and how long each RL road took to first reach DPO's gold reward.
# The table brings the stages it compares up to date first (PPO and GRPO take a few minutes).

# %%
rows = cost_table(run)
