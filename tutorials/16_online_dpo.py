# %% [markdown]
# # 16 · Online DPO: the answer to "the dataset is fixed"
# **You need** lessons 04 and 09 (pairs and their labels; a DPO run). **You will see** DPO made
# online, round by round, and compared with offline DPO at the same number of labels.
# Offline DPO only ever sees pairs sampled from the SFT model. Online DPO works in rounds: sample
# fresh pairs from the current policy, label them (by the gold Bradley–Terry model — a human — or by
# the reward model — no human), and train DPO on them (the DPO stage's epochs over the round's
# pairs, starting from the round's policy). Same number of labelled pairs and gradient steps as
# offline DPO.
# Run: `python tutorials/16_online_dpo.py` after lesson 09 (`--fast`: a smoke run). One round
# written out first, checked against the library's `online_round`; then the library's rounds.

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
from minidpo.harness.tutorial import lesson_knobs, show, tutorial_run
from minidpo.preferences import LABELS, encode_pairs, label_pair, read_preferences
from minidpo.sampling import make_generator, sample
from minidpo.studies.online_dpo import online_round, run_online_dpo

run = tutorial_run("16: online (iterative) DPO")
ensure(run, "eval_sft", "prefs", "reward_model", "eval_dpo")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: how many prompts the written-out round samples (256; 64 with `--fast`), and how its
# pairs are labelled (`bt`: Bradley–Terry on the gold reward, as in the study; `deterministic`:
# the better one wins).

# %%
knobs = lesson_knobs(prompts=64 if run.fast else 256, labels="bt")
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
else:
    print(f"(the library's online_round labels by Bradley–Terry; this variant labels '{knobs.labels}')")

# %% [markdown]
# ## Online vs offline at the same number of labels
# The study runs rounds like the one above, each on fresh pairs from the policy of the previous
# round, labelled by the gold reward or by the reward model, until it has used as many labelled
# pairs as offline DPO. The pairs follow the policy, so its new mistakes get labelled.
# *Question*: labelled by the reward model, online DPO is RLHF without RL — does it inherit the
# reward model's blind spots? Compare the two label sources' gold reward and agreement with gold.

# %%
res = run_online_dpo(run)
o = res["offline"]
print(f"offline DPO : {o['labelled_pairs']} pairs, gold {o['gold_reward']:+.3f}, fluency {o['fluency']:.3f}, KL {o['kl_to_ref']:.2f}")
agreement = {}
for name, rounds in res["online"].items():
    last = rounds[-1]
    agreement[name] = sum(r["label_agrees_with_gold"] for r in rounds) / len(rounds)
    print(f"online ({name:12s}): {len(rounds)} rounds, {last['labelled_pairs']} pairs, gold {last['gold_reward']:+.3f}, "
          f"fluency {last['fluency']:.3f}, KL {last['kl_to_ref']:.2f}; labels agree with gold in "
          f"{agreement[name]:.3f} of pairs")
fig = plots.online_figure(res)
print("figure:", run.out / "online_dpo" / "online_dpo.png")
show(fig)

# %% [markdown]
# *Try*: `--set labels=deterministic` (or set `labels` in the knobs cell and re-run from there):
# the written-out round's labels agree with the gold reward in every pair but the exact ties —
# the DPO paper's IMDb setting; Bradley–Terry's coin flips some of them, as human labellers do.
#
# *Questions*
# 1. Which label source ends with the higher gold reward, and how often did its labels agree with gold?
# 2. Does online DPO beat offline DPO at the same number of labelled pairs?

# %% [markdown]
# ## Answers

# %%
final = {name: rounds[-1]["gold_reward"] for name, rounds in res["online"].items()}
top = max(final, key=final.get)
print("1. final gold: " + ", ".join(f"{n} labels {g:+.3f} (agreement {agreement[n]:.3f})" for n, g in final.items())
      + f" -> {top} labels end higher")
# one seed: the difference of two means of n samples each, in standard errors
n_eval = len(read_json(run.path("eval_dpo.json"))["gold"])
last_online = res["online"][top][-1]
se = math.sqrt((last_online["gold_std"] ** 2 + o["gold_std"] ** 2) / n_eval)
z = (final[top] - o["gold_reward"]) / se
print(f"2. online ({top} labels) {final[top]:+.3f} vs offline {o['gold_reward']:+.3f}: a difference of "
      f"{final[top] - o['gold_reward']:+.3f}, {z:+.1f} standard errors of a difference of two {n_eval}-sample means -> "
      + (("online is ahead" if z > 0 else "offline is ahead") if abs(z) > 2 else
         "within 2 standard errors: one seed cannot call it"))

# %% [markdown]
# ## What to remember
# - Offline DPO only sees pairs sampled from the SFT model; online DPO labels what the current
#   policy writes, so its new mistakes get labelled too.
# - Labelled by a reward model instead of a human, online DPO is RLHF without RL — and it inherits
#   the reward model's blind spots.
# - One seed and 400 samples rarely separate two good methods: say how many standard errors apart they are.
