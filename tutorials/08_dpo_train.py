# %% [markdown]
# # 08 · Training with DPO
# The same preference pairs as the reward model, one loss, no sampling, no reward model. Watch
# `logps/chosen`: it falls too. DPO trains the *margin*; the probability mass it frees goes
# somewhere no label looked at, so we report fluency beside every win rate.
# Run: `python tutorials/08_dpo_train.py` (add `--loss-type ipo` etc. via the CLI for variants).

# %%
from minidpo import pipeline as P
from minidpo import plots
from minidpo.cli import tutorial_run
from minidpo.evaluate import first_per_prompt

run = tutorial_run("08: DPO training and evaluation")
P.stage_sft(run)
P.stage_eval_sft(run)
P.stage_prefs(run)
m = P.stage_dpo(run)
print(f"{m['steps']} steps in {m['seconds']:.0f}s; reference log-probs read from the cache: {m['reference_logps_cached']}")
plots.dpo_metrics_figure(m["history"], run.path("dpo_metrics.png"))
print("figure:", run.path("dpo_metrics.png"))

# %% The training metrics, start and end
first, last = m["history"][1], m["history"][-1]
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
          "logps/chosen", "logps/rejected"):
    print(f"{k:20s} {first[k]:+.3f} -> {last[k]:+.3f}")

# %% Gold numbers on held-out films, and before/after samples side by side
ev = P.stage_eval_dpo(run)
sft = P.stage_eval_sft(run)
print(f"DPO: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f} (SFT {sft['fluency']:.3f})")
print(f"held-out implicit-reward accuracy {m['val_implicit_reward_accuracy']:.3f}")
for i in first_per_prompt(sft["samples"])[:6]:  # one sample each of six films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT: {a['response']} ({a['gold']:+.1f})\n   DPO: {b['response']} ({b['gold']:+.1f})")
