"""The silent-bug hunt: a `--fast` DPO run with one of the museum's classic bugs planted in it. The
learner reads its curves beside a clean run (and may run the doctor on its setup), then names the
bug; the grader checks the name. Which bug is drawn from the hunt number (`--hunt N`, default 0), so
a lecturer can hand each student another one. The run's own files would name the bug, so only its
numbers are kept (RUN/exercises/bug-hunt/huntN.json).
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig
from ..evaluate import summary_row
from ..studies.doctor import build, diagnose
from ..studies.museum import FAULTS, inject, train_with_fault
from . import train
from .grader import Verdict
from .spec import Case, Exercise


def planted(hunt: int) -> str:
    """The bug of hunt number `hunt` (the same on every machine: a seeded draw, not Python's hash)."""
    names = sorted(FAULTS)
    return names[random.Random(f"minidpo bug hunt {hunt}").randrange(len(names))]


def grade(ex: Exercise, name, hunt: int = 0, **_) -> Verdict:
    """The verdict on the name `planted_bug()` returned."""
    if not isinstance(name, str):
        return Verdict(ex.name, "wrong", f"{ex.name}: {ex.function}() returns {name!r}; return the bug's name, a string")
    name = name.strip()
    if name not in FAULTS:
        return Verdict(ex.name, "wrong", f"{ex.name}: {name!r} is not one of the museum's bugs: "
                       + ", ".join(sorted(FAULTS)))
    if name != planted(hunt):
        return Verdict(ex.name, "wrong", f"{ex.name} (hunt {hunt}): not {name}. That bug shows: {FAULTS[name].symptom}. "
                       f"Is that what the hunt's curves do? Compare them again (--train), or ask the doctor (--doctor).",
                       ["wrong-bug"])
    f = FAULTS[name]
    return Verdict(ex.name, "right", f"{ex.name} (hunt {hunt}): right, the planted bug is {name}: {f.what}.\n"
                   f"  Its symptom: {f.symptom}.\n  Where people met it: {f.thread}")


def hunt_run(run, hunt: int) -> dict:
    """The hunt's DPO run (trained once, then reused): its logged history and its evaluation."""
    cfg, fault = run.settings(DPOConfig), planted(hunt)
    folder = run.out / "exercises" / "bug-hunt"
    out = folder / f"hunt{hunt}.json"

    def go():
        with tempfile.TemporaryDirectory() as tmp:  # its checkpoint and metrics name the bug: numbers only
            m = train_with_fault(cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"),
                                 run.path("prefs_val.jsonl"), Path(tmp), run.device, run.dtype, quiet=True,
                                 out_name="hunt", fault=fault)
            ev = summary_row(run.evaluate(run.load_policy(Path(tmp) / "hunt.pt")))
        write_json(out, {"hunt": hunt, "history": m["history"], "eval": ev})
    train.reference(run, "dpo")
    train.announced(f"the DPO run of hunt {hunt}, a bug planted in it (in {folder})", lambda: run.cached(
        f"exercise_bug_hunt{hunt}", {**cfg.key(), "hunt": hunt}, run.inputs("dpo"), go, outputs=[out],
        code="exercises.bug_hunt", folder=folder, announce=False))
    return read_json(out)


HELD_OUT = ("eval/loss", "eval/rewards/accuracies", "eval/rewards/margins", "eval/logps/chosen", "eval/logps/rejected")
BATCHES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


def curves(hunt: list[dict], clean: list[dict], keys) -> str:
    """Each metric as two lines (the hunt's run, the clean run), steps as columns."""
    steps = [r["step"] for r in hunt if keys[0] in r]
    by_step = [{r["step"]: r for r in h if keys[0] in r} for h in (hunt, clean)]
    width = max(len(k) for k in keys)
    lines = [f"{'step':>{width + 6}}" + "".join(f"{s:>9}" for s in steps)]
    for key in keys:
        for label, rows in zip(("hunt", "clean"), by_step):
            values = [rows.get(s, {}).get(key) for s in steps]
            lines.append(f"{key if label == 'hunt' else '':>{width}} {label:>5}"
                         + "".join(f"{v:>9.3f}" if v is not None else f"{'-':>9}" for v in values))
    return "\n".join(lines)


def train_hunt(run, learner=None, hunt: int = 0, **_) -> str:
    result = hunt_run(run, hunt)
    clean = read_json(run.path("dpo_metrics.json"))["history"]
    return "\n".join([
        f"Hunt {hunt}: a DPO run with one classic bug (hunt) beside the clean DPO run of the same seed (clean).",
        "Held-out pairs:", curves(result["history"], clean, HELD_OUT),
        "Training batches:", curves(result["history"], clean, BATCHES),
        "On the held-out films:",
        train.table([("clean DPO", train.reference(run, "dpo")), (f"hunt {hunt}", result["eval"])]),
        f"Name the bug in your file (planted_bug), then: python -m minidpo grade bug-hunt --hunt {hunt}. "
        f"The doctor's checks on this run's setup: python -m minidpo grade bug-hunt --hunt {hunt} --doctor"])


def doctor(run, hunt: int) -> str:
    """The doctor's checks on the setup the hunt's run trained with (the bug is in it; its name is not)."""
    setup = inject(build(run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.settings(DPOConfig),
                         run.device), planted(hunt))
    checks = diagnose(setup)
    failing = [c.name for c in checks if not c.ok]
    return "\n".join([f"The doctor on hunt {hunt}'s setup:", *(c.line() for c in checks),
                      f"{len(checks) - len(failing)} of {len(checks)} checks pass"])


BUG_HUNT = Exercise(
    "bug-hunt", "planted_bug", "open", "museum", "name the classic bug planted in a DPO run from its curves",
    (), ("name",),
    """A `--fast` DPO run of this folder's pairs has ONE of the museum's classic bugs switched on.
  1. python -m minidpo grade bug-hunt --train     its curves beside a clean run of the same seed,
                                                  and both runs on the held-out films
  2. python -m minidpo grade bug-hunt --doctor    (if you need it) the doctor's checks on its setup
  3. return the bug's name below, then: python -m minidpo grade bug-hunt
A lecturer may hand you a hunt number: add --hunt N to each of the three.

Return one of the museum's names (minidpo/studies/museum.py, FAULTS):
  """ + ", ".join(sorted(FAULTS)) + """.
What to read first: the loss at step 0 (ln 2 = 0.693?), whether it leaves ln 2, the held-out
accuracy and margins, both log-probs, and gold against fluency and length on the held-out films.""",
    None, "the museum, minidpo/studies/museum.py (and the doctor, minidpo/studies/doctor.py)",
    cases=lambda: [Case("planted_bug() called with no arguments", ())], train=train_hunt, train_note="trains the hunt's DPO run --fast and prints its curves", grade=grade)
