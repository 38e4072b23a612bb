"""The bridge lesson (tutorials/bridge_lesson.py): its --fast run, cell by cell as a notebook runs it,
shows the numbers its markdown promises; at its defaults every claim holds (no ✗). It reads the
committed full study (data/studies/bridge.json) when no run of its own exists, so a fresh folder is
enough. Slow tier, like the other lesson runs."""
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
    assert abs(g["e1"]["dpo_loss"] - g["e1"]["dpo_loss_other_start"]) < 1e-12 and g["e1"]["tv_dpo_other_start"] > 0.005
    rungs = g["result"]["rungs"]
    assert [r["rung"] for r in rungs] == [0, 1, 2, 3, 4, 5]
    assert "the full study committed with minidpo" in out  # a fresh --fast folder reads data/studies/
    assert HOLDS in out and "What to remember" in LESSON.read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_bridge_lesson_runs_fast_and_shows_its_numbers(tmp_path):
    from test_tutorials import run_lesson
    g, out = run_lesson(LESSON, tmp_path / "run")
    check_bridge(g, out)


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
