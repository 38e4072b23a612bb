# %% [markdown]
# # 20 · "Why is my DPO not working?" — reading a run, the doctor and the museum of classic bugs
# **You need** the lessons on one DPO step and on reading a DPO run. **You will see** what goes wrong in
# real DPO code, and how to tell from the curves — or not.
# The questions people file most often against DPO code are not about the math but about runs that
# silently go wrong: a loss stuck at ln 2, a chosen log-prob that falls, dropout left on, a
# reference that is not frozen, the end token masked as padding, a BPE merge across the
# prompt/response boundary, empty completions after truncation, mean log-probs with a β tuned for
# sums. This lesson first reads a healthy run's curves, then breaks one thing by hand and watches
# the symptom appear, then trains a few of the classic bugs and sets their curves beside the
# healthy ones, diagnosed and priced in gold reward — which only a world with a known reward can do.
# Run: `python tutorials/20_doctor_and_museum.py` (`--fast`: seconds). By default it trains three
# of the bugs on one seed; what each bug costs against the seed noise comes from the full museum
# (every bug on 5 seeds), read from this folder (`--set museum=true`, or `python -m minidpo museum
# --out runs/tutorial`), `runs/default`, or the copy committed with minidpo.

# %%
import math

import torch

from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, batch_loss, pair_logps
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, saved_study, show, tutorial_run, where_from
from minidpo.studies.doctor import NEEDS_GOLD, build, diagnose, read_curves
from minidpo.studies.museum import FAULTS, inject, museum_seeds, museum_unit, print_costs, print_museum, run_museum
from minidpo.training import make_optimizer

run = tutorial_run("20: the doctor and the bug museum")
ensure(run, "eval_sft", "prefs", "dpo", "eval_dpo")
torch.set_printoptions(precision=4, sci_mode=False, linewidth=120)
LN2 = math.log(2)

# %% [markdown]
# The knob of this lesson's *Try* (at the museum, below): train every bug, not three.

# %%
knobs = lesson_knobs(museum=False)

# %% [markdown]
# ## Reading a healthy run
# The pipeline's DPO run (the DPO-step and reading-a-run lessons), measured on the held-out pairs at step 0, along training and
# at the end: the same pairs every time, so the curves are smooth. What each does in a healthy run:
# - **`loss`** starts at ln 2 ≈ 0.6931 — the policy *is* the reference, every log-ratio is 0 and
#   −log σ(0) = ln 2 — and falls.
# - **`rewards/accuracies`** (the share of pairs with r̂_w > r̂_l) starts at **0**, not ½: at step 0
#   every implicit reward is exactly 0, each pair is a tie, and a tie is not "r̂_w > r̂_l" (the reward
#   model's accuracy in the reward-model lesson counts a tie as ½). Then it rises above ½ — not to 1, since the
#   labels are noisy (the preferences lesson's oracle accuracy is the ceiling to compare with).
# - **`rewards/margins`** = mean(r̂_w − r̂_l) starts at 0 and grows: that is what the loss buys.
# - **`rewards/chosen`**, **`rewards/rejected`** (β·log π/π_ref of each side): rejected falls
#   clearly; chosen moves much less, and often falls too.
# - **`logps/chosen`**, **`logps/rejected`**: both often fall. The loss sees only the *difference*
#   of the two log-ratios, and chosen and rejected responses share most of their words, so the step
#   that pushes y_l down drags y_w along; the probability goes to responses no pair contains
#   (the failure-modes and microscope lessons measure where). Healthy if the margin grows and the gold reward rises.

# %%
dpo = read_json(run.path("dpo_metrics.json"))
healthy = dpo["history"]
held_out = [r for r in healthy if "eval/loss" in r]
print(f"{'step':>4s} | loss   | rewards/chosen | rewards/rejected | margins | accuracies | logps/chosen | logps/rejected")
for r in held_out:
    print(f"{r['step']:4d} | {r['eval/loss']:.4f} | {r['eval/rewards/chosen']:+14.3f} | {r['eval/rewards/rejected']:+16.3f} | "
          f"{r['eval/rewards/margins']:+7.3f} | {r['eval/rewards/accuracies']:10.3f} | {r['eval/logps/chosen']:+12.2f} | "
          f"{r['eval/logps/rejected']:+14.2f}")
oracle = read_json(run.path("prefs_report.json"))["val"]["oracle_accuracy"]
first, last = held_out[0], held_out[-1]
fell = {side: last[f"eval/logps/{side}"] - first[f"eval/logps/{side}"] for side in ("chosen", "rejected")}
claim("at step 0 the held-out loss is ln 2 and the accuracy 0 (every pair a tie)",
      abs(first["eval/loss"] - LN2) < 1e-4 and first["eval/rewards/accuracies"] == 0, loss_minus_ln2=first["eval/loss"] - LN2)
print(f"end: accuracy {last['eval/rewards/accuracies']:.3f}; the labels' oracle accuracy (what the gold reward itself "
      f"would score on these noisy labels) {oracle:.3f}")
claim("at the end the accuracy is above ½", last["eval/rewards/accuracies"] > 0.5, accuracy=last["eval/rewards/accuracies"])
claim("log π fell on both sides, the rejected more: the margin grew while both responses lost probability",
      fell["rejected"] < fell["chosen"] < 0 and last["eval/rewards/margins"] > 0,
      chosen=fell["chosen"], rejected=fell["rejected"], margin=last["eval/rewards/margins"])
print("\nthe curves, checked (doctor.read_curves):")
for c in read_curves(healthy):
    print(" ", c.line())

# %% [markdown]
# ## The doctor on a clean setup
# The doctor looks at what training *would* use, before any step. The first check is the one to
# remember: at step 0
# $$\mathcal{L}_0 = -\log\sigma(0) = \ln 2 \approx 0.6931, \qquad \hat r_w = \hat r_l = 0,$$
# yet the gradient $-\tfrac{\beta}{2}[\nabla\log\pi(y_w) - \nabla\log\pi(y_l)]$ is not zero.
# A loss that is not ln 2 at step 0 means the policy does not score like the reference.

# %%
cfg = run.settings(DPOConfig)
setup = build(run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), cfg, max_pairs=256)
clean = diagnose(setup)
for c in clean:
    print(c.line())
claim("every check of the doctor passes on the clean setup", all(c.ok for c in clean), checks=len(clean))

# %% [markdown]
# ## One bug by hand: the reference is the policy itself
# The classic "my loss is stuck at ln 2". Eight pairs, one optimizer step, and the loss measured
# again in two ways: against the frozen reference (its log-probs computed once, before the step, as
# our training does), and against "the reference" when it is the very model being trained — a
# reference that was never copied. The log-ratio is then log π/π = 0 for every response, after any
# number of steps: the loss stays ln 2 and every reward 0, while the policy's log-probs move.

# %%
batch = setup.encoded[:8]
frozen_ref = pair_logps(setup.reference, batch, run.tok.end_id, cfg.average_logps)  # (8, 2), once
policy = setup.policy
loss, record, _ = batch_loss(policy, batch, frozen_ref, cfg, run.tok.end_id)
before = record.chosen_logps.detach()
print(f"step 0: loss {loss.item():.6f} (ln 2 = {LN2:.6f})")
opt = make_optimizer(policy, cfg.lr)
for _ in range(3):  # three steps of ordinary DPO
    loss, record, _ = batch_loss(policy, batch, frozen_ref, cfg, run.tok.end_id)
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    clean_loss, record, m_clean = batch_loss(policy, batch, frozen_ref, cfg, run.tok.end_id)
    shared_ref = pair_logps(policy, batch, run.tok.end_id, cfg.average_logps)  # "reference" = policy now
    shared_loss, _, m_shared = batch_loss(policy, batch, shared_ref, cfg, run.tok.end_id)
moved = record.chosen_logps - before
print("change of log π(y_w) after 3 steps:", moved)
print(f"against the frozen reference: loss {clean_loss.item():.6f}, rewards/margins {m_clean['rewards/margins']:+.4f}")
print(f"against the policy itself:    loss {shared_loss.item():.6f}, rewards/margins {m_shared['rewards/margins']:+.4f}")
claim("against the policy itself the loss is ln 2 and the margin 0 after the steps, while log π(y_w) moved and the "
      "loss against the frozen reference fell", abs(shared_loss.item() - LN2) < 1e-6
      and abs(m_shared["rewards/margins"]) < 1e-6 and moved.abs().max() > 1e-3 and clean_loss.item() < LN2,
      largest_move=moved.abs().max().item(), frozen_loss=clean_loss.item())
bug = inject(setup, "shared-reference")
print("the doctor on that setup:", next(c.line() for c in diagnose(bug) if c.name == "reference-frozen"))

# %% [markdown]
# ## The museum
# Each bug as it happens in real code, what a learner sees, and where people met it:

# %%
for name, fault in FAULTS.items():
    print(f"{name:24s} {fault.what}\n{'':24s} symptom: {fault.symptom}\n{'':24s} see {fault.thread}")

# %% [markdown]
# ## Bugs switched on, trained, diagnosed and priced
# The same DPO run with one bug on (`python -m minidpo dpo --inject NAME` does one of them): the
# metrics at the first and the last logged step, the held-out samples' gold reward (and its cost
# against the clean run: clean gold − faulty gold), fluency, length, and the doctor's checks that
# fail. Three bugs are trained here, on this run's seed — the classic ln 2 (shared-reference), the
# one that looks perfect (swap-labels) and dropout left on; each is cached, so the full museum
# reuses them.
#
# *Try*: `--set museum=true` (or set `museum` in the knobs cell and re-run from there): the whole
# museum in this folder, every bug of the list above on 5 seeds (about a quarter of an hour on two
# idle cores); the table and the curves below then get a row for each bug.
#
# *Predict before reading*: which bug leaves the logged loss at ln 2 for the whole run? Which one
# costs the most gold reward while its curves look healthiest?

# %%
LESSON_FAULTS = ("shared-reference", "swap-labels", "dropout-on")
if knobs.museum:
    rows = run_museum(run)["rows"]  # prints its tables
else:
    rows = {}
    for fault in (None, *LESSON_FAULTS):
        rows[fault or "clean"], seconds = museum_unit(run, fault)
        print(f"{fault or 'clean':18s}: " + ("reused" if seconds is None else f"trained and evaluated in {seconds:.0f}s"))
    for r in rows.values():
        r["gold_cost"] = rows["clean"]["eval"]["gold_reward"] - r["eval"]["gold_reward"]
    print(f"\n{len(LESSON_FAULTS)} of the {len(FAULTS)} bugs, seed {run.seed} (`--set museum=true` for all, on "
          f"{len(museum_seeds(run))} seeds):")
    print_museum(rows)

# %% [markdown]
# ## The curves of the sick runs, beside the healthy one
# The same six curves for each run (held-out pairs: dots; the training batch: faint), and the
# curve checks of the healthy run for each. Look for: a training loss flat at ln 2 (the policy is
# its own reference: the held-out curves, measured against a reference computed once, show where
# it really went); a healthy-looking run whose gold reward fell (swapped labels); noise in the
# training batch's curves (dropout).

# %%
curves = {name: r["history"] for name, r in rows.items()}
show(plots.run_curves_figure(curves, run.path("museum_curves.png")))
print("figure:", run.path("museum_curves.png"))
verdicts = {name: read_curves(h) for name, h in curves.items()}
names = [c.name for c in verdicts["clean"]]
print(f"{'run':24s} | " + " | ".join(f"{n:16s}" for n in names) + " | gold cost (one seed)")
for name, checks in verdicts.items():
    print(f"{name:24s} | " + " | ".join(f"{'ok' if c.ok else 'FAIL':16s}" for c in checks)
          + f" | {rows[name]['gold_cost']:+.2f}")

# %% [markdown]
# ## What a bug costs, against the seed noise
# One seed's cost is one draw: the clean run itself moves from seed to seed (other pairs, another
# batch order), and so does every faulty run. The full museum trains the clean run and every bug
# on 5 seeds (each seed its own pairs and DPO seed; the same held-out samples' seed for all) and
# prices each bug by clean − faulty gold **paired by seed**: its mean, its 95 % interval (Student t
# over the seeds) and the verdict — a cost ("above"), a gain ("below"), or "no measurable
# difference" when the interval covers 0. The lesson reads it from this folder, `runs/default` or
# the copy committed with minidpo (`python -m minidpo museum --out runs/tutorial` runs it here).

# %%
MUSEUM_EXPECT = {"pad-equals-eos": "<", "dropout-on": "=", "shared-reference": ">", "swap-labels": ">",
                 "merge-boundary": "=", "truncate-to-empty": ">", "mean-logps-without-beta": "="}
found = saved_study(run, "museum/museum.json")
museum = read_json(found) if found else None
if museum is None:
    print("no full museum here: " + run.command("museum"))
else:
    print(f"Shown: {where_from(run, found)}")
    print_costs(museum)
    costs = museum["costs"]
    spread = museum["clean_spread"]
    measured = {name: d["verdict"] for name, d in costs.items()}
    claim(f"the clean run's gold moves by a standard deviation of {spread['std']:.2f} across the "
          f"{len(museum['seeds'])} seeds: a one-seed cost of that size is noise", spread["std"] > 0.05,
          clean_std=spread["std"])
    # what the committed museum measured (clean − bug, paired over its seeds): ">" a cost, "<" a gain,
    # "=" no measurable difference; a run of your own that reads otherwise prints ✗ beside the bug
    for name, verdict in MUSEUM_EXPECT.items():
        d = costs[name]
        claim_paired("gold reward, clean run vs " + name, "clean", [x["gold_reward"] for x in museum["by_seed"]["clean"]],
                     name, [x["gold_reward"] for x in museum["by_seed"][name]], verdict)

# %% [markdown]
# ## Reading the symptoms
# - **shared-reference**: the training loss *is* ln 2 at every step and every reward 0 — the
#   log-ratios are measured against the policy itself — while the policy moves, with no KL leash.
# - **dropout-on**: the training policy does not score like the reference at step 0, and the
#   training batch's rewards are noise before learning (the held-out curves, scored in eval mode,
#   hide it).
# - **swap-labels**: the training and the held-out metrics look perfect (accuracy up, margins up:
#   the same reader swapped both files); only the gold reward, which a real run does not have,
#   shows the model learned the opposite — and so does the only check of the doctor that sees it.
# - **truncate-to-empty** (in the full museum): nothing crashes here (our log-prob sum over zero
#   tokens is 0), the affected pairs just train nothing. TRL, averaging over zero tokens, got NaN.
#
# *Question*: in this toy world the doctor flags every bug before training. Which bug does it flag
# only with a check that needs the gold reward — a check a real run cannot run? And which bugs
# would the training curves alone never reveal?

# %% [markdown]
# ## Answers
# *Predict*, first half — the runs whose logged training loss stays at ln 2 (within 10⁻³) at every
# logged step:

# %%
stuck = [name for name, r in rows.items() if all(abs(h["loss"] - LN2) < 1e-3 for h in r["history"] if "loss" in h)]
print("loss at ln 2 for the whole run:", ", ".join(stuck) or "none")
claim("shared-reference, and only it, keeps the training loss at ln 2 for the whole run", stuck == ["shared-reference"])

# %% [markdown]
# *Question*, first half — what the doctor sees without the gold reward: for each bug, the checks
# that fail (seed 0 of the full museum, else this run's), and those left when the checks that need
# the gold reward (`doctor.NEEDS_GOLD`) are taken away.

# %%
setup_rows = museum["rows"] if museum is not None else rows
without_gold = {}
for name, r in setup_rows.items():
    if name == "clean":
        continue
    without_gold[name] = [c for c in r["failed_checks"] if c not in NEEDS_GOLD]
    print(f"  {name:24s} fails {', '.join(r['failed_checks']) or 'nothing'}; without the gold reward: "
          f"{', '.join(without_gold[name]) or 'NOTHING'}")
only_gold = [name for name, left in without_gold.items() if not left]
claim("the doctor flags swap-labels only with labels-agree, a check that needs the gold reward: in a real run "
      "no check of the doctor catches it", only_gold == ["swap-labels"], bugs_seen_only_with_gold=len(only_gold))

# %% [markdown]
# *Predict*, second half, and the *Question*'s second half: the bugs whose curves pass every check
# of the healthy run in every seed, and whether the seeds can tell their cost from zero.

# %%
if museum is not None:
    looks_fine = [name for name, runs in museum["by_seed"].items()
                  if name != "clean" and not any(x["curves_fail"] for x in runs)]
    for name in looks_fine:
        d = museum["costs"][name]
        print(f"  {name:24s} curves look healthy in every seed; gold cost {d['gap_mean']:+.2f} "
              f"({d['low']:+.2f} … {d['high']:+.2f}): {d['verdict']}; the doctor: {', '.join(museum['rows'][name]['failed_checks'])}")
    hidden = {name: museum["costs"][name]["gap_mean"] for name in looks_fine if museum["costs"][name]["verdict"] == "above"}
    worst = max(hidden, key=hidden.get) if hidden else None
    print("costs the most gold while looking healthiest:", worst or "none of these")
    claim("swap-labels costs the most gold of the bugs whose curves look healthy, and the seeds tell its cost from zero",
          worst == "swap-labels", cost=hidden.get("swap-labels", float("nan")))

# %% [markdown]
# ## What to remember
# - A healthy run: loss from ln 2 down, accuracy from 0 (ties) up, margins growing, both log-probs
#   usually falling.
# - Some classic bugs show in the curves (a loss stuck at ln 2); others look healthy and cost gold,
#   and one (swapped labels) is caught by nothing but a check against a known reward — check how
#   your labels were read before trusting a run.
# - Price a bug against the seed noise, paired by seed: a cost a single seed shows can be noise.
# - **Exercise**: a run with a planted bug, to diagnose from its curves — `python -m minidpo grade bug-hunt`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
