# %% [markdown]
# # 06 · REINFORCE with a KL penalty (RLHF, step 2)
# Sample from the policy, score with the reward model, subtract β times the log-ratio to the
# reference, use the other samples of the same prompt as the baseline, push up log π of the good
# ones. Read the docstring of `minidpo/rlhf.py`: it lists every simplification.
# Run: `python tutorials/06_rlhf_reinforce.py`.

# %%
from minidpo import pipeline as P
from minidpo import plots
from minidpo.cli import tutorial_run
from minidpo.evaluate import first_per_prompt

run = tutorial_run("06: REINFORCE with a KL penalty")
for stage in (P.stage_sft, P.stage_eval_sft, P.stage_prefs, P.stage_reward_model):
    stage(run)
m = P.stage_rlhf(run)

# %% What happened during training: proxy reward, gold reward, KL
h = m["history"]
for r in h[:: max(1, len(h) // 8)] + [h[-1]]:
    print(f"step {r['step']:4d} | proxy {r['proxy_reward']:+.3f} | gold {r['gold_reward']:+.3f} | "
          f"KL {r['kl_k1']:.3f} (k3 {r['kl_k3']:.3f}) | entropy {r['entropy']:.3f} | length {r['length']:.1f}")
plots.rlhf_curves(h, run.path("rlhf_curves.png"))
print("figure:", run.path("rlhf_curves.png"))

# %% Where the time goes: sampling is sequential, token by token
per = m["seconds_per_step"]
total = sum(per.values())
print("seconds per step: " + ", ".join(f"{k} {v:.3f} ({v / total:.0%})" for k, v in per.items()))

# %% Before / after on held-out films (same prompts, same seed)
ev = P.stage_eval_rlhf(run)
sft = P.stage_eval_sft(run)
print(f"RLHF: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f}")
for i in first_per_prompt(sft["samples"])[:5]:  # one sample each of five films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT : {a['response']} ({a['gold']:+.1f})\n   RLHF: {b['response']} ({b['gold']:+.1f})")
