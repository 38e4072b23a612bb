# %% [markdown]
# # 04 · Preference data: pairs from the SFT model, labels from Bradley–Terry
# For each prompt we sample two responses from the SFT model (temperature 1: exactly on-policy) and
# label the pair with P(y1 ≻ y2) = σ(r*(y1) − r*(y2)). Labels are noisy on purpose: two responses
# of nearly equal reward are a coin toss, as for human raters. Run: `python tutorials/04_preferences.py`.

# %%
import math

from minidpo import pipeline as P
from minidpo.cli import tutorial_run
from minidpo.preferences import read_preferences

run = tutorial_run("04: preference pairs and their label noise")
P.stage_sft(run)
report = P.stage_prefs(run)
pairs, file_report = read_preferences(run.path("prefs_train.jsonl"))
print(f"read {file_report['read']} pairs from {file_report['file']}; refused lines: {len(file_report['refused'])}")
print(f"candidate pairs refused because both samples were identical: {report['train']['refused_identical']}")

# %% Three pairs as they are stored (JSONL: prompt / chosen / rejected, plus the gold rewards we know)
for p in pairs[:3]:
    print(f"{p['prompt']}\n   chosen  ({p['chosen_gold']:+.1f}): {p['chosen']}\n   rejected({p['rejected_gold']:+.1f}): {p['rejected']}")

# %% The label noise: how often the chosen response really has the higher gold reward
wrong = sum(p["chosen_gold"] < p["rejected_gold"] for p in pairs)
ties = sum(p["chosen_gold"] == p["rejected_gold"] for p in pairs)
print(f"chosen is worse under the gold reward in {wrong / len(pairs):.1%} of pairs, tied in {ties / len(pairs):.1%}")
print(f"oracle accuracy (the best any reward model can do on these labels): {report['train']['oracle_accuracy']:.3f}")

# %% Bradley–Terry in numbers: the bigger the reward gap, the surer the label
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
