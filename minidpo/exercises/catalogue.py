"""The exercises, in the order of the lessons that teach them (`grade --list`)."""
from __future__ import annotations

import difflib

from . import bug_hunt, closed_form, preference_losses as pl, rl
from .grader import UsageError
from .spec import CELLS, Exercise

EXERCISES: tuple[Exercise, ...] = (
    pl.SEQUENCE_LOGPS,            # 02 gpt
    pl.BRADLEY_TERRY,             # 05 reward model
    rl.REINFORCE_ADVANTAGES,      # 06 rlhf reinforce
    rl.REINFORCE_LOSS,            # 06
    rl.GROUP_ADVANTAGES,          # 06 (GRPO: REINFORCE's group baseline, divided by the spread)
    closed_form.OPTIMAL_POLICY,   # 07 dpo derivation
    pl.DPO_LOSS,                  # 08 dpo loss
    pl.CONSERVATIVE_DPO,          # 15 dpo failure modes
    rl.GAE,                       # 17 ppo vs reinforce
    rl.PPO_CLIPPED_LOSS,          # 17
    bug_hunt.BUG_HUNT,            # 19 doctor and museum
)


def find(name: str) -> Exercise:
    """An exercise by its name or its function's (dpo-loss, dpo_loss); else a usage error that
    suggests the closest name."""
    for ex in EXERCISES:
        if name in (ex.name, ex.function) or name.replace("_", "-") == ex.name:
            return ex
    names = [e.name for e in EXERCISES]
    close = difflib.get_close_matches(name.replace("_", "-"), names, n=1, cutoff=0.6)
    raise UsageError(f"grade: no exercise {name!r}" + (f"; did you mean {close[0]}?" if close else
                     f"; the exercises: {', '.join(names)}") + " (python -m minidpo grade --list)")


def number(ex: Exercise) -> int:
    return EXERCISES.index(ex) + 1


def file_name(ex: Exercise) -> str:
    """The learner's file of an exercise: 07_dpo_loss.py."""
    return f"{number(ex):02d}_{ex.function}.py"


def listing() -> str:
    lines = [f"{'#':>2}  {'exercise':22s} {'function':24s} {'tier':8s} lesson cell"]
    for ex in EXERCISES:
        cell = CELLS[ex.cell]
        lines.append(f"{number(ex):02d}  {ex.name:22s} {ex.function:24s} {ex.tier:8s} {cell.lesson}: {cell.heading}")
    return "\n".join(lines)
