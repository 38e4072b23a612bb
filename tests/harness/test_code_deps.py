"""A lecture's edit costs only what it changes: a stage's code key holds the definitions it reaches,
so a loss added to losses.py leaves the reward model and REINFORCE current, while editing what a
stage does use makes it stale."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minidpo.harness import code_deps
from minidpo.harness.code_deps import code_hashes, entries_for_config, reached

ROOT = Path(__file__).resolve().parents[2]
NEW_LOSS = '''

@register_margin_loss("lecture-loss")
def lecture_loss(h, beta):
    return -F.logsigmoid(beta * h) + 0.0 * h
'''


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package that code_deps reads instead of the real one."""
    copy = tmp_path / "minidpo"
    shutil.copytree(ROOT / "minidpo", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_deps, "PACKAGE", copy)
    return copy


def test_the_reward_model_reaches_only_the_bradley_terry_loss():
    losses = reached("reward_model")["losses"]
    assert len(losses) == 1 and losses[0].startswith("def bradley_terry_loss")
    assert "def sigmoid_loss" not in "".join(reached("rlhf").get("losses", []))


def test_a_new_loss_changes_no_key_but_the_ones_that_train_with_it(package_copy):
    entries = {"reward_model": ("reward_model",), "rlhf": ("rlhf",), "sft": ("sft",),
               "dpo": ("dpo", *entries_for_config({"loss_type": "sigmoid"}))}
    before = {k: code_hashes(*v) for k, v in entries.items()}
    losses = package_copy / "losses.py"
    losses.write_text(losses.read_text() + NEW_LOSS)
    after = {k: code_hashes(*v) for k, v in entries.items()}
    assert before == after  # nothing that trains the default stages reaches the new loss
    assert code_hashes("losses:lecture_loss") != {}  # the new loss itself is reachable by name


def test_editing_what_a_stage_uses_makes_it_stale(package_copy):
    rm = lambda: code_hashes("reward_model")
    dpo = lambda: code_hashes("dpo", "losses:sigmoid_loss")
    before_rm, before_dpo = rm(), dpo()
    losses = package_copy / "losses.py"
    text = losses.read_text()
    losses.write_text(text.replace("return -F.logsigmoid(chosen_scores - rejected_scores)",
                                   "return -1.0 * F.logsigmoid(chosen_scores - rejected_scores)", 1))
    assert rm()["losses"] != before_rm["losses"] and dpo() == before_dpo
    losses.write_text(text.replace("def sigmoid_loss(h, beta, label_smoothing=0.0):",
                                   "def sigmoid_loss(h, beta, label_smoothing=0.00):", 1))
    assert dpo()["losses"] != before_dpo["losses"] and rm() == before_rm
    world = package_copy / "world.py"  # the gold reward, which every stage that scores text reaches
    world.write_text(world.read_text().replace("def gold_reward(", "def gold_reward( ", 1))
    assert rm()["world"] != before_rm["world"]


def test_the_statements_source_is_what_ast_gives():
    """The key's text: each top-level statement cut from lines split once, exactly ast's segment
    (so the keys, and every run folder's reuse, do not change with the faster cut)."""
    import ast
    for path in sorted(code_deps.PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = code_deps._LINE.findall(text)
        assert "".join(lines) == text, path
        for node in ast.parse(text).body:
            assert code_deps.source_segment(lines, node) == ast.get_source_segment(text, node), (path, node.lineno)
    odd = "x = 1\r\ny = ('é',\r  2)\rz = 3"  # other line ends, a non-ASCII column
    for node in ast.parse(odd).body:
        assert code_deps.source_segment(code_deps._LINE.findall(odd), node) == ast.get_source_segment(odd, node)


def test_a_module_docstring_or_an_unused_import_changes_nothing(package_copy):
    before = code_hashes("rlhf")
    model = package_copy / "model.py"
    model.write_text('"""Edited docstring."""\nimport json\n' + model.read_text().split('"""', 2)[2])
    assert code_hashes("rlhf") == before


def test_after_a_loss_is_added_run_fast_reuses_the_reward_model_and_rlhf(fast_run, tmp_path):
    """The issue's scenario end to end: `run --fast`, then a new registered loss in losses.py,
    then `run --fast` again (from a copy of the checkout): the log says the stages were reused."""
    run, _ = fast_run
    checkout = tmp_path / "checkout"
    for part in ("minidpo", "data"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    losses = checkout / "minidpo" / "losses.py"
    losses.write_text(losses.read_text() + NEW_LOSS)
    folder = tmp_path / "run"
    shutil.copytree(run.out, folder)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    # `python -m minidpo run --fast --out FOLDER --quiet` with the edited checkout, first saying which losses it has
    command = ("import sys; from minidpo.losses import LOSSES; print('losses:', sorted(LOSSES)); "
               "from minidpo.harness.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", command, "run", "--fast", "--out", str(folder), "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    assert "'lecture-loss'" in p.stdout.splitlines()[0]  # the edited losses.py is the one imported
    for stage in ("sft", "prefs", "reward_model", "rlhf", "dpo", "eval_rlhf", "eval_dpo"):
        assert f"== {stage}: reusing its outputs" in p.stdout, (stage, p.stdout)
