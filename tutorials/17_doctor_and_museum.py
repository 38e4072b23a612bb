# %% [markdown]
# # 17 · "Why is my DPO not working?" — the doctor and the museum of classic bugs
# The questions people file most often against DPO code are not about the math but about runs that
# silently go wrong: a loss stuck at ln 2, a chosen log-prob that falls, dropout left on, a
# reference that is not frozen, the end token masked as padding, a BPE merge across the
# prompt/response boundary, empty completions after truncation, mean log-probs with a β tuned for
# sums. Here each one can be switched on, seen in the metrics you would watch, diagnosed, and priced
# in gold reward — which only a world with a known reward can do.
# Run: `python tutorials/17_doctor_and_museum.py` (a few minutes; `--fast`: under a minute).

# %%
from minidpo.harness.tutorial import tutorial_run
from minidpo.studies.doctor import build, diagnose
from minidpo.studies.museum import FAULTS, run_museum
from minidpo.dpo import DPOConfig
from minidpo.harness.stages import ensure

run = tutorial_run("17: the doctor and the bug museum")
ensure(run, "eval_sft", "prefs")

# %% [markdown]
# ## The doctor on a clean setup
# Each check looks at what training would actually use. The first is the one to remember: at
# step 0 the policy *is* the reference, so every log-ratio is 0 and
# $$\mathcal{L}_0 = -\log\sigma(0) = \ln 2 \approx 0.6931, \qquad \hat r_w = \hat r_l = 0,$$
# yet the gradient $-\tfrac{\beta}{2}[\nabla\log\pi(y_w) - \nabla\log\pi(y_l)]$ is not zero.
# A loss that is not ln 2 at step 0 means the policy does not score like the reference.

# %%
cfg = run.settings(DPOConfig)
clean = diagnose(build(run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), cfg, max_pairs=256))
for c in clean:
    print(c.line())

# %% [markdown]
# ## The museum
# Each bug as it happens in real code, what a learner sees, and where people met it:

# %%
for name, fault in FAULTS.items():
    print(f"{name:24s} {fault.what}\n{'':24s} symptom: {fault.symptom}\n{'':24s} see {fault.thread}")

# %% [markdown]
# ## Each bug switched on, trained, diagnosed and priced
# The same DPO run (`python -m minidpo dpo --inject NAME` does one of them), the metrics at the
# first and the last step, the held-out samples' gold reward (and its cost against the clean run),
# fluency, length, and the checks that fail. *Predict before reading*: which bug leaves the logged
# loss at ln 2 for the whole run? Which one costs the most gold reward while looking healthiest?

# %%
museum = run_museum(run)  # prints the table: loss, logps/chosen, gold and its cost, fluency, length, the doctor
rows = museum["rows"]
print("final implicit-reward accuracy:", {name: round(r["last"]["rewards/accuracies"], 2) for name, r in rows.items()})

# %% [markdown]
# ## Reading the symptoms
# - **shared-reference**: the loss *is* ln 2 at every step and every reward 0 — the log-ratios are
#   measured against the policy itself — while the policy moves, with no KL leash at all.
# - **dropout-on**: the loss is not ln 2 at step 0; rewards are noise before learning.
# - **swap-labels**: the training metrics look perfect (accuracy up, margins up); only the gold
#   reward, which a real run does not have, shows the model learned the opposite.
# - **truncate-to-empty**: nothing crashes here (our log-prob sum over zero tokens is 0), the
#   affected pairs just train nothing. TRL, averaging over zero tokens, got NaN instead.
#
# *Question*: the doctor catches every one of these before training. Which of them would the
# training curves alone never reveal?
