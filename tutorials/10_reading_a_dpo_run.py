# %% [markdown]
# # 10 · Reading a DPO run
# **You need** lessons 05 and 09 (the reward model; one DPO step, and the run it trained — if it
# has not run here, this lesson trains the run first). **You will see** the default DPO run read from step 0 to the end on
# held-out pairs, with the metric names of the DPO reference code and TRL; the policy's samples
# on films it never trained on, beside the SFT model's; and the implicit reward β·log π/π_ref used
# as a classifier beside the reward model and the oracle. Watch `logps/chosen`: DPO trains the
# *margin*, and the probability mass it frees goes somewhere no label looked at, so fluency is
# reported beside every win rate.
# Run: `python tutorials/10_reading_a_dpo_run.py` (`--fast`: seconds).

# %%
import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, pair_logps
from minidpo.evaluate import first_per_prompt, response_logps
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.reward_model import load_reward_model, score
from minidpo.sampling import make_generator, sample

run = tutorial_run("10: reading a DPO run")
ensure(run, "eval_sft", "prefs", "reward_model")
cfg = run.settings(DPOConfig)

# %% [markdown]
# ## The whole run
# `stage_dpo` is lesson 09's step in a loop over the configured epochs (two by default) at the default β, with a learning-rate
# warmup and cosine decay, and the held-out pairs scored at step 0 and every 20 steps. The metric names
# are those of the DPO reference code and TRL. A training batch is a different batch every step,
# so its metrics are noisy (faint in the figure); the held-out pairs are the same every time, so
# their curves say what the policy did. What a healthy run does: `eval/loss` falls from ln 2,
# `eval/rewards/margins` and `eval/rewards/accuracies` rise, `rewards/chosen` rises above
# `rewards/rejected` (both 0 at step 0), the margin between them growing.
# *Question*: will the held-out `logps/chosen` go up?

# %%
m = P.stage_dpo(run)
evals = [r for r in m["history"] if "eval/loss" in r]
start, end = evals[0], evals[-1]
print(f"{m['steps']} steps in {m['seconds']:.0f}s at β = {m['config']['beta']}; reference log-probs read from the "
      f"cache: {m['reference_logps_cached']}")
print(f"held-out pairs, step {start['step']} -> step {end['step']}:")
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
          "logps/chosen", "logps/rejected"):
    print(f"  eval/{k:20s} {start['eval/' + k]:+.3f} -> {end['eval/' + k]:+.3f}")
chosen_change = end["eval/logps/chosen"] - start["eval/logps/chosen"]
rejected_change = end["eval/logps/rejected"] - start["eval/logps/rejected"]
fig = plots.dpo_metrics_figure(m["history"], run.path("dpo_metrics.png"))
print("figure:", run.path("dpo_metrics.png"))
show(fig)


# %% [markdown]
# ## On the held-out films
# Samples at temperature 1 on films never trained on, scored by the gold reward; the win rate
# compares them with the SFT model's samples of the same prompts, drawn independently (another
# seed: lesson 06 says why), ties ½. The side-by-side lines below are therefore two independent
# draws for one film, not the same sample before and after training.

# %%
ev = P.stage_eval_dpo(run)
sft = P.stage_eval_sft(run)
print(f"DPO: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f} (SFT {sft['fluency']:.3f})")
for i in first_per_prompt(sft["samples"])[:6]:  # one sample each of six films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT: {a['response']} ({a['gold']:+.1f})\n   DPO: {b['response']} ({b['gold']:+.1f})")


# %% [markdown]
# ## The implicit reward is a classifier
# DPO trained no reward model, yet $\hat r(x, y) = \beta\log\pi(y|x)/\pi_{ref}(y|x)$ (eq. 5 without its per-prompt term β·log Z(x)) ranks
# any pair. On the held-out pairs, set its accuracy beside the reward model's (lesson 05) and the
# oracle's (the gold reward's agreement with the noisy labels: the ceiling). All three count a tie
# as ½, as the reward model's and the oracle's always have; TRL's `rewards/accuracies` counts a
# tie as wrong (chosen > rejected, strictly), which is why it reads 0.0 at step 0, when every
# implicit reward is 0 (lesson 08).

# %%
dpo_policy = run.load_policy("dpo.pt")
sft_policy = run.load_policy("sft.pt")
val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
val_enc, _ = encode_pairs(run.tok, val_pairs, dpo_policy.config.block_size)
beta = m["config"]["beta"]
# pair_logps scores any model: log π(y_w|x), log π(y_l|x) of every pair, (N, 2)
implicit = beta * (pair_logps(dpo_policy, val_enc, run.tok.end_id, cfg.average_logps)
                   - pair_logps(sft_policy, val_enc, run.tok.end_id, cfg.average_logps))
wins, ties = implicit[:, 0] > implicit[:, 1], implicit[:, 0] == implicit[:, 1]
accuracy = {"implicit reward (DPO)": (wins.float() + 0.5 * ties.float()).mean().item(),
            "reward model": read_json(run.path("reward_model_metrics.json"))["val_accuracy"],
            "oracle (gold reward)": read_json(run.path("prefs_report.json"))["val"]["oracle_accuracy"]}
for name, acc in accuracy.items():
    print(f"  {name:24s} held-out pair accuracy {acc:.3f}")
print(f"(ties: {int(ties.sum())} of {len(val_enc)}; counted as wrong, the implicit reward's accuracy is "
      f"{wins.float().mean().item():.3f}, the run's own eval/rewards/accuracies {end['eval/rewards/accuracies']:.3f})")

# %% [markdown]
# And on fresh text: samples of the SFT model on the held-out films (four a film, as lesson 05
# did for the reward model), scored by the implicit reward, by the reward model and by the gold
# reward. The implicit reward is only defined up to a constant per prompt, β·log Z(x) (eq. 5),
# so the correlation is also shown with each film's mean taken out.

# %%
prompts = [world.make_prompt(t) for t in world.split_titles()[1] for _ in range(4)]
ids = sample(sft_policy, run.tok, prompts, make_generator(run.seed + 8, run.device), dtype=run.dtype)
fresh = {"gold": torch.tensor([world.gold_reward(p, run.tok.decode_response(r)) for p, r in zip(prompts, ids)]),
         "implicit": beta * (response_logps(dpo_policy, run.tok, prompts, ids, dtype=run.dtype).logps
                             - response_logps(sft_policy, run.tok, prompts, ids, dtype=run.dtype).logps),
         "reward model": score(load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size),
                               run.tok, prompts, ids, dtype=run.dtype)}


def correlation(a, b):
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def centred(x):
    """x minus the mean of its film (prompts come in runs of four)."""
    x = x.view(-1, 4)
    return (x - x.mean(1, keepdim=True)).flatten()


corr = {k: (correlation(fresh[k], fresh["gold"]), correlation(centred(fresh[k]), centred(fresh["gold"])))
        for k in ("implicit", "reward model")}
for k, (raw, within) in corr.items():
    print(f"  {k:14s} vs gold on {len(prompts)} fresh SFT samples: correlation {raw:+.2f}, within a film {within:+.2f}")
fig = plots.implicit_reward_figure(accuracy, fresh, run.path("dpo_implicit_reward.png"))
show(fig)

# %% [markdown]
# ## Answers
# **Will the held-out `logps/chosen` go up?** Read from the run's own held-out history, step 0
# against the last step:

# %%
print(f"held-out log π(y_w) moved {chosen_change:+.3f} nats and log π(y_l) {rejected_change:+.3f} "
      f"(from step {start['step']} to step {end['step']}); the margin moved "
      f"{chosen_change - rejected_change:+.3f}.")
print("So logps/chosen " + ("went up" if chosen_change > 0 else "went DOWN") + ": DPO's loss sees only the "
      "difference of the two log-ratios, and nothing asks the chosen log-prob to rise. "
      + ("Here both fell; the mass they lost went to other responses (lessons 15 and 20 measure where)."
         if chosen_change < 0 and rejected_change < 0 else
         "The rejected log-prob moved down relative to it (the margin grew); lessons 15 and 20 show runs "
         "where both fall."))

# %% [markdown]
# ## What to remember
# - Read the held-out curves, not the training batch's: `eval/loss` falls from ln 2, margins and
#   accuracies rise; `rewards/accuracies` is 0.0 at step 0 because every pair is a tie.
# - DPO moves the *margin*; the chosen log-prob may fall too, and the freed mass goes to text no pair
#   labelled — so report fluency beside every win rate (lessons 15 and 20 look closer).
# - The implicit reward β·log π/π_ref is a reward model you get for free: it ranks held-out pairs
#   about as well as the trained reward model, and is defined only up to a constant per prompt.
