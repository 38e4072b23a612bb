# %% [markdown]
# # 03 · Supervised fine-tuning
# Next-token training on the response tokens only: the prompt is given, not learned. Then we sample
# from the model and score the samples with the world's gold reward. The SFT model should write
# fluent reviews whose rewards spread like the corpus's: fluent, but far from optimal, which is
# what preference tuning is for. Run: `python tutorials/03_sft.py` (about 1.5 minutes on 2 cores).

# %%
from minidpo import pipeline as P
from minidpo import plots
from minidpo.cli import tutorial_run

run = tutorial_run("03: supervised fine-tuning")

# %% Train (or reuse the checkpoint already in the run folder)
metrics = P.stage_sft(run)
print(f"held-out loss {metrics['val_loss_init']:.2f} -> {metrics['val_loss']:.3f} nats/token, "
      f"{metrics['tokens_per_s'] / 1e3:.1f}k tokens/s in {metrics['seconds']:.0f}s")
if metrics.get("mfu"):
    print(f"that is {100 * metrics['mfu']:.0f}% of this machine's fp32 matmul peak "
          f"({metrics['matmul_peak_flops'] / 1e9:.0f} GFLOP/s, measured at the start)")
plots.sft_curve(metrics["history"], run.path("sft_curve.png"))
print("figure:", run.path("sft_curve.png"))

# %% Sample on films never seen in training, score with the gold reward
ev = P.stage_eval_sft(run)
print(f"SFT samples: gold {ev['gold_reward']:+.3f} ± {ev['gold_std']:.2f}, fluency {ev['fluency']:.3f}, "
      f"unique {ev['unique_frac']:.3f}")
print(f"corpus     : gold {ev['corpus']['gold_reward']:+.3f} ± {ev['corpus']['gold_std']:.2f}")
for s in ev["samples"][:6]:
    print(f"  {s['prompt']:32s} -> {s['response']}  ({s['gold']:+.1f})")
plots.gold_histograms({"corpus": ev["corpus"]["gold"], "SFT samples": ev["gold"]},
                                       run.path("sft_gold_hist.png"), "Gold reward: SFT samples vs corpus")
print("figure:", run.path("sft_gold_hist.png"))
