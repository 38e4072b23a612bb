"""The tutorials as notebooks: `python -m minidpo.tools.notebooks` writes notebooks/NN_name.ipynb from each
tutorials/NN_name.py, and `--check` exits 1 when a notebook is missing or out of date.

The `# %%` scripts are the one source of truth (edited by hand, run by the tests); the notebooks are
generated from them and never edited. `# %% [markdown]` starts a markdown cell (its `# ` prefixes
removed), `# %%` a code cell (a title after it becomes the cell's first comment). Each notebook
begins with a setup cell that installs minidpo when it is not installed (a hosted notebook) and
says how the lesson picks tiny settings when no GPU is present (see `harness.tutorial.tutorial_run`).
Plain nbformat-4 JSON, written without the nbformat package.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = '''# Setup: install minidpo if this kernel does not have it (a hosted notebook starts empty).
# It installs from MINIDPO_SOURCE (a pip source: git+URL of the repository, or a folder) or else from the
# checkout this notebook sits in. A hosted notebook with only the repository's URL: first run a cell
#     %env MINIDPO_SOURCE=git+https://github.com/OWNER/minidpo
# (the repository this notebook came from), then this one: the package brings its tokenizer and data.
import importlib.util, os, pathlib, subprocess, sys
if importlib.util.find_spec("minidpo") is None:
    here = pathlib.Path.cwd()
    checkout = next((p for p in (here, *here.parents) if (p / "pyproject.toml").is_file() and (p / "minidpo").is_dir()), None)
    source = os.environ.get("MINIDPO_SOURCE") or (str(checkout) if checkout else None)
    if source is None:
        raise RuntimeError("minidpo is not installed and no checkout was found above " + str(here) + ": run "
                           "`%env MINIDPO_SOURCE=git+https://github.com/OWNER/minidpo` (the repository's URL) "
                           "and re-run this cell")
    editable = ["-e"] if source == str(checkout) else []  # a checkout: its edits count, as in the README
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *editable, source])
    if editable:  # a running kernel reads the editable install's .pth file only at its next start
        sys.path.insert(0, str(checkout))
    importlib.invalidate_caches()
# Without a GPU the lesson runs its tiny (--fast) settings; set MINIDPO_FULL=1 for the full run.'''


def cells_of(script: str) -> list[dict]:
    """The notebook cells of a `# %%` script, in order."""
    cells, kind, lines = [], None, []

    def close():
        text = "\n".join(lines).strip("\n")
        if kind is not None and text:
            cells.append(_cell(kind, text))
    for line in script.splitlines():
        if line.startswith("# %%"):
            close()
            rest = line[4:].strip()
            kind, lines = ("markdown", []) if rest.startswith("[markdown]") else ("code", [f"# {rest}"] if rest else [])
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind == "code":
            lines.append(line)
    close()
    return cells


def _cell(kind: str, text: str) -> dict:
    source = [l + "\n" for l in text.split("\n")]
    source[-1] = source[-1].rstrip("\n")
    cell = {"cell_type": kind, "id": "", "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook(script_path: Path) -> dict:
    cells = cells_of(script_path.read_text(encoding="utf-8"))
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"},
                         "minidpo": {"generated_from": f"tutorials/{script_path.name}"}},
            "cells": _with_ids([cells[0], _cell("code", SETUP), *cells[1:]])}


def _with_ids(cells: list[dict]) -> list[dict]:
    """nbformat 4.5 cell ids: the cell's position and a hash of its text, so they are stable
    while a lesson is unchanged and unique within it."""
    for i, cell in enumerate(cells):
        digest = hashlib.sha1("".join(cell["source"]).encode("utf-8")).hexdigest()[:8]
        cell["id"] = f"c{i:02d}-{digest}"
    return cells


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def targets(root: Path = ROOT) -> list[tuple[Path, Path]]:
    return [(s, root / "notebooks" / s.with_suffix(".ipynb").name)
            for s in sorted((root / "tutorials").glob("[0-9][0-9]_*.py"))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="do not write; exit 1 if a notebook is missing or stale")
    args = p.parse_args(argv)
    stale = []
    for script, nb_path in targets():
        text = render(notebook(script))
        if nb_path.is_file() and nb_path.read_text(encoding="utf-8") == text:
            continue
        stale.append(nb_path)
        if not args.check:
            from ..checkpoint import atomic_write
            atomic_write(nb_path, lambda f: f.write(text.encode("utf-8")))
    for path in stale:
        print(("stale: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    if args.check and stale:
        print("error: run `python -m minidpo.tools.notebooks` to regenerate the notebooks from tutorials/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
