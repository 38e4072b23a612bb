"""Every tutorial runs end to end with --fast (in this process: one torch import for all)."""
import runpy
import shutil
import sys
from pathlib import Path

import pytest

from minidpo.checkpoint import read_json

TUTORIALS = sorted(Path(__file__).resolve().parent.parent.glob("tutorials/[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def folder(fast_run, tmp_path_factory):
    run, _ = fast_run
    out = tmp_path_factory.mktemp("tutorials") / "run"
    shutil.copytree(run.out, out)  # reuse the trained tiny stages; tutorials add their own files
    return out


def test_there_are_fourteen_numbered_tutorials():
    assert [p.name[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, 15)]


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs_fast(script, folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--fast", "--out", str(folder)])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), "a tutorial prints what it computed"
    if script.name.startswith("10_"):
        points = read_json(folder / "frontier" / "frontier.json")["points"]
        assert {p["method"] for p in points} == {"dpo", "rlhf"} and len(points) >= 8
        assert (folder / "frontier" / "frontier.png").stat().st_size > 10_000
