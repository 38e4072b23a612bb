# %% [markdown]
# # 17 · Online DPO: the answer to "the dataset is fixed"
# **You need** lessons 04 and 09 (pairs and their labels; a DPO run). **You will see** DPO made
# online, round by round, and compared with offline DPO at the same number of labels and the same KL.
# Offline DPO only ever sees pairs sampled from the SFT model. Online DPO works in rounds: sample
# fresh pairs from the current policy, label them (by the gold Bradley–Terry model — a human — or by
# the reward model — no human), and train DPO on them (the DPO stage's epochs over the round's
# pairs, starting from the round's policy). Same number of labelled pairs and gradient steps as
# offline DPO.
# Run: `python tutorials/17_online_dpo.py` after lesson 09 (`--fast`: a smoke run). One round
# written out first, checked against the library's `online_round`; then the library's rounds on one
# seed; then the study (both label sources and offline DPO on three seeds, compared at the same KL),
# read from this folder, `runs/default`, or the copy committed with minidpo, which runs with
# `--set full_study=true` (or `python -m minidpo online-dpo`).

# %%
import copy
import math
import random
from dataclasses import replace

import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, pair_logps, run_dpo
from minidpo.evaluate import summary_row
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.preferences import LABELS, encode_pairs, label_pair, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.studies.online_dpo import online_round, online_unit, run_online_dpo

run = tutorial_run("17: online (iterative) DPO")
ensure(run, "eval_sft", "prefs", "reward_model", "eval_dpo")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: how many prompts the written-out round samples (256; 64 with `--fast`), how its
# pairs are labelled (`bt`: Bradley–Terry on the gold reward, as in the study; `deterministic`:
# the better one wins), and whether to run the full study here.

# %%
knobs = lesson_knobs(prompts=64 if run.fast else 256, labels="bt", full_study=False)
if knobs.labels not in LABELS:
    raise SystemExit(f"error: --set labels={knobs.labels}: one of {', '.join(LABELS)}")

# %% [markdown]
# ## One round, written out
# **1. Sample** two responses per prompt from the *current* policy (round 1: the SFT model),
# temperature 1, exactly on-policy.

# %%
cfg = run.settings(DPOConfig)
sft = run.load_policy("sft.pt")
policy = copy.deepcopy(sft)
rng = random.Random(run.seed)
prompts = [world.make_prompt(rng.choice(world.split_titles()[0])) for _ in range(knobs.prompts)]
seed = run.seed + 1000  # the study's first round samples with this seed
flat = [p for p in prompts for _ in range(2)]
texts = [run.tok.decode_response(r) for r in sample(policy, run.tok, flat, make_generator(seed, run.device), dtype=run.dtype)]
print(f"{len(flat)} samples for {len(prompts)} prompts; the first: {flat[0]} -> {texts[0]} | {texts[1]}")

# %% [markdown]
# **2. Label** each pair: y₁ wins with probability σ(r*(y₁) − r*(y₂)) (Bradley–Terry on the gold
# reward, eq. 1 of the paper), by a seeded coin. Two identical samples cannot be compared, and an
# empty one cannot be written: both are refused.

# %%
coin = random.Random(seed)
pairs, refused = [], 0
for i in range(0, len(flat), 2):
    if texts[i] == texts[i + 1] or not texts[i].strip() or not texts[i + 1].strip():
        refused += 1
        continue
    pairs.append(label_pair(coin, flat[i], texts[i], texts[i + 1], labels=knobs.labels))
for p in pairs[:3]:
    p_first = 1 / (1 + math.exp(-(p["chosen_gold"] - p["rejected_gold"])))
    print(f"  chosen (gold {p['chosen_gold']:+.1f}) {p['chosen']}\n  rejected (gold {p['rejected_gold']:+.1f}) "
          f"{p['rejected']}   P(chosen ≻ rejected) = {p_first:.2f}")
agree = sum(p["chosen_gold"] > p["rejected_gold"] for p in pairs) / len(pairs)
print(f"{len(pairs)} pairs ({refused} refused); the label agrees with the gold reward in {agree:.3f} of them")

# %% [markdown]
# **3. Score once with the reference** (the SFT model): log π_ref(y_w|x), log π_ref(y_l|x).
# **4. DPO on the new pairs** (lesson 09's loop, with the DPO stage's settings: its number of
# epochs over the round's pairs), the held-out pairs as its evaluation.

# %%
encoded, _ = encode_pairs(run.tok, pairs, sft.config.block_size)
reference = pair_logps(sft, encoded, run.tok.end_id, cfg.average_logps, dtype=run.dtype)
print(f"reference log-probs {tuple(reference.shape)}; first two:\n{reference[:2]}")
val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
val_enc, _ = encode_pairs(run.tok, val_pairs, sft.config.block_size)
val = (val_enc, pair_logps(sft, val_enc, run.tok.end_id, cfg.average_logps, dtype=run.dtype))
round_cfg = replace(cfg, seed=run.seed)  # the study's round r trains with seed + r
out = run_dpo(policy, round_cfg, encoded, reference, val[0], val[1], run.tok.end_id, run.dtype, quiet=True)
first, last = out["history"][0], out["history"][-1]
print(f"{out['steps']} DPO steps ({round_cfg.epochs} epoch(s) over the round's {len(encoded)} pairs): held-out loss {first['eval/loss']:.4f} -> {last['eval/loss']:.4f}, "
      f"held-out accuracy {last['eval/rewards/accuracies']:.3f}")
claim("the round starts at the reference (held-out loss ln 2) and lowers its held-out loss",
      abs(first["eval/loss"] - math.log(2)) < 1e-6 and last["eval/loss"] < first["eval/loss"],
      start=first["eval/loss"], end=last["eval/loss"])
after = summary_row(run.evaluate(policy, sft))
print(f"after one round: gold {after['gold_reward']:+.3f}, win rate vs SFT {after['win_rate_vs_sft']:.3f}, "
      f"fluency {after['fluency']:.3f}, KL {after['kl_to_ref']:.2f}")

# %% [markdown]
# The library's `online_round` does these four steps; from the same policy with the same seeds it
# must give the same pairs and the same weights.

# %%
if knobs.labels == "bt":
    again = copy.deepcopy(sft)
    lib_pairs, info = online_round(again, sft, run.tok, prompts, round_cfg, val, seed, dtype=run.dtype)
    same_pairs = lib_pairs == pairs
    max_diff = max((a - b).abs().max().item() for a, b in zip(again.state_dict().values(), policy.state_dict().values()))
    print(f"online_round: same pairs {same_pairs}, {info['steps']} steps, max |weight difference| {max_diff:.1e}")
    claim("the library's online_round gives the same pairs and the same weights", same_pairs and max_diff == 0.0,
          max_weight_difference=max_diff)
else:
    print(f"(the library's online_round labels by Bradley–Terry; this variant labels '{knobs.labels}')")

# %% [markdown]
# ## Online DPO on one seed
# The study runs rounds like the one above, each on fresh pairs from the policy of the previous
# round, until it has used as many labelled pairs as offline DPO. The pairs follow the policy, so
# its new mistakes get labelled. Here: the study's seed-0 unit with gold labels (the full study
# reuses it), against offline DPO at the end of its training (lesson 09's run). One seed, and the
# two end at different KL: a table to read, not a comparison.

# %%
online = online_unit(run, "gold")
offline = read_json(run.path("eval_dpo.json"))
print(f"offline DPO: {len(read_preferences(run.path('prefs_train.jsonl'))[0])} pairs, gold {offline['gold_reward']:+.3f}, "
      f"fluency {offline['fluency']:.3f}, KL {offline['kl_to_ref']:.2f}")
for r in online:
    print(f"online, round {r['round']}: {r['labelled_pairs']} pairs so far (labels agree with gold in "
          f"{r['label_agrees_with_gold']:.3f}), gold {r['gold_reward']:+.3f}, fluency {r['fluency']:.3f}, KL {r['kl_to_ref']:.2f}")
claim("online DPO's gold reward rose over its rounds (one seed)", online[-1]["gold_reward"] > online[0]["gold_reward"],
      first=online[0]["gold_reward"], last=online[-1]["gold_reward"])

# %% [markdown]
# ## The study: three seeds, at the same KL
# Both label sources — the gold Bradley–Terry model (a human) and the reward model (no human) — on
# three seeds (each its own prompts, samples, reward model and offline pairs), and offline DPO on
# each seed's pairs evaluated at four points along training. A method's frontier is the upper
# concave hull of its points (online: after each round; offline: its checkpoints) from the SFT model
# at KL 0; two methods are read on their frontiers at the largest KL both reach in that seed, and
# the difference is paired by seed. At the end of training they sit at different KL.
# *Question*: labelled by the reward model, online DPO is RLHF without RL — does it inherit the
# reward model's blind spots? Compare the two label sources' gold reward and agreement with gold.

# %%
res, shown = study_result(run, knobs.full_study, "online_dpo/online_dpo.json", lambda: run_online_dpo(run), "the full study")
if res is None:
    raise SystemExit(f"error: no saved online-DPO study: `--set full_study=true`, or `{run.command('online-dpo')}`")
print("Shown:", shown)
n_seeds = len(res["seeds"])
print(f"end of training, mean ± std over {n_seeds} seeds (each at its own KL):")
for name, f in res["final"].items():
    print(f"  {name:12s}: gold {f['gold_reward']['mean']:+.3f} ± {f['gold_reward']['std']:.3f}, fluency "
          f"{f['fluency']['mean']:.3f} ± {f['fluency']['std']:.3f}, KL {f['kl_to_ref']['mean']:.2f} ± {f['kl_to_ref']['std']:.2f}")
for what, m in res["matched"].items():
    print(f"  {what}: read at KL " + ", ".join(f"{k:.2f}" for k in m["kl"]))
fig = plots.online_figure(res)
show(fig)
at_kl = {what: claim_paired("gold reward at the same KL", names[0], res["matched"][what]["a_gold"],
                            names[1], res["matched"][what]["b_gold"], expect)
         for what, names, expect in (("gold vs offline", ("online, gold labels", "offline DPO"), "="),
                                     ("reward model vs offline", ("online, reward-model labels", "offline DPO"), "<"),
                                     ("reward model vs gold", ("reward-model labels", "gold labels"), "<"))}
agreement = res["agreement"]
claim_paired("how often a round's labels agree with the gold reward", "gold labels", agreement["gold"],
             "reward-model labels", agreement["reward model"], ">")

# %% [markdown]
# *Try*: `--set labels=deterministic` (or set `labels` in the knobs cell and re-run from there):
# the written-out round's labels agree with the gold reward in every pair but the exact ties —
# the DPO paper's IMDb setting; Bradley–Terry's coin flips some of them, as human labellers do.
#
# *Questions*
# 1. Which label source reaches the higher gold reward at the same KL, and how often did its labels agree with gold?
# 2. Does online DPO beat offline DPO at the same number of labelled pairs, read at the same KL?

# %% [markdown]
# ## Answers

# %%
print("1. agreement with gold over the rounds, per seed: " + "; ".join(
    f"{k} labels " + ", ".join(f"{v:.3f}" for v in vals) for k, vals in agreement.items())
      + f". Reward-model labels − gold labels at the same KL: {at_kl['reward model vs gold'].describe()} "
      f"({at_kl['reward model vs gold'].verdict}).")
d = at_kl["gold vs offline"]
print(f"2. online (gold labels) − offline at the same KL: {d.describe()}: {d.verdict}. At the end of training "
      f"they differ in KL too ({res['final']['gold']['kl_to_ref']['mean']:.2f} against "
      f"{res['final']['offline']['kl_to_ref']['mean']:.2f} on average), which is why the ends are not compared.")

# %% [markdown]
# ## What to remember
# - Offline DPO only sees pairs sampled from the SFT model; online DPO labels what the current
#   policy writes, so its new mistakes get labelled too.
# - Labelled by a reward model instead of a human, online DPO is RLHF without RL, and it can inherit
#   the reward model's blind spots: whether it did here is the paired reading above (reward-model
#   labels against offline DPO and against gold labels, at the same KL).
# - Compare two methods at the same KL, over seeds: one seed's evaluation noise is not the spread a
#   rerun would show.
