# %% [markdown]
# # 13 · DPO's own failure modes
# DPO trains a *margin*: log π(y_w)/π_ref − log π(y_l)/π_ref. Nothing in the loss says log π(y_w)
# must go up, and in practice both log-probs fall. The probability mass that leaves the labelled
# responses goes to text nobody labelled, and in this world we can see what that text is. Then a
# table of remedies: a larger β, conservative DPO (label smoothing), IPO, and an NLL term on the
# chosen response (RPO). Run: `python tutorials/13_dpo_failure_modes.py` (about 2 minutes).

# %%
from minidpo.harness.tutorial import tutorial_run
from minidpo.studies.failure_modes import run_failure_modes

run = tutorial_run("13: DPO's failure modes and remedies")
res = run_failure_modes(run)

# %% [markdown]
# ## Both log-probs fall
# DPO's loss depends only on the margin $h = \log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}$.
# It can grow with both log-probs falling, as long as the rejected one falls faster.

# %%
d = res["remedies"]["DPO (default)"]
print(f"held-out pairs: Δ log π(chosen) = {d['logps_chosen_change']:+.2f}, Δ log π(rejected) = {d['logps_rejected_change']:+.2f} nats")

# %% [markdown]
# ## Where the mass went
# Probability that leaves the labelled responses lands on text no label looked at. Here we can
# see that text: samples of the DPO policy that the world's grammar rejects.

# %%
for s in res["examples_not_fluent"]:
    print(f"  {s['prompt']} -> {s['response']}  ({s['gold']:+.1f})")

# %% [markdown]
# ## The remedies side by side
# A larger β (a shorter leash), conservative DPO (label smoothing ε), IPO (a squared loss with a
# finite target), RPO (+ α·NLL of the chosen response). *Question*: which buys back fluency for the
# least win rate? Lesson 16's bench puts every registered loss on the same scale.

# %%
print(f"{'variant':30s} | gold   | win   | fluency | KL")
for name, r in res["remedies"].items():
    print(f"{name:30s} | {r['gold_reward']:+.3f} | {r['win_rate_vs_sft']:.3f} | {r['fluency']:.3f}   | {r['kl_to_ref']:.2f}")
print("figure:", run.out / "failure_modes" / "failure_modes.png")
