"""What an exercise is: one function to write, the cases that grade it (smallest first), the classic
mistakes it can name, and the lesson cell that teaches it.

`CELLS` is the one table of lesson references: every exercise and every mistake points into it by
key, and a test checks that each lesson file exists and holds that heading.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Cell:
    lesson: str   # the lesson's file in tutorials/, without .py
    heading: str  # the markdown heading of the cell that teaches it

    def where(self) -> str:
        return f'tutorials/{self.lesson}.py, the cell "{self.heading}"'


CELLS = {
    "logps": Cell("02_gpt", "Sequence log-probs"),
    "bt-loss": Cell("05_reward_model", "One Bradley–Terry step in the open"),
    "return": Cell("06_rlhf_reinforce", "Step 3: the return, with the KL penalty folded in"),
    "baseline": Cell("06_rlhf_reinforce", "Step 4: the baseline — leave-one-out, and GRPO's group normalisation"),
    "reinforce-loss": Cell("06_rlhf_reinforce", "Step 5: the loss and the update"),
    "optimum": Cell("07_dpo_derivation", "The objective and its optimum (eq. 3 and eq. 4)"),
    "rung-1": Cell("08_dpo_loss", "Rung 1: the log-prob of one response"),
    "dpo-loss": Cell("08_dpo_loss", "Rung 2: the loss on four numbers"),
    "beta": Cell("09_dpo_step_and_beta", "What β does to one step"),
    "conservative": Cell("08_dpo_loss", "Conservative DPO caps the margin, not the pull"),
    "gae": Cell("18_ppo_vs_reinforce", "Step 4: GAE — advantages per token"),
    "clip": Cell("18_ppo_vs_reinforce", "Step 5: the clipped surrogate and the clipped value loss"),
    "museum": Cell("20_doctor_and_museum", "Bugs switched on, trained, diagnosed and priced"),
}


@dataclass(frozen=True)
class Case:
    title: str          # what it tests, shown when it fails
    inputs: tuple       # the positional arguments, in the exercise's order
    grad: tuple = ()    # positions of the inputs that carry requires_grad (detached outputs, gradients)


@dataclass(frozen=True)
class Mistake:
    name: str
    why: str                          # one sentence: why it is wrong
    cell: str                         # a key of CELLS: where the lessons explain it
    fn: Callable                      # the mistake written out: a learner's answer that matches it on
                                      # every case is named as this mistake
    outputs: tuple[str, ...] = ()     # compare only these outputs (a mistake in the rewards alone ...)


@dataclass(frozen=True)
class Exercise:
    name: str                         # what `grade NAME` takes
    function: str                     # the function the learner writes
    tier: str                         # core, variant or open
    cell: str                         # a key of CELLS
    title: str                        # one line
    args: tuple[str, ...]             # its parameters, in order
    outputs: tuple[str, ...]          # what it returns (one name: a tensor; more: a tuple)
    spec: str                         # the stub's text: equation, shapes, dtypes, the exact rules
    solution: Callable | None         # the library's own function, adapted to this signature
    solution_at: str                  # where a learner reads it after passing
    cases: Callable[[], list] = list  # () -> [Case], smallest first
    mistakes: tuple[Mistake, ...] = ()
    detached: tuple[str, ...] = ()    # outputs the library returns detached
    train: Callable | None = None     # (run, learner's function, folder) -> rows to print; see train.py
    train_note: str = ""              # what --train runs (or why there is nothing to run)
    train_table: Callable | None = None  # rows -> text (default: train.table, the runs side by side)
    tolerance: dict = field(default_factory=lambda: {"float64": (1e-7, 1e-9), "float32": (1e-5, 1e-6)})
    grade: Callable | None = None     # a judge of its own, (ex, the value returned, **options) -> Verdict
                                      # (the bug hunt: a name, not a tensor)

    def cell_where(self) -> str:
        return CELLS[self.cell].where()
