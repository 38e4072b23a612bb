# %% [markdown]
# # 14 · Online DPO: the answer to "the dataset is fixed"
# Offline DPO only ever sees pairs sampled from the SFT model. Online DPO works in rounds: sample
# fresh pairs from the current policy, label them (by the gold Bradley–Terry model — a human — or by
# the reward model — no human), and take a DPO pass. Same number of labelled pairs and gradient
# steps as offline DPO. Run: `python tutorials/14_online_dpo.py` (about 2 minutes).

# %%
from minidpo.cli import tutorial_run
from minidpo.online_dpo import run_online_dpo

run = tutorial_run("14: online (iterative) DPO")
res = run_online_dpo(run)

# %% Online vs offline at the same number of labels
o = res["offline"]
print(f"offline DPO : {o['labelled_pairs']} pairs, gold {o['gold_reward']:+.3f}, fluency {o['fluency']:.3f}, KL {o['kl_to_ref']:.2f}")
for name, rounds in res["online"].items():
    last = rounds[-1]
    print(f"online ({name:12s}): {last['labelled_pairs']} pairs, gold {last['gold_reward']:+.3f}, "
          f"fluency {last['fluency']:.3f}, KL {last['kl_to_ref']:.2f}; labels agree with gold in "
          f"{sum(r['label_agrees_with_gold'] for r in rounds) / len(rounds):.3f} of pairs")
print("figure:", run.out / "online_dpo" / "online_dpo.png")
