"""Every lesson at its defaults, in order, in one fresh folder, as a learner runs them: each exits 0
and every sentence it states about its run's numbers holds (a `claim` printed ✓, none ✗). The
lessons' own --fast runs (test_tutorials.py) check their mechanics; only the defaults carry the
readings. Its own tier, `python -m pytest -q -m defaults` (about 20 minutes on 2 cores): it is the
run the notebooks record (`python -m minidpo.tools.notebooks --execute --fresh --all`), and the
default tier checks every committed notebook for a claim that fails and for outputs made by other
lesson text or library code (test_notebooks.py), so CI reads the defaults' verdicts from there."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minidpo.harness.tutorial import FAILS, HOLDS, failed_claims

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted(ROOT.glob("tutorials/[0-9][0-9]_*.py"))


def test_a_failed_claim_is_seen():
    out = f"{HOLDS} the loss falls  [a = 1]\nsome number 3\n{FAILS} the margin grows  [m = -1]  — does not hold"
    assert failed_claims(out) == [f"{FAILS} the margin grows  [m = -1]  — does not hold"]


def run_lesson(script: Path, out: Path, *sets: str) -> subprocess.CompletedProcess:
    """`python SCRIPT --out OUT [--set NAME=VALUE ...]` at its defaults (never --fast), as a learner runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MINIDPO_FAST", None)
    return subprocess.run([sys.executable, str(script), "--out", str(out), *(a for s in sets for a in ("--set", s))],
                          capture_output=True, text=True, cwd=out.parent, env=env, timeout=600)


def test_a_knob_that_reverses_a_claim_is_caught(tmp_path):
    """Lesson 07 (float64, seconds, no stage to train) with sampled labels: the descent lands on the
    optimum of the fitted reward, not of the true one, so the lesson's claim that it lands on π*
    prints ✗ — and the check the defaults run through (`failed_claims`) fails on it."""
    lesson = next(p for p in LESSONS if p.name.startswith("07_"))
    done = run_lesson(lesson, tmp_path / "run", "n_labels=1000")
    assert done.returncode == 0, done.stderr[-3000:]  # a claim that does not hold never raises
    failed = failed_claims(done.stdout)
    assert any("lands on π* (TV under 1e-10)" in line and "does not hold with these settings" in line for line in failed), failed
    assert f"{HOLDS} with sampled labels the descent lands on π*(r_φ)" in done.stdout  # what holds instead


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("lessons_at_defaults") / "run"


@pytest.mark.defaults
@pytest.mark.parametrize("script", LESSONS, ids=lambda p: p.stem)
def test_the_lesson_at_its_defaults_holds_every_claim(script, folder):
    done = run_lesson(script, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert HOLDS in done.stdout, f"{script.name}: no claim about its run's numbers"
    assert failed_claims(done.stdout) == [], f"{script.name}: claims that do not hold at the defaults"
