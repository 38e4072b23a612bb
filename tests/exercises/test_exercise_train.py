"""`grade NAME --train`: the learner's function enters the real stage through its extension point, and
the library's own function there reproduces the reference run exactly. The run happens in a child
process; a learner's function that raises or turns NaN there is one message naming that function.
The bug hunt's run keeps no file that names its bug."""
import contextlib
import io
import re
import shutil

import pytest
import torch

from minidpo.data import row
from minidpo.dpo import pair_record
from minidpo.exercises import bug_hunt, train
from minidpo.exercises.catalogue import file_name, find
from minidpo.exercises.child import load_module
from minidpo.exercises.preference_losses import logps_solution, plugged_logps
from minidpo.harness.cli import main
from minidpo.harness.runfolder import Run
from minidpo.model import GPT, GPTConfig
from minidpo.ppo import clipped_policy_loss, gae

SHOWN = ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "fluency")


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["grade", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def test_the_plugged_library_logps_score_dpo_rows_bit_for_bit():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16))
    pairs = [(row([1, 2, 3], [4, 5, 6, 7]), row([1, 2, 3], [8, 9])), (row([1, 5], [6]), row([1, 5], [7, 8, 9, 10, 11]))]
    scored = []
    for logps_fn in (plugged_logps(logps_solution), None):
        record = pair_record(model, pairs, 0, 0.5, False, **({"logps_fn": logps_fn} if logps_fn else {}))
        model.zero_grad()
        (record.chosen_logps.sum() - 2 * record.rejected_logps.sum()).backward()
        scored.append((record.chosen_logps, record.rejected_logps, [p.grad.clone() for p in model.parameters()]))
    (c1, r1, g1), (c2, r2, g2) = scored
    assert torch.equal(c1, c2) and torch.equal(r1, r2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_the_ppo_adapters_with_the_librarys_functions_are_the_library():
    """PPO hands GAE and the clipped loss a float mask; the exercises' functions take a bool one."""
    g = torch.Generator().manual_seed(0)
    new, old, adv = (torch.randn(3, 5, generator=g) for _ in range(3))
    mask = (torch.rand(3, 5, generator=g) > 0.3).float()
    assert all(torch.equal(a, b) for a, b in zip(gae(new, old, mask, 1.0, 0.95), gae(new, old, mask.bool(), 1.0, 0.95)))
    assert torch.equal(find("ppo-clipped-loss").solution(new, old, adv, mask.bool(), 0.2),
                       clipped_policy_loss(new, old, adv, mask, 0.2)[0])


@pytest.fixture(scope="module")
def run_copy(fast_run, tmp_path_factory, solutions):
    """A copy of the tiny run folder (the exercises write their units into it), and a folder of the
    library-backed answers."""
    run, _ = fast_run
    out = tmp_path_factory.mktemp("exercises") / "run"
    shutil.copytree(run.out, out)
    answers = tmp_path_factory.mktemp("answers")
    for name, text in solutions.items():
        (answers / file_name(find(name))).write_text(text)
    return Run.create(out, fast=True, device="cpu", dtype="fp32", quiet=True), answers


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpo-loss", "reinforce-advantages"])  # the loss registry; a function passed in
def test_train_with_the_librarys_function_reproduces_the_reference_run(run_copy, name):
    """(The log-probs' extension point is checked batch by batch above: DPO's rows scored bit for bit.)"""
    run, answers = run_copy
    ex = find(name)
    (_, reference), (_, yours) = ex.train(run, train.learner(load_module(answers / file_name(ex)), ex.function))
    assert {k: yours[k] for k in SHOWN} == {k: reference[k] for k in SHOWN}


@pytest.mark.slow
def test_the_cli_trains_in_a_child_and_prints_the_same_row_as_the_librarys(run_copy):
    """The whole command: grading, then --train in a child process whose progress is relayed."""
    run, answers = run_copy
    code, text, err = cli("dpo-loss", "--dir", answers, "--train", "--out", run.out)
    assert (code, err) == (0, ""), text + err
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines() if line.startswith("DPO, "))
    assert rows["DPO, the library's dpo_loss"] == rows["DPO, your dpo_loss"], text
    assert "-- DPO --fast with your dpo_loss" in text  # the child's own progress line, relayed


@pytest.mark.slow
def test_a_function_that_raises_inside_training_is_one_message(run_copy, tmp_path, solutions):
    run, _ = run_copy
    mine = tmp_path / "mine.py"
    mine.write_text(solutions["sequence-logps"] + "\n\ndef sequence_logps(logits, input_ids, response_mask):\n"
                    "    if len(logits) > 3:\n        raise ValueError('only small batches')\n"
                    "    return library(lambda ids: logits[:, :ids.size(1)], input_ids, response_mask).logps\n")
    line = mine.read_text().splitlines().index("        raise ValueError('only small batches')") + 1
    code, text, err = cli("sequence-logps", "--file", mine, "--train", "--out", run.out)
    assert (code, err) == (1, ""), text + err
    assert text.startswith("sequence-logps: right on all 5 cases")
    assert text.splitlines()[-1] == (f"sequence-logps: your sequence_logps raised ValueError at {mine}:{line} during "
                                     "training: only small batches")


@pytest.mark.slow
def test_a_loss_that_turns_nan_in_training_is_named_not_the_runs_settings(run_copy, tmp_path, own):
    """At step 0 the policy is the reference: h = 0, and h / h is 0/0."""
    run, _ = run_copy
    mine = tmp_path / "mine.py"
    h = "(chosen - rejected)"
    mine.write_text(own["dpo-loss"].replace(f"-F.logsigmoid{h}", f"-F.logsigmoid{h} * {h} / {h}"))
    code, text, err = cli("dpo-loss", "--file", mine, "--train", "--out", run.out)
    assert (code, err) == (1, ""), text + err
    assert text.startswith("dpo-loss: wrong on case 1 of 5") and "--beta" not in text and "--lr" not in text
    last = text.splitlines()[-1]
    assert last.startswith("dpo-loss: training stopped inside your dpo_loss: it returned nan in losses at ["), last
    assert "the library's dpo_loss gives 0.6931 there, on the same inputs" in last, last


def test_the_non_finite_watch_names_the_element_and_the_librarys_value():
    ex = find("dpo-loss")
    watched = train.watched(lambda pc, pr, rc, rr, b: ex.solution(pc, pr, rc, rr, b) if b < 1
                            else (pc / 0 * 0, pc, pr), ex)
    args = tuple(torch.tensor(x) for x in ([-1.0, -2.0], [-1.0, -3.0], [-1.0, -2.0], [-1.0, -3.0]))
    assert torch.equal(watched(*args, 0.5)[0], ex.solution(*args, 0.5)[0])
    with pytest.raises(train.NonFinite) as caught:
        watched(*args, 2.0)
    assert str(caught.value).startswith("it returned nan in losses at [0] (its first non-finite output, of 2 values; "
                                        "in shape (2,)); the library's dpo_loss gives 0.6931 there, on the same inputs")


@pytest.mark.slow
def test_the_bug_hunt_runs_and_keeps_no_file_that_names_its_bug(run_copy):
    run, _ = run_copy
    text, doctor, fault = bug_hunt.train_hunt(run, hunt=0), bug_hunt.doctor(run, 0), bug_hunt.planted(0)
    assert "Held-out pairs:" in text and "eval/loss" in text and "FAIL" in doctor
    written = [p for p in (run.out / "exercises" / "bug-hunt").rglob("*") if p.is_file()]
    assert written and not [p for p in written if fault in p.name or fault in p.read_text(errors="ignore")]
    assert fault not in text and fault not in doctor
