"""The grader as a learner and a lecturer meet it: the library's solutions pass every exercise, the
shipped stubs are "not written yet", a broken file is one message naming its file and line, the
cases are ordered smallest first and hold what breaks careless code, the messages say what to fix
first, a file that imports the library's solution is flagged, and `grade all` makes one table.

The commands run through the CLI's `main` in this process (exit code, stdout, stderr captured; the
learner's code in a child process); an exception escaping it (a traceback, for a user) fails the test."""
import contextlib
import io
import json
import math

import pytest
import torch
import torch.nn.functional as F

from minidpo.exercises import bug_hunt
from minidpo.exercises.catalogue import EXERCISES, file_name, find
from minidpo.exercises.grader import grade_function
from minidpo.exercises.stubs import start, stub_text
from minidpo.harness.cli import main
from minidpo.studies.museum import FAULTS

GRADED_BY_CASES = [ex for ex in EXERCISES if ex.grade is None]


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["grade", *map(str, args)])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_every_exercise_has_a_library_backed_answer_in_the_conftest(solutions):
    assert set(solutions) == {ex.name for ex in EXERCISES}


@pytest.mark.parametrize("ex", GRADED_BY_CASES, ids=lambda ex: ex.name)
def test_the_librarys_own_function_is_right_on_every_case(ex):
    verdict = grade_function(ex, ex.solution)
    assert verdict.right, verdict.report


@pytest.fixture
def stubs(tmp_path):
    start(tmp_path / "mine")
    return tmp_path / "mine"


def test_the_shipped_stubs_fail_cleanly_not_written_yet(stubs):
    code, out, err = cli("all", "--dir", stubs, "--json")
    table = json.loads(out)
    assert (code, err, table["right"]) == (1, "", 0)
    for ex, row in zip(EXERCISES, table["exercises"]):
        assert (row["exercise"], row["status"]) == (ex.name, "not written")
        assert row["message"].startswith(f"{ex.name}: not written yet ({stubs / file_name(ex)}:"), row["message"]
    code, out, err = cli("dpo-loss", "--dir", stubs)
    assert (code, err) == (1, "") and out.startswith(f"dpo-loss: not written yet ({stubs / file_name(find('dpo-loss'))}:")
    code, out, _ = cli("all", "--dir", stubs)
    assert code == 1 and out.count("not written") == len(EXERCISES) and f"0 of {len(EXERCISES)} right" in out


def test_each_stub_states_the_exercise_and_start_keeps_the_learners_files(stubs):
    for ex in EXERCISES:
        text = (stubs / file_name(ex)).read_text(encoding="utf-8")
        assert text == stub_text(ex, str(stubs))
        assert ex.cell_where() in text and ex.solution_at in text and f"def {ex.function}(" in text
        assert "Output" in text or ex.grade is not None  # the shapes and dtypes of what it returns
    mine = stubs / file_name(EXERCISES[0])
    mine.write_text("# my work\n")
    code, out, _ = cli("--start", stubs)
    assert code == 0 and mine.read_text() == "# my work\n" and f"kept  {mine}" in out


def test_library_backed_files_pass_and_grade_all_makes_one_json_table(tmp_path, solutions):
    for ex in EXERCISES:
        (tmp_path / file_name(ex)).write_text(solutions[ex.name], encoding="utf-8")
    code, out, err = cli("dpo-loss", "--dir", tmp_path)
    assert (code, err) == (0, "") and out.startswith("dpo-loss: right on all 5 cases")
    (tmp_path / file_name(find("dpo-loss"))).write_text(solutions["dpo-loss"].replace("beta)\n", "beta * 2)\n"))
    code, out, err = cli("all", "--dir", tmp_path, "--json")
    table = json.loads(out)
    assert (code, err) == (1, "") and (table["right"], table["total"]) == (len(EXERCISES) - 1, len(EXERCISES))
    wrong = [r for r in table["exercises"] if not r["right"]]
    assert [(r["exercise"], r["status"], r["mistakes"]) for r in wrong] == [("dpo-loss", "wrong", [])]
    # each imports the module that holds the library's solution: graded, and flagged (the bug hunt's names a string)
    assert [r["exercise"] for r in table["exercises"] if r["flags"] != ["uses-library"]] == ["bug-hunt"]


def test_a_broken_file_is_one_message_naming_its_file_and_line(tmp_path):
    syntax, raises, missing = tmp_path / "syntax.py", tmp_path / "raises.py", tmp_path / "other.py"
    syntax.write_text("import torch\n\ndef dpo_loss(a, b, c, d, beta)\n    return a\n")
    raises.write_text("import torch\n\n\ndef dpo_loss(pc, pr, rc, rr, beta):\n    return pc / {}\n")
    missing.write_text("def something_else():\n    pass\n\n\ndef dpo(a):\n    pass\n")
    code, out, err = cli("dpo-loss", "--file", syntax)
    assert (code, err) == (1, "") and out.startswith(f"dpo-loss: {syntax}:3: SyntaxError") and len(out.splitlines()) == 1
    code, out, err = cli("dpo-loss", "--file", raises)
    assert (code, err) == (1, "") and f"raised TypeError at {raises}:5 on case 1 of 5" in out
    for args, says in [(("dpo-loss", "--file", missing), "defines no function dpo_loss (it defines: dpo, "
                                                          "something_else)"),
                       (("dpo-loss", "--file", tmp_path / "nope.py"), "no file"),
                       (("no-such-exercise",), "no exercise 'no-such-exercise'; the exercises: sequence-logps"),
                       (("dpo-los",), "no exercise 'dpo-los'; did you mean dpo-loss?"),
                       (("dpo-loss", "--json"), "--json goes with `grade all`"), ((), "name an exercise"),
                       (("dpo-loss", "--time-limit", "0"), "must be > 0"),
                       (("all", "--dir", tmp_path / "nope"), "no folder")]:
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.startswith("error: ") and says in err and err.count("\n") == 1, err


def test_the_bug_hunt_checks_the_name():
    ex = find("bug-hunt")
    hunts = {bug_hunt.planted(h) for h in range(40)}
    assert hunts == set(FAULTS)  # every bug of the museum is some hunt's
    right = bug_hunt.planted(3)
    assert grade_function(ex, lambda: right + "\n", hunt=3).right
    wrong = next(name for name in sorted(FAULTS) if name != right)
    verdict = grade_function(ex, lambda: wrong, hunt=3)
    assert verdict.status == "wrong" and FAULTS[wrong].symptom in verdict.report and right not in verdict.report
    assert grade_function(ex, lambda: "a bug", hunt=3).status == "wrong"


def size(case) -> int:
    return sum(x.numel() for x in case.inputs if torch.is_tensor(x))


@pytest.mark.parametrize("ex", GRADED_BY_CASES, ids=lambda ex: ex.name)
def test_cases_run_smallest_first_and_one_is_float64(ex):
    cases = ex.cases()
    assert [size(c) for c in cases] == sorted(size(c) for c in cases)
    assert any(x.dtype == torch.float64 for c in cases for x in c.inputs if torch.is_tensor(x))


def test_the_cases_hold_what_breaks_careless_code():
    logps = find("sequence-logps").cases()
    masks = [c.inputs[2] for c in logps]
    assert any(m[:, 1:].sum(1).eq(1).any() for m in masks)                        # a one-token response
    assert any(len(set(m.sum(1).tolist())) > 1 and not m[:, -1].any() for m in masks)  # lengths differ, padded
    dpo = find("dpo-loss").cases()
    beta_h = [c.inputs[4] * ((c.inputs[0] - c.inputs[2]) - (c.inputs[1] - c.inputs[3])) for c in dpo]
    assert any(bool((b == -1000).any()) for b in beta_h)                            # log(sigmoid) underflows
    assert any(bool((c.inputs[0] == c.inputs[1]).all()) for c in dpo)             # a tie
    loss = find("dpo-loss").solution(*dpo[[bool((b == -1000).any()) for b in beta_h].index(True)].inputs)[0]
    assert loss.item() == 1000 and math.isfinite(loss.item())
    assert any(bool(c.inputs[0].eq(c.inputs[0][:, :1]).all()) for c in find("group-advantages").cases())  # std 0


def test_an_exercise_is_found_by_its_function_too():
    assert find("dpo_loss") is find("dpo-loss") is find("dpo-loss".replace("-", "_"))


def test_right_values_of_another_dtype_say_exactly_that():
    def float32_losses(pc, pr, rc, rr, beta):
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
        return -F.logsigmoid(chosen - rejected).float(), chosen.detach(), rejected.detach()
    report = grade_function(find("dpo-loss"), float32_losses).report.splitlines()
    assert report[0].startswith('dpo-loss: wrong on case 5 of 5, "float64')
    assert report[1] == ("  - losses has the right values but dtype torch.float32, expected torch.float64 (the "
                         "output's dtype follows the inputs')")


def test_a_mistake_only_the_gradient_shows_says_so_first():
    def half_gradient(pc, pr, rc, rr, beta):
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
        loss = -F.logsigmoid(chosen - rejected)
        return loss.detach() + 0.5 * (loss - loss.detach()), chosen.detach(), rejected.detach()
    report = grade_function(find("dpo-loss"), half_gradient).report.splitlines()
    assert report[1] == ("  - the values are right, the gradient is not: the gradient of losses.sum() w.r.t. "
                         "policy_chosen_logps differs")


def test_a_large_tensor_names_its_first_differing_elements_before_showing_it():
    def padding_returns(rewards, values, mask, gamma, lam):  # wrong on batches of several rows only
        advantages, returns = find("gae").solution(rewards, values, mask, gamma, lam)
        return advantages, returns + (~mask) * 0.5 * (rewards.size(0) > 1)
    report = grade_function(find("gae"), padding_returns).report
    summary = report.splitlines()[1]
    assert report.startswith('gae: wrong on case 3 of 4, "two rows') and summary == (
        "  - returns differs at 8 of 12 elements, first at [0, 0]: expected 0.0000, got 0.5000; "
        "[0, 4]: expected 0.0000, got 0.5000; [0, 5]: expected 0.0000, got 0.5000"), summary
    assert report.index(summary) < report.index("rewards = tensor(")
    small = grade_function(find("reinforce-loss"), lambda lp, a: -(a.detach() * lp).mean() * 2).report
    assert small.splitlines()[1] == "  - loss differs"  # a few numbers: expected and got say it all
