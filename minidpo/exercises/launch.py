"""Starting the grader's child process (child.py). Standard library only, so that `python -m minidpo
grade` can start the child before its own `import torch` (see minidpo/__main__.py): the two imports
then overlap on two cores instead of following each other."""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def launch(mode: str, relay: bool = False):
    """(process, its folder, the file its stdout and stderr go to) for `python -m minidpo.exercises.child
    MODE`; with `relay`, they go to a pipe instead (process.stderr) and the file stays empty."""
    folder = tempfile.TemporaryDirectory(prefix="minidpo-grade-")
    capture = Path(folder.name) / "printed.txt"
    root = str(Path(__file__).resolve().parents[2])  # the folder minidpo is in: importable by the child
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    if mode == "grade":  # a few numbers a case: one thread (a --train child trains like the pipeline)
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    with open(capture, "wb") as out:
        entry = "minidpo.exercises.train_child" if mode == "train" else "minidpo.exercises.child"
        process = subprocess.Popen([sys.executable, "-m", entry, mode], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE if relay else out, env=env,
                                   start_new_session=True)  # a terminal's Ctrl-C reaches the parent only
    return process, folder, capture


_EARLY: list = []


def start_early() -> None:
    """A grading child started now, for the first `take`; ended at exit when nobody took it."""
    _EARLY.append(launch("grade"))
    atexit.register(_discard)


def take(mode: str, relay: bool = False):
    if mode == "grade" and not relay and _EARLY:
        return _EARLY.pop()
    return launch(mode, relay)


def _discard() -> None:
    for process, folder, _ in _EARLY:
        process.kill()
        process.wait()
        folder.cleanup()
    _EARLY.clear()
