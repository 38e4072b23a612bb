"""A generated class for `grade class` (its tests, and the timing in docs/exercises.md):

    python tests/exercises/class_of.py ROOT [STUDENTS]

writes ROOT/student-01 ... with one file per exercise, each drawn with a seed: right (written from
scratch, answers.OWN), wrong (one classic slip), the stub not written yet, missing, or raising; one
student's GAE loops forever and one student's DPO loss calls sys.exit."""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from answers import OWN  # noqa: E402

from minidpo.exercises import bug_hunt  # noqa: E402
from minidpo.exercises.catalogue import EXERCISES, file_name  # noqa: E402
from minidpo.exercises.stubs import stub_text  # noqa: E402

SLIPS = {  # exercise -> (text in the right answer, what a learner wrote instead)
    "sequence-logps": (".sum(1)", ".mean(1)"),
    "bradley-terry-loss": ("chosen_scores - rejected_scores", "rejected_scores - chosen_scores"),
    "reinforce-advantages": ("/ (k - 1)", "/ k"),
    "reinforce-loss": (".mean()", ".sum()"),
    "group-advantages": (" + 1e-4)", ")"),
    "optimal-policy": ("reward / beta", "reward * beta"),
    "dpo-loss": ("-F.logsigmoid(chosen - rejected)", "-(chosen - rejected).sigmoid().log()"),
    "conservative-dpo-loss": (" - label_smoothing * F.logsigmoid(-beta * h)", ""),
    "gae": ("gamma * lam * next_advantage", "gamma * next_advantage"),
    "ppo-clipped-loss": ("losses[mask].mean()", "losses.mean()"),
    "bug-hunt": (repr(bug_hunt.planted(0)), repr(sorted(set(bug_hunt.FAULTS) - {bug_hunt.planted(0)})[0])),
}
LOOPS = "def gae(rewards, values, mask, gamma, lam):\n    while True:\n        pass\n"
EXITS = "import sys\n\n\ndef dpo_loss(pc, pr, rc, rr, beta):\n    sys.exit(0)\n"
KINDS = ("right", "wrong", "not written", "missing", "raises")


def wrong(name: str) -> str:
    old, new = SLIPS[name]
    assert old in OWN[name], name
    return OWN[name].replace(old, new)


def make_class(root, students: int = 30, seed: int = 0) -> Path:
    rng, root = random.Random(seed), Path(root)
    for s in range(1, students + 1):
        folder = root / f"student-{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for ex in EXERCISES:
            kind = rng.choices(KINDS, weights=(60, 25, 7, 5, 3))[0]
            text = {"right": lambda: OWN[ex.name], "wrong": lambda: wrong(ex.name),
                    "not written": lambda: stub_text(ex), "missing": lambda: None,
                    "raises": lambda: f"def {ex.function}(*args):\n    return args[0] / {{}}\n"}[kind]()
            if (s, ex.name) == (7, "gae"):
                text = LOOPS
            if (s, ex.name) == (13, "dpo-loss"):
                text = EXITS
            if text is not None:
                (folder / file_name(ex)).write_text(text, encoding="utf-8")
    return root


if __name__ == "__main__":
    made = make_class(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
    print(f"wrote {made}: {len(list(made.iterdir()))} students × {len(EXERCISES)} exercises")
