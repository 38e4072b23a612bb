"""`grade class ROOT`: a generated class (a student right everywhere, one wrong, one whose code
exits, one with files missing or not written, one whose function never returns, one who imports the
library's solution) graded in one command: the gradebook's cells, its files, the progress lines,
and an exit code that says whether every student passed."""
import contextlib
import csv
import io
import json

import pytest

from minidpo.exercises.catalogue import EXERCISES, file_name, find
from minidpo.exercises.stubs import stub_text
from minidpo.harness.cli import main

CHOSEN = ("bradley-terry-loss", "dpo-loss", "gae", "bug-hunt")


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["grade", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file_name(find(name))).write_text(text)


@pytest.fixture
def school(tmp_path, own, solutions):
    """ROOT/<student>/<their files>; ann keeps hers in exercises/ (where `grade --start` puts them)."""
    root = tmp_path / "class"
    for name in CHOSEN:
        write(root / "ann" / "exercises", name, own[name])
        write(root / "bob", name, own[name])
        write(root / "cat", name, own[name])
        write(root / "eve", name, own[name])
        write(root / "fay", name, own[name])
    write(root / "bob", "dpo-loss", own["dpo-loss"].replace("-F.logsigmoid(chosen - rejected)",
                                                            "-(chosen - rejected).sigmoid().log()"))
    write(root / "cat", "gae", "import os\n\ndef gae(rewards, values, mask, gamma, lam):\n    os._exit(3)\n")
    write(root / "dan", "dpo-loss", own["dpo-loss"])
    write(root / "dan", "gae", stub_text(find("gae")))
    write(root / "eve", "bradley-terry-loss", "def bradley_terry_loss(chosen_scores, rejected_scores):\n"
                                              "    while True:\n        pass\n")
    write(root / "fay", "bradley-terry-loss", solutions["bradley-terry-loss"])
    (root / "notes.txt").write_text("not a student")
    return root


def test_a_class_in_one_command(school):
    code, out, err = cli("class", school, "--exercises", ",".join(CHOSEN), "--time-limit", 1)
    assert (code, err) == (1, ""), out + err
    progress = out.splitlines()[:5]
    assert [line.split(":")[0] for line in progress] == ["[1/6] ann", "[2/6] bob", "[3/6] cat", "[4/6] dan", "[5/6] eve"]
    assert progress[1].startswith("[2/6] bob: 3 of 4 right, wrong 1 (")
    assert out.splitlines()[-1].startswith(f"wrote {school / 'gradebook.csv'} and {school / 'gradebook.md'}: "
                                           "6 students × 4 exercises, 2 right on every one, in ")
    with open(school / "gradebook.csv", newline="", encoding="utf-8") as f:
        book = list(csv.reader(f))
    assert book[0] == ["student", *CHOSEN, "right", "of"]
    cells = {r[0]: r[1:] for r in book[1:]}
    assert cells == {
        "ann": ["right", "right", "right", "right", "4", "4"],
        "bob": ["right", "wrong (log-of-sigmoid)", "right", "right", "3", "4"],
        "cat": ["right", "right", "error (os._exit)", "right", "3", "4"],
        "dan": ["missing", "right", "not written", "missing", "1", "4"],
        "eve": ["error (time limit)", "right", "right", "right", "3", "4"],
        "fay": ["right, uses-library", "right", "right", "right", "4", "4"],
    }
    md = (school / "gradebook.md").read_text(encoding="utf-8")
    assert "| student | bradley-terry-loss | dpo-loss | gae | bug-hunt | right | of |" in md
    assert "| cat | right | right | error (os._exit) | right | 3 | 4 |" in md


def test_the_json_gradebook_and_a_class_that_passes(school):
    for student in ("bob", "cat", "dan", "eve", "fay"):
        for path in (school / student).iterdir():
            path.unlink()
        (school / student).rmdir()
    code, out, err = cli("class", school, "--exercises", "dpo_loss, gae", "--json")
    book = json.loads(out)
    assert code == 0 and err.startswith("[1/1] ann: 2 of 2 right (")  # progress goes to stderr beside --json
    assert book["exercises"] == ["dpo-loss", "gae"] and book["passed"] == 1
    (ann,) = book["students"]
    assert (ann["student"], ann["right"], ann["total"]) == ("ann", 2, 2)
    assert [r["cell"] for r in ann["exercises"]] == ["right", "right"]


def test_class_usage_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, says in [(("class",), "ROOT is the folder of the students' folders"),
                       (("class", tmp_path / "nope"), "no folder"),
                       (("class", tmp_path / "empty"), "holds no student folders"),
                       (("class", tmp_path, "--exercises", "dpo-los"), "did you mean dpo-loss?"),
                       (("all", "--exercises", "gae"), "--exercises goes with `grade class`")]:
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.startswith("error: ") and says in err and err.count("\n") == 1, err


def test_every_exercise_is_graded_by_default(tmp_path, own):
    for ex in EXERCISES:
        write(tmp_path / "ann", ex.name, own[ex.name])
    code, out, _ = cli("class", tmp_path)
    assert code == 0 and out.startswith(f"[1/1] ann: {len(EXERCISES)} of {len(EXERCISES)} right (")


def test_the_generated_class_holds_what_it_says(tmp_path):
    """class_of.py makes the class timed in docs/exercises.md: each of its slips is wrong, its right
    answers are right, and its students are a mix."""
    from class_of import OWN, make_class, wrong
    from minidpo.exercises.grader import grade_function
    for ex in EXERCISES:
        for text, status in ((wrong(ex.name), "wrong"), (OWN[ex.name], "right")):
            namespace = {}
            exec(text, namespace)
            assert grade_function(ex, namespace[ex.function]).status == status, (ex.name, text)
    root = make_class(tmp_path, students=30)
    files = [p for p in root.rglob("*.py")]
    assert len(list(root.iterdir())) == 30 and 0.8 * 30 * len(EXERCISES) < len(files) < 30 * len(EXERCISES)
