"""`python -m minidpo grade class ROOT`: a class graded in one command.

ROOT holds one folder per student, with their files named as `grade --start` names them (in the
folder itself, or in its exercises/ folder). Each student's files run in one child process of their
own; the next students' children start while the current one is graded (their `import torch`, the
bulk of a child's cost, overlaps). The gradebook is written into ROOT: gradebook.csv and
gradebook.md, one row a student, one column an exercise (right / wrong (the mistakes named) / error
(its cause) / not written / missing, and ", uses-library" when the file imports the library's
solution), and the number right. `--json` prints the same as JSON. One line of progress a student.
Exit code 0 when every student is right on every exercise graded.
"""
from __future__ import annotations

import csv
import sys
import time
from collections import deque
from pathlib import Path

from .catalogue import EXERCISES, file_name
from .child import Child
from .grader import UsageError, Verdict, grade_files

AHEAD = 2  # children started ahead of the student they will grade: their `import torch` runs meanwhile


def cell(v: Verdict) -> str:
    """A verdict in a few words: what a gradebook's cell holds."""
    if v.status == "wrong":
        text = "wrong" + (f" ({', '.join(v.mistakes)})" if v.mistakes else "")
    elif v.status == "error":
        text = f"error ({v.cause})"
    else:
        text = v.status
    return text + "".join(f", {flag}" for flag in v.flags)


def row(ex, path, v: Verdict) -> dict:
    """One exercise of one student, as `grade all --json` and the gradebook's JSON print it."""
    return {"exercise": ex.name, "function": ex.function, "tier": ex.tier, "file": str(path), "status": v.status,
            "right": v.right, "mistakes": v.mistakes, "flags": v.flags, "cause": v.cause, "cell": cell(v),
            "message": v.report.splitlines()[0], "output": v.output}


def students(root: Path) -> list[tuple[str, Path]]:
    """(name, the folder of their files) for each sub-folder of `root`, by name."""
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        inner = folder / "exercises"
        here = any((folder / file_name(ex)).is_file() for ex in EXERCISES)
        out.append((folder.name, inner if inner.is_dir() and not here else folder))
    return out


def grade_class(root: Path, exercises: list, time_limit: float, as_json: bool, hunt: int = 0) -> int:
    if not root.is_dir():
        raise UsageError(f"grade class: no folder {root} (ROOT holds one folder per student)")
    roster = students(root)
    if not roster:
        raise UsageError(f"grade class: {root} holds no student folders (one folder per student, their files in it)")
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if as_json else (lambda line: print(line, flush=True))
    t0, book = time.perf_counter(), []
    upcoming = deque(Child() for _ in range(min(AHEAD, len(roster))))
    try:
        for n, (name, folder) in enumerate(roster):
            child = upcoming.popleft()
            if n + AHEAD < len(roster):
                upcoming.append(Child())
            began = time.perf_counter()
            files = [(ex, folder / file_name(ex)) for ex in exercises]
            rows = [row(ex, path, v) for (ex, path), v in zip(files, grade_files(files, time_limit, child, hunt=hunt))]
            right = sum(r["right"] for r in rows)
            others = {}
            for r in rows:
                if not r["right"]:
                    others[r["status"]] = others.get(r["status"], 0) + 1
            say(f"[{n + 1}/{len(roster)}] {name}: {right} of {len(rows)} right"
                + "".join(f", {k} {v}" for k, v in others.items()) + f" ({time.perf_counter() - began:.1f} s)")
            book.append({"student": name, "folder": str(folder), "right": right, "total": len(rows), "exercises": rows})
    finally:
        for child in upcoming:
            child.close()
    names = [ex.name for ex in exercises]
    csv_path, md_path = write(root, names, book)
    passed = sum(s["right"] == s["total"] for s in book)
    seconds = time.perf_counter() - t0
    if as_json:
        import json
        print(json.dumps({"root": str(root), "exercises": names, "students": book, "passed": passed,
                          "gradebook": [str(csv_path), str(md_path)], "seconds": round(seconds, 1)}, indent=1,
                         ensure_ascii=False))
    else:
        print(f"wrote {csv_path} and {md_path}: {len(book)} students × {len(names)} exercises, {passed} right on "
              f"every one, in {seconds:.1f} s")
    return 0 if passed == len(book) else 1


def write(root: Path, names: list[str], book: list[dict]) -> tuple[Path, Path]:
    """gradebook.csv and gradebook.md in `root`."""
    header = ["student", *names, "right", "of"]
    table = [[s["student"], *(r["cell"] for r in s["exercises"]), s["right"], s["total"]] for s in book]
    csv_path, md_path = root / "gradebook.csv", root / "gradebook.md"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *table])
    lines = ["# Gradebook", "", f"{len(book)} students × {len(names)} exercises (`python -m minidpo grade class`). "
             "A cell: right, wrong (the classic mistakes named), error (its cause), not written, missing (no file, "
             "or no function); uses-library: the file imports the library's solution.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in table]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path
