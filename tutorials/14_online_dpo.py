# %% [markdown]
# # 14 · Online DPO: the answer to "the dataset is fixed"
# Offline DPO only ever sees pairs sampled from the SFT model. Online DPO works in rounds: sample
# fresh pairs from the current policy, label them (by the gold Bradley–Terry model — a human — or by
# the reward model — no human), and take a DPO pass. Same number of labelled pairs and gradient
# steps as offline DPO. Run: `python tutorials/14_online_dpo.py` (about 2 minutes).

# %%
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.studies.online_dpo import run_online_dpo

run = tutorial_run("14: online (iterative) DPO")
res = run_online_dpo(run)

# %% [markdown]
# ## Online vs offline at the same number of labels
# Each round: 1. sample two responses per prompt from the *current* policy (temperature 1);
# 2. label them by Bradley–Terry on the gold reward, or on the reward model; 3. score them once with
# the reference; 4. a DPO pass on them. The pairs follow the policy, so its new mistakes get labelled.
# *Question*: labelled by the reward model, online DPO is RLHF without RL — does it inherit the
# reward model's blind spots? Compare the two label sources' gold reward and agreement with gold.

# %%
o = res["offline"]
print(f"offline DPO : {o['labelled_pairs']} pairs, gold {o['gold_reward']:+.3f}, fluency {o['fluency']:.3f}, KL {o['kl_to_ref']:.2f}")
for name, rounds in res["online"].items():
    last = rounds[-1]
    print(f"online ({name:12s}): {last['labelled_pairs']} pairs, gold {last['gold_reward']:+.3f}, "
          f"fluency {last['fluency']:.3f}, KL {last['kl_to_ref']:.2f}; labels agree with gold in "
          f"{sum(r['label_agrees_with_gold'] for r in rounds) / len(rounds):.3f} of pairs")
from minidpo.harness import plots
fig = plots.online_figure(res)
print("figure:", run.out / "online_dpo" / "online_dpo.png")
show(fig)
