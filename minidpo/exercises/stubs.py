"""The learner's files: one stub a function, written from the catalogue by `grade --start DIR` into a
folder the learner owns (so it works from an installed minidpo, with no checkout). A stub states the
exercise in full and raises NotImplementedError until it is written."""
from __future__ import annotations

from pathlib import Path

from .catalogue import EXERCISES, file_name, number
from .grader import NOT_WRITTEN
from .spec import Exercise

DEFAULT_DIR = "exercises"


def stub_text(ex: Exercise, folder: str = DEFAULT_DIR) -> str:
    where = "" if folder == DEFAULT_DIR else f" --dir {folder}"
    body = "\n".join(("    " + line).rstrip() for line in ex.spec.splitlines())
    return f'''"""Exercise {number(ex):02d} of {len(EXERCISES)} · {ex.name} ({ex.tier}): {ex.title}.

Taught in:       {ex.cell_where()}.
Grade it:        python -m minidpo grade {ex.name}{where}
In the pipeline: python -m minidpo grade {ex.name}{where} --train
                 ({ex.train_note})
The library's solution, to read once you pass: {ex.solution_at}.
"""
import torch
import torch.nn.functional as F


def {ex.function}({", ".join(ex.args)}):
    """{body.lstrip()}
    """
    raise NotImplementedError("{NOT_WRITTEN}")
'''


def start(folder) -> list[tuple[Path, bool]]:
    """Write every exercise's stub into `folder` (made if needed); a file that exists is the
    learner's work and is kept. Returns (path, written?) for each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ex in EXERCISES:
        path = folder / file_name(ex)
        written = not path.exists()
        if written:
            path.write_text(stub_text(ex, str(folder)), encoding="utf-8")
        out.append((path, written))
    return out
