# %% [markdown]
# # 05 · The reward model (RLHF, step 1)
# The SFT GPT plus a scalar head read at the last response token, trained with the Bradley–Terry
# loss −log σ(r(x, y_w) − r(x, y_l)) on the same pairs DPO will use. Its ceiling is the oracle
# accuracy: the gold reward's own agreement with the noisy labels. Run: `python tutorials/05_reward_model.py`.

# %%
from minidpo import pipeline as P
from minidpo import plots
from minidpo.cli import tutorial_run

run = tutorial_run("05: a Bradley–Terry reward model")
P.stage_sft(run)
P.stage_prefs(run)
m = P.stage_reward_model(run)

# %% Accuracy against the ceiling, and agreement with the gold reward on fresh samples
print(f"held-out pairwise accuracy {m['val_accuracy']:.3f}; oracle {m['oracle_accuracy']:.3f}; "
      f"ratio {m['accuracy_vs_oracle']:.2f}")
print(f"correlation with the gold reward on fresh SFT samples of held-out films: {m['gold_correlation_heldout']:.2f}")
print(f"normalisation: raw reward mean {m['normalisation']['raw_mean']:+.3f}, std {m['normalisation']['raw_std']:.3f} "
      "on reference samples -> shifted and scaled to mean 0, std 1 before RL")
plots.reward_model_figure(m, run.path("reward_model.png"))
print("figure:", run.path("reward_model.png"))
