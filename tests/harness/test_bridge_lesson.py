"""The bridge lesson (tutorials/bridge_lesson.py, lesson 12): its --fast run, cell by cell as a notebook
runs it, shows the numbers its markdown promises; its *Try* moves its number as the text says; at its
defaults every claim holds (no ✗). Without a saved or shipped bridge study it says so and claims
nothing about rungs 3–5. Slow tier, like the other lesson runs."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minidpo.harness.tutorial import FAILS, HOLDS

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "tutorials" / "bridge_lesson.py"


def check_bridge(g, out):
    assert g["m0"]["tv_dpo_rlhf"] <= 1e-8 and g["grad_unlinked"] < 1e-15 < g["grad_linked"]
    e1 = g["e1"]
    assert abs(e1["dpo_loss"] - e1["dpo_loss_other_start"]) < 1e-12 and e1["tv_dpo_other_start"] > 0.005
    assert f"TV between the two DPO solutions {e1['tv_dpo_other_start']:.4f}" in out  # the text's number is the run's
    for text in ("rung 0: DPO, RLHF and π*(r̂) are one policy", "DPO's gradient on the logit",
                 "rung 1: two DPO solutions", "rung 1: from the reference"):
        assert [line for line in out.splitlines() if line[2:].startswith(text)][0].startswith(HOLDS), text
    if g["result"] is None:  # no study: it says so, and no reading of rungs 3-5 is printed, let alone claimed
        assert "rungs 3–5 below are left out" in out and "rung 3:" not in out and "rung 5:" not in out
    else:
        assert [r["rung"] for r in g["result"]["rungs"]] == [0, 1, 2, 3, 4, 5]
    assert "What to remember" in LESSON.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fast_default(tmp_path_factory):
    from test_tutorials import run_lesson
    return run_lesson(LESSON, tmp_path_factory.mktemp("bridge_lesson") / "run")


@pytest.mark.slow
def test_the_bridge_lesson_runs_fast_and_shows_its_numbers(fast_default):
    check_bridge(*fast_default)


@pytest.mark.slow
def test_the_try_moves_rung1s_second_start_farther_at_the_same_loss(fast_default, tmp_path):
    from test_tutorials import run_lesson
    d, _ = fast_default
    v, out = run_lesson(LESSON, tmp_path / "run", "start_noise=3.0")
    assert "Try variant:" in out
    assert v["e1"]["tv_dpo_other_start"] > d["e1"]["tv_dpo_other_start"]
    assert abs(v["e1"]["dpo_loss"] - v["e1"]["dpo_loss_other_start"]) < 1e-12


def test_the_lessons_try_is_the_one_tested_here():
    import re
    assert re.findall(r"\*Try\*[^\n]*?`--set ([\w.=+-]+)`", LESSON.read_text(encoding="utf-8")) == ["start_noise=3.0"]


@pytest.mark.slow
def test_the_bridge_lesson_at_its_defaults_holds_every_claim(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MINIDPO_FAST", None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(LESSON), "--out", str(tmp_path / "run")], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=600)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert HOLDS in done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith(FAILS + " ")]
    assert failed == [], f"claims that do not hold at the defaults ({seconds:.0f} s): {failed}"
