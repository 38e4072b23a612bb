# %% [markdown]
# # 04 · Preference data: pairs from the SFT model, labels from Bradley–Terry
# **You need** lesson 03 (the SFT model). **You will see** the preference pairs every later lesson
# trains on, how noisy their labels are, and the model of that noise.
# For each prompt we sample two responses from the SFT model at temperature 1 — *on-policy*: drawn
# from the model's own distribution, exactly as it would answer, not from another model or a
# sharpened version of it — and label the pair with the Bradley–Terry model of the gold reward (the
# DPO paper's eq. 1):
# $$P(y_1 \succ y_2 \mid x) = \sigma\big(r^*(x, y_1) - r^*(x, y_2)\big)$$
# Labels are noisy on purpose: two responses of nearly equal reward are a coin toss, as for human
# raters. (`PrefsConfig(labels="deterministic")` picks the better one always — the paper's IMDb
# setting; lesson 12 compares the two.) Run: `python tutorials/04_preferences.py`.

# %%
import math
import statistics

from minidpo.harness import pipeline as P
from minidpo.harness.tutorial import tutorial_run
from minidpo.preferences import read_preferences
from minidpo.harness.stages import ensure

run = tutorial_run("04: preference pairs and their label noise")
ensure(run, "sft")
report = P.stage_prefs(run)
pairs, file_report = read_preferences(run.path("prefs_train.jsonl"))
print(f"read {file_report['read']} pairs from {file_report['file']}; refused lines: {len(file_report['refused'])}")
print(f"candidate pairs refused because both samples were identical: {report['train']['refused_identical']}")

# %% [markdown]
# ## The file
# JSONL, one pair a line, with the keys of TRL and the Anthropic HH data: `prompt`, `chosen`,
# `rejected` (plus the gold rewards, which only this toy world knows). Your own file in this format,
# or TRL's conversational one, trains with `python -m minidpo dpo --data YOURS.jsonl`.

# %%
for p in pairs[:3]:
    print(f"{p['prompt']}\n   chosen  ({p['chosen_gold']:+.1f}): {p['chosen']}\n   rejected({p['rejected_gold']:+.1f}): {p['rejected']}")

# %% [markdown]
# ## The label noise
# How often is the "chosen" response really the better one under the gold reward? That fraction
# is the **oracle accuracy**: no reward model trained on these labels can beat it on average.
# *Predict*: roughly what should it be, given that the SFT samples' gold rewards spread with a
# standard deviation of about 1? (Answered at the end.)

# %%
wrong = sum(p["chosen_gold"] < p["rejected_gold"] for p in pairs)
ties = sum(p["chosen_gold"] == p["rejected_gold"] for p in pairs)
print(f"chosen is worse under the gold reward in {wrong / len(pairs):.1%} of pairs, tied in {ties / len(pairs):.1%}")
print(f"oracle accuracy (the best any reward model can do on these labels): {report['train']['oracle_accuracy']:.3f}")

# %% [markdown]
# ## Bradley–Terry in numbers
# The bigger the reward gap, the surer the label: per bin of |gap|, the observed agreement of
# label and gold next to σ(|gap|), the agreement the model predicts.

# %%
# per bin of |gap|: how often the label agrees with the gold reward (a tie counts ½), and the
# agreement Bradley–Terry predicts, the mean of σ(|gap|) over the bin's pairs
bins = {}
for p in pairs:
    gap = abs(p["chosen_gold"] - p["rejected_gold"])
    agree = 1.0 if p["chosen_gold"] > p["rejected_gold"] else 0.5 if gap == 0 else 0.0
    b = min(int(gap / 0.5), 6)
    n, k, pred = bins.get(b, (0, 0.0, 0.0))
    bins[b] = (n + 1, k + agree, pred + 1 / (1 + math.exp(-gap)))
print("|reward gap| | pairs | label agrees with gold | σ(|gap|) predicts")
for b in sorted(bins):
    n, k, pred = bins[b]
    print(f"{0.5 * b:4.1f}-{0.5 * b + 0.5:3.1f}{'+' if b == 6 else ' '}  | {n:5d} | {k / n:.3f}                  | {pred / n:.3f}")

# %% [markdown]
# ## Answers
# *What should the oracle accuracy be?* Under Bradley–Terry the better response is chosen with
# probability σ(|gap|), so the expected agreement is the mean of σ(|gap|) over the pairs. From the
# spread alone: two independent samples whose rewards have standard deviation s differ by a gap
# g ~ N(0, 2s²), so the guess is E[σ(|g|)]; from these pairs' own gaps it is exact on average:

# %%
import random

s = statistics.pstdev([p[k] for p in pairs for k in ("chosen_gold", "rejected_gold")])
rng = random.Random(run.seed)
guess = sum(1 / (1 + math.exp(-abs(rng.gauss(0, s * math.sqrt(2))))) for _ in range(20000)) / 20000
expected = sum(1 / (1 + math.exp(-abs(p["chosen_gold"] - p["rejected_gold"]))) for p in pairs) / len(pairs)
print(f"reward std of the sampled responses s = {s:.2f}: the guess E[σ(|g|)] = {guess:.3f}; "
      f"mean σ(|gap|) over these pairs {expected:.3f}; measured oracle accuracy {report['train']['oracle_accuracy']:.3f}")

# %% [markdown]
# ## What to remember
# - A preference file holds `prompt`, `chosen`, `rejected`; here the pairs are the SFT model's own
#   samples, labelled by Bradley–Terry on the gold reward.
# - The labels are noisy: the oracle accuracy above is the ceiling for any reward model, and
#   Bradley–Terry predicts it from the reward gaps.
