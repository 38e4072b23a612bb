"""`python -m minidpo grade`: list the exercises, write the stubs, grade one function or a whole folder,
run one in the pipeline (`--train`). Exit code 0 when right, 1 when wrong (or not written, or
raising), 2 for a usage error (one `error:` line, from the CLI). The flags are parsed in harness/cli.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import CheckpointError, WriteError
from ..harness.runfolder import RunFolderError
from ..preferences import PreferenceFileError
from . import bug_hunt, train
from .catalogue import EXERCISES, file_name, find, listing
from .grader import LearnerError, UsageError, Verdict, grade_function, load_module, where
from .stubs import start


def grade(args) -> int:
    if args.list:
        print(listing())
        return 0
    if args.start:
        return _start(args.start)
    if not args.name:
        raise UsageError("grade: name an exercise (python -m minidpo grade --list), or `all`, or --start DIR")
    if args.name == "all":
        if args.file or args.train or args.doctor:
            raise UsageError("grade all: it grades every file of --dir; --file, --train and --doctor take one exercise")
        return grade_all(Path(args.dir), args.json, args.hunt)
    ex = find(args.name)
    if args.json or (args.doctor and ex is not bug_hunt.BUG_HUNT):
        raise UsageError("grade: " + ("--json goes with `grade all`" if args.json else "--doctor goes with bug-hunt"))
    hunting = ex is bug_hunt.BUG_HUNT and (args.train or args.doctor)
    path = Path(args.file) if args.file else Path(args.dir) / file_name(ex)
    if not args.file and not path.is_file() and not hunting:
        raise UsageError(f"grade: no file {path}: write the stubs first (python -m minidpo grade --start"
                         + ("" if args.dir == "exercises" else f" {args.dir}") + ")")
    if hunting and not _hunt(args, path):
        return 1
    module, verdict = _load(ex, path)
    if verdict is None:
        verdict = grade_function(ex, getattr(module, ex.function), path, hunt=args.hunt)
    print(verdict.report)
    if args.train and not hunting:
        if verdict.status not in ("right", "wrong"):
            print(f"(--train needs a {ex.function} that runs: fix it first)")
        else:
            if not verdict.right:
                print("-- it is wrong, and it runs: here is what it does, beside the library's")
            if _train(ex, module, path, args) != 0:
                return 1
    return 0 if verdict.right else 1


def _hunt(args, path) -> bool:
    """The bug hunt's run (--train) and the doctor on it (--doctor); False when there is no answer to
    grade yet."""
    run = train.open_run(args.out, args.seed, args.device, args.dtype)
    if args.train:
        print(bug_hunt.train_hunt(run, hunt=args.hunt))
    if args.doctor:
        print(bug_hunt.doctor(run, args.hunt))
    if not path.is_file():
        print(f"Then name the bug in {path} (python -m minidpo grade --start {args.dir} writes it).")
    return path.is_file()


def _load(ex, path):
    """(the learner's module, None), or (None, the verdict on a file that does not load)."""
    try:
        module = load_module(path)
    except LearnerError as e:
        return None, Verdict(ex.name, "error", f"{ex.name}: {e}")
    if not callable(getattr(module, ex.function, None)):
        raise UsageError(f"grade: {path} defines no function {ex.function} (the exercise {ex.name} asks for it)")
    return module, None


def _start(folder) -> int:
    written = start(folder)
    for path, new in written:
        print(f"{'wrote' if new else 'kept '} {path}" + ("" if new else " (it exists: your work is not overwritten)"))
    where = "" if str(Path(folder)) == "exercises" else f" --dir {folder}"
    print(f"Write each function, then grade it: python -m minidpo grade NAME{where} (the names: "
          f"python -m minidpo grade --list; all at once: python -m minidpo grade all{where or ' --dir exercises'})")
    return 0


def _train(ex, module, path, args) -> int:
    run = train.open_run(args.out, args.seed, args.device, args.dtype)
    fn = ex.function
    try:
        rows = ex.train(run, train.learner(module, fn), hunt=args.hunt)
    except (RunFolderError, CheckpointError, WriteError, PreferenceFileError):
        raise  # the run folder's trouble, not the learner's: one `error:` line from the CLI
    except Exception as e:  # the learner's function failed inside training
        mine = where(e, path) != str(path)
        if isinstance(e, FloatingPointError) and not mine:
            print(f"{ex.name}: training with your {fn} stopped: {e}")
        elif mine:
            print(f"{ex.name}: your {fn} raised {type(e).__name__} at {where(e, path)} during training: {e}")
        else:
            print(f"{ex.name}: training with your {fn} failed: {type(e).__name__}: {e} (grade it first: its outputs' "
                  "shapes and dtypes must be the library's)")
        return 1
    print((ex.train_table or train.table)(rows))
    return 0


def grade_all(folder: Path, as_json: bool, hunt: int = 0) -> int:
    """Every exercise's file in `folder` graded: one row each (a lecturer's table)."""
    if not folder.is_dir():
        raise UsageError(f"grade all: no folder {folder} (--dir names the folder of a student's files)")
    rows = []
    for ex in EXERCISES:
        path = folder / file_name(ex)
        if not path.is_file():
            rows.append(_row(ex, path, Verdict(ex.name, "missing", f"{ex.name}: no file {path}")))
            continue
        try:
            module, verdict = _load(ex, path)
        except UsageError as e:
            verdict = Verdict(ex.name, "missing", str(e))
        if verdict is None:
            verdict = grade_function(ex, getattr(module, ex.function), path, hunt=hunt)
        rows.append(_row(ex, path, verdict))
    right = sum(r["right"] for r in rows)
    if as_json:
        print(json.dumps({"folder": str(folder), "right": right, "total": len(rows), "exercises": rows}, indent=1,
                         ensure_ascii=False))
    else:
        print(f"{'exercise':22s} {'tier':8s} {'status':12s} classic mistake named")
        for r in rows:
            print(f"{r['exercise']:22s} {r['tier']:8s} {r['status']:12s} {', '.join(r['mistakes']) or '-'}")
        print(f"{right} of {len(rows)} right ({folder})")
    return 0 if right == len(rows) else 1


def _row(ex, path, verdict: Verdict) -> dict:
    return {"exercise": ex.name, "function": ex.function, "tier": ex.tier, "file": str(path),
            "status": verdict.status, "right": verdict.right, "mistakes": verdict.mistakes,
            "message": verdict.report.splitlines()[0]}
