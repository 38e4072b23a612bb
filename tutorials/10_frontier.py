# %% [markdown]
# # 10 · The reward-vs-KL frontier
# For several β, DPO and RLHF start from the same SFT model and data; checkpoints along training
# are scored for gold reward and KL to the reference. This is the DPO paper's Figure 2 in
# miniature. With --fast it takes about a minute; the default takes several minutes.
# Run: `python tutorials/10_frontier.py`.

# %%
from minidpo.cli import tutorial_run
from minidpo.frontier import run_frontier

run = tutorial_run("10: reward-vs-KL frontier for DPO and RLHF")
points = run_frontier(run)

# %% The best gold reward each method reached, and at what KL
for method in ("dpo", "rlhf"):
    best = max((p for p in points if p["method"] == method), key=lambda p: p["gold_reward"])
    print(f"{method}: best gold {best['gold_reward']:+.3f} at KL {best['kl_to_ref']:.2f} "
          f"(β={best['beta']}, step {best['step']}, fluency {best['fluency']:.3f})")
