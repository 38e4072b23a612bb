# %% [markdown]
# # 04 · Preference data: pairs from the SFT model, labels from Bradley–Terry
# **You need** lesson 03 (the SFT model). **You will see** the preference pairs every later lesson
# trains on, how noisy their labels are, and the model of that noise.
# For each prompt we sample two responses from the SFT model at temperature 1 — *on-policy*: drawn
# from the model's own distribution, exactly as it would answer, not from another model or a
# sharpened version of it — and label the pair with the Bradley–Terry model of the gold reward r\*
# (lesson 03; the DPO paper's eq. 1):
# $$P(y_1 \succ y_2 \mid x) = \sigma\big(r^*(x, y_1) - r^*(x, y_2)\big), \qquad \sigma(z) = \frac{1}{1 + e^{-z}}$$
# σ, the logistic function, turns a reward difference into a probability: ½ at a difference of 0,
# towards 1 as y_1's reward pulls ahead. The response the labeller picked is the **chosen** one,
# y_w (w for "wins"); the other is the **rejected** one, y_l ("loses"). Labels are noisy on
# purpose: two responses of nearly equal reward are a coin toss, as for human raters. (`PrefsConfig(labels="deterministic")` picks the better one always — the paper's IMDb
# setting; lesson 13 compares the two.) Run: `python tutorials/04_preferences.py`.

# %%
import math
import statistics

from minidpo.harness import pipeline as P
from minidpo.harness.tutorial import claim, tutorial_run
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
# JSONL, one pair a line, with TRL's keys: `prompt`, `chosen`, `rejected` (plus the gold rewards,
# which only this toy world knows). The Anthropic HH data has no `prompt` key: its `chosen` and
# `rejected` are each a whole dialogue, the prompt being the beginning they share (lesson 22 splits
# them). Your own file in this format, or TRL's conversational one, trains with
# `python -m minidpo dpo --data YOURS.jsonl`.

# %%
for p in pairs[:3]:
    print(f"{p['prompt']}\n   chosen  ({p['chosen_gold']:+.1f}): {p['chosen']}\n   rejected({p['rejected_gold']:+.1f}): {p['rejected']}")

# %% [markdown]
# ## The label noise
# How often is the "chosen" response really the better one under the gold reward? That fraction,
# with a tie (equal gold rewards) counted ½, is the **oracle accuracy**: the accuracy of the gold
# reward itself as a classifier of the labels. On *fresh* labels no reward model can beat it in
# expectation (a model can still memorise the labels it was trained on). It is measured on the
# training pairs here and on the held-out pairs (the ones lesson 05 scores) below.
# *Predict*: roughly what should it be, given the spread of the SFT samples' gold rewards (lesson
# 03's ±)? (Answered at the end.)

# %%
wrong = sum(p["chosen_gold"] < p["rejected_gold"] for p in pairs)
ties = sum(p["chosen_gold"] == p["rejected_gold"] for p in pairs)
right = len(pairs) - wrong - ties
oracle = report["train"]["oracle_accuracy"]
print(f"chosen is better under the gold reward in {right / len(pairs):.1%} of pairs, worse in {wrong / len(pairs):.1%}, "
      f"tied in {ties / len(pairs):.1%}")
print(f"oracle accuracy on the training pairs: {right / len(pairs):.3f} + ½·{ties / len(pairs):.3f} = {oracle:.3f}; "
      f"on the held-out pairs: {report['val']['oracle_accuracy']:.3f}")
claim("the labels are noisy: the gold reward contradicts more than a fifth of them", wrong / len(pairs) > 0.2,
      contradicted=round(wrong / len(pairs), 3))

# %% [markdown]
# ## Bradley–Terry in numbers
# The bigger the reward gap, the surer the label: per bin of |gap|, the observed agreement of
# label and gold (a tie ½) next to σ(|gap|), the agreement the model predicts.

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
first_bin, last_bin = bins[min(bins)], bins[max(bins)]
claim("the label agrees with the gold reward more often in the largest-gap bin than in the smallest",
      last_bin[1] / last_bin[0] > first_bin[1] / first_bin[0],
      smallest_gap=round(first_bin[1] / first_bin[0], 3), largest_gap=round(last_bin[1] / last_bin[0], 3))

# %% [markdown]
# ## Answers
# *What should the oracle accuracy be?* Under Bradley–Terry the better response is chosen with
# probability σ(|gap|), so the expected agreement is the mean of σ(|gap|) over the pairs. From the
# spread alone: two independent samples whose rewards have standard deviation s differ by a gap of
# variance 2s², so if that gap were normal, g ~ N(0, 2s²), the guess is E[σ(|g|)]. From these pairs'
# own gaps the prediction is exact in expectation; the measured accuracy differs from it by the
# noise of the labels, whose standard error is printed:

# %%
import random

s = statistics.pstdev([p[k] for p in pairs for k in ("chosen_gold", "rejected_gold")])
rng = random.Random(run.seed)
guess = sum(1 / (1 + math.exp(-abs(rng.gauss(0, s * math.sqrt(2))))) for _ in range(20000)) / 20000
expected = sum(1 / (1 + math.exp(-abs(p["chosen_gold"] - p["rejected_gold"]))) for p in pairs) / len(pairs)
agreement = [1.0 if p["chosen_gold"] > p["rejected_gold"] else 0.5 if p["chosen_gold"] == p["rejected_gold"] else 0.0
             for p in pairs]
se = statistics.pstdev(agreement) / len(agreement) ** 0.5
print(f"reward std of the sampled responses s = {s:.2f}: the guess E[σ(|g|)] = {guess:.3f}; "
      f"mean σ(|gap|) over these pairs {expected:.3f}; measured oracle accuracy {oracle:.3f} "
      f"(standard error {se:.4f})")
claim("the guess from the spread alone is within 0.02 of the measured oracle accuracy", abs(guess - oracle) < 0.02,
      guess=round(guess, 3), measured=round(oracle, 3))
claim("Bradley–Terry's prediction from the gaps is within 2 standard errors of the measured accuracy",
      abs(expected - oracle) < 2 * se, predicted=round(expected, 4), measured=round(oracle, 4), standard_error=round(se, 4))

# %% [markdown]
# ## What to remember
# - A preference file holds `prompt`, `chosen`, `rejected`; here the pairs are the SFT model's own
#   samples, labelled by Bradley–Terry on the gold reward.
# - The labels are noisy: the oracle accuracy (ties ½) is the ceiling, in expectation on fresh
#   labels, for any reward model, and Bradley–Terry predicts it from the reward gaps.
