# %% [markdown]
# # 12 · Diversity against β, and the cost of RL
# Perfectly maximising a reward collapses the policy onto the few best responses. β is the leash:
# we sweep it for both methods and watch the gold reward, the per-token entropy and the fraction of
# unique responses. Then the bill: wall time, tokens through the model, samples generated and peak
# memory, for the RLHF road against the DPO road.
# Run: `python tutorials/12_diversity_and_cost.py` (about 2 minutes after `python -m minidpo run`).

# %%
from minidpo import pipeline as P
from minidpo.cli import tutorial_run
from minidpo.critics import cost_table, run_diversity

run = tutorial_run("12: diversity vs β and the cost of RL")
points = run_diversity(run)
sft = P.stage_eval_sft(run)
print(f"SFT: gold {sft['gold_reward']:+.3f}, entropy {sft['entropy']:.3f}, unique {sft['unique_frac']:.3f}")

# %% As β → 0 for RLHF the leash is gone: reward up (or hacked), entropy and unique responses down
for method in ("rlhf", "dpo"):
    pts = sorted((p for p in points if p["method"] == method), key=lambda p: p["beta"])
    lo, hi = pts[0], pts[-1]
    print(f"{method.upper()}: β {hi['beta']} -> {lo['beta']}: entropy {hi['entropy']:.3f} -> {lo['entropy']:.3f}, "
          f"unique {hi['unique_frac']:.3f} -> {lo['unique_frac']:.3f}, gold {hi['gold_reward']:+.3f} -> {lo['gold_reward']:+.3f}")
print("figure:", run.out / "diversity" / "diversity.png")

# %% The cost table (it brings the RLHF and DPO stages it compares up to date first)
rows = cost_table(run)
