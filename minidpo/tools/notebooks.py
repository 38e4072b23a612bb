"""The tutorials as notebooks, with the outputs of a real run to compare against.

    python -m minidpo.tools.notebooks             # notebooks/NN_name.ipynb from tutorials/NN_name.py
    python -m minidpo.tools.notebooks --execute   # ... and run every stale one in a Jupyter kernel
    python -m minidpo.tools.notebooks --check     # exit 1 when a notebook is missing, stale or unrun

The `# %%` scripts are the one source of truth (edited by hand, run by the tests); the notebooks are
generated from them and never edited. `# %% [markdown]` starts a markdown cell (its `# ` prefixes
removed), `# %%` a code cell (a title after it becomes the cell's first comment). Each notebook
begins with a setup cell that installs minidpo when it is not installed (a hosted notebook).

`--execute` runs the notebooks in order in a real kernel (nbclient + ipykernel), at the lessons'
defaults on this machine's CPU, seed 0, torch pinned to the lessons' 2 threads, in one work folder
(`runs/notebooks`, `--fresh` empties it first), and commits their outputs: the printed numbers and
the figures, readable on the repository's page. Each notebook's metadata holds the key of what made
its outputs (`lesson_key`: the lesson's text, the minidpo source it reaches, the data files those
name) and how long it took. A notebook whose key differs from the checkout's is stale.
Plain nbformat-4 JSON, written without the nbformat package.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path("runs/notebooks")
COMMAND = "python -m minidpo.tools.notebooks --execute"
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
# The lesson runs the script's own defaults, on a CPU as on a GPU; `%env MINIDPO_FAST=1` before this
# cell asks for the tiny smoke settings instead. The outputs below are those of a 2-core CPU, seed 0.'''


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
    """The notebook of a lesson, without outputs."""
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


def lesson_key(script_path: Path) -> dict:
    """What a lesson's outputs are made from: its text, the minidpo source it reaches (definitions,
    as for a stage's provenance key: `harness.code_deps`) and the data files that text names. The
    whole of losses.py counts once any of it is reached: the stages pick their loss from its
    registry, which the source does not show."""
    from ..checkpoint import file_hash
    from ..harness import code_deps
    text = script_path.read_text(encoding="utf-8")
    entries = code_deps.script_entries(text)
    reached = code_deps.reached(*entries)
    if "losses" in reached:
        entries, reached = entries + ("losses",), code_deps.reached(*entries, "losses")
    sources = text + "".join(s for parts in reached.values() for s in parts)
    data = {p.name: file_hash(p)[:16] for p in sorted((ROOT / "data").iterdir())
            if p.is_file() and p.name in sources}
    return {"lesson": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
            "code": code_deps.code_hashes(*entries), "data": data}


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def targets(root: Path = ROOT) -> list[tuple[Path, Path]]:
    return [(s, root / "notebooks" / s.with_suffix(".ipynb").name)
            for s in sorted((root / "tutorials").glob("[0-9][0-9]_*.py"))]


def without_outputs(nb: dict) -> dict:
    """The notebook as generated: outputs, execution counts and the execution record removed."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell.update(execution_count=None, outputs=[])
    nb["metadata"].get("minidpo", {}).pop("executed", None)
    return nb


def why_stale(script: Path, nb_path: Path) -> str | None:
    """None when the notebook holds the lesson's cells and outputs made by the checkout's code;
    otherwise the reason, in words."""
    if not nb_path.is_file():
        return "missing"
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    if render(without_outputs(nb)) != render(notebook(script)):
        return "its cells differ from the lesson's"
    executed = nb["metadata"].get("minidpo", {}).get("executed")
    if not executed:
        return "never executed"
    if executed.get("key") != lesson_key(script):
        return "its outputs were made by other lesson text or library code"
    return None


def execute(script: Path, workdir: Path, timeout: int = 900) -> tuple[dict, float]:
    """The lesson's notebook run in a fresh Jupyter kernel with `workdir` as its folder: (the
    notebook with its outputs, seconds). A cell that fails stops the run with its error. The kernel
    inherits this process's environment, so the settings that would change what a lesson runs
    (MINIDPO_FAST, MINIDPO_THREADS) are removed from it first."""
    import nbclient
    import nbformat
    for name in ("MINIDPO_FAST", "MINIDPO_THREADS"):
        os.environ.pop(name, None)
    generated = notebook(script)
    nb = nbformat.reads(render(generated), as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}}).execute()
    seconds = time.perf_counter() - t0
    ran = json.loads(nbformat.writes(nb))  # outputs in nbformat's own layout (text as lists of lines)
    for cell, done in zip(generated["cells"], ran["cells"]):
        if cell["cell_type"] == "code":
            cell.update(execution_count=done["execution_count"], outputs=done["outputs"])
    return generated, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a notebook is missing, stale or has no outputs")
    p.add_argument("--execute", action="store_true", help=f"run the stale notebooks in a kernel, in order, in {WORK}")
    p.add_argument("--all", action="store_true", help="with --execute: every notebook, stale or not")
    p.add_argument("--fresh", action="store_true", help=f"with --execute: empty {WORK} first (lessons in order "
                                                        "from an empty folder)")
    p.add_argument("--only", default="", help="with --execute: these lessons only, e.g. 07,09")
    args = p.parse_args(argv)
    from ..checkpoint import atomic_write
    only = {n.strip().zfill(2) for n in args.only.split(",") if n.strip()}
    stale = [(s, nb, why) for s, nb in targets() if (why := why_stale(s, nb))]
    if args.check:
        for _, nb_path, why in stale:
            print(f"stale: {nb_path.relative_to(ROOT)}: {why}")
        if stale:
            print(f"error: {len(stale)} notebooks are stale: run `{COMMAND}` (about 25 minutes on 2 cores; "
                  "`--only NN` for one lesson)", file=sys.stderr)
            return 1
        return 0
    if not args.execute:  # regenerate cells; a notebook whose cells are unchanged keeps its outputs
        for script, nb_path in targets():
            text = render(notebook(script))
            if nb_path.is_file() and render(without_outputs(json.loads(nb_path.read_text(encoding="utf-8")))) == text:
                continue
            atomic_write(nb_path, lambda f, text=text: f.write(text.encode("utf-8")))
            print(f"wrote {nb_path.relative_to(ROOT)} (without outputs: `{COMMAND}` runs it)")
        return 0
    if args.fresh and WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True, exist_ok=True)
    import torch
    names = {s for s, _, _ in stale}
    for script, nb_path in targets():
        if (only and script.name[:2] not in only) or (not args.all and not only and script not in names):
            continue
        print(f"executing {script.name} ...", flush=True)
        nb, seconds = execute(script, WORK.resolve())
        nb["metadata"]["minidpo"]["executed"] = {
            "key": lesson_key(script), "seconds": round(seconds, 1), "threads": 2, "seed": 0,
            "device": "cpu", "torch": torch.__version__, "python": platform.python_version(),
            "fresh_folder": bool(args.fresh), "date": time.strftime("%Y-%m-%d")}
        text = render(nb)
        atomic_write(nb_path, lambda f, text=text: f.write(text.encode("utf-8")))
        print(f"wrote {nb_path.relative_to(ROOT)}: {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
