"""`python -m minidpo grade`: list the exercises, write the stubs, grade one function, a folder (`all`)
or a class (`class ROOT`, gradebook.py), run one in the pipeline (`--train`). Exit code 0 when right,
1 when wrong (or not written, or an error), 2 for a usage error (one `error:` line, from the CLI).
The learner's code runs in a child process (child.py); this process decides. The flags are parsed in
harness/cli.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import bug_hunt, train
from .catalogue import EXERCISES, file_name, find, listing
from .child import Child
from .gradebook import grade_class, row
from .grader import UsageError, Verdict, grade_files
from .stubs import start

TRAIN_LIMIT = 30 * 60  # seconds for one --train (a --fast stage or two, and their evaluations)


def grade(args) -> int:
    if args.list:
        print(listing())
        return 0
    if args.start:
        return _start(args.start)
    if not args.name:
        raise UsageError("grade: name an exercise (python -m minidpo grade --list), or `all`, or `class ROOT`, "
                         "or --start DIR")
    if (args.root is not None) != (args.name == "class"):
        raise UsageError("grade class ROOT: ROOT is the folder of the students' folders" if args.name == "class"
                         else f"grade {args.name}: one name at a time (`grade class ROOT` takes a folder)")
    if args.exercises and args.name != "class":
        raise UsageError("grade: --exercises goes with `grade class`")
    if args.name in ("all", "class"):
        if args.file or args.train or args.doctor:
            raise UsageError(f"grade {args.name}: --file, --train and --doctor take one exercise")
        if args.name == "class":
            chosen = [find(n.strip()) for n in args.exercises.split(",") if n.strip()] if args.exercises else None
            return grade_class(Path(args.root), chosen or list(EXERCISES), args.time_limit, args.json, args.hunt)
        return grade_all(Path(args.dir), args.json, args.time_limit, args.hunt)
    ex = find(args.name)
    if args.json or (args.doctor and ex is not bug_hunt.BUG_HUNT):
        raise UsageError("grade: " + ("--json goes with `grade all` and `grade class`" if args.json
                                      else "--doctor goes with bug-hunt"))
    hunting = ex is bug_hunt.BUG_HUNT and (args.train or args.doctor)
    path = Path(args.file) if args.file else Path(args.dir) / file_name(ex)
    if not path.is_file() and (args.file or not hunting):
        raise UsageError(f"grade: no file {path}" + (" (a folder)" if path.is_dir() else "") + (
            "" if args.file else ": write the stubs first (python -m minidpo grade --start"
            + ("" if args.dir == "exercises" else f" {args.dir}") + ")"))
    if hunting and not _hunt(args, path):
        return 1
    verdict, = grade_files([(ex, path)], args.time_limit, hunt=args.hunt)
    if verdict.status == "missing":
        raise UsageError(f"grade: {verdict.report.split(': ', 1)[1]} (the exercise {ex.name} asks for it)")
    print(verdict.report)
    print(printed(verdict, path), end="")
    if args.train and not hunting:
        if verdict.status not in ("right", "wrong"):
            print(f"(--train needs a {ex.function} that runs: fix it first)")
        else:
            if not verdict.right:
                print("-- it is wrong, and it runs: here is what it does, beside the library's")
            if _train(ex, path, args) != 0:
                return 1
    return 0 if verdict.right else 1


def printed(verdict: Verdict, path) -> str:
    """What the learner's code printed while graded, under its own heading ('' when nothing)."""
    if not verdict.output:
        return ""
    body = "\n".join("  | " + line for line in verdict.output.rstrip("\n").splitlines())
    return f"What {path} printed while graded (stdout and stderr):\n{body}\n"


def _hunt(args, path) -> bool:
    """The bug hunt's run (--train) and the doctor on it (--doctor); False when there is no answer to
    grade yet. No learner code runs here: the hunt's run is the library's, with a bug planted."""
    run = train.open_run(args.out, args.seed, args.device, args.dtype)
    if args.train:
        print(bug_hunt.train_hunt(run, hunt=args.hunt))
    if args.doctor:
        print(bug_hunt.doctor(run, args.hunt))
    if not path.is_file():
        print(f"Then name the bug in {path} (python -m minidpo grade --start {args.dir} writes it).")
    return path.is_file()


def _start(folder) -> int:
    written = start(folder)
    for path, new in written:
        print(f"{'wrote' if new else 'kept '} {path}" + ("" if new else " (it exists: your work is not overwritten)"))
    where = "" if str(Path(folder)) == "exercises" else f" --dir {folder}"
    print(f"Write each function, then grade it: python -m minidpo grade NAME{where} (the names: "
          f"python -m minidpo grade --list; all at once: python -m minidpo grade all{where or ' --dir exercises'})")
    return 0


def _train(ex, path: Path, args) -> int:
    """The learner's function in the --fast stage, in a child process whose output is shown live."""
    job = {"kind": "train", "exercise": ex.name, "path": str(path.resolve()), "shown": str(path), "out": args.out,
           "seed": args.seed, "device": args.device, "dtype": args.dtype, "hunt": args.hunt}
    with Child(relay=lambda line: print(line, end="", flush=True)) as child:
        reply = child.run(job, TRAIN_LIMIT)
    if reply.kind == "time":
        print(f"{ex.name}: training with your {ex.function} did not finish within {TRAIN_LIMIT // 60} minutes")
        return 1
    if reply.kind != "result":
        print(f"{ex.name}: the process training with your {ex.function} ended (exit code {reply.returncode}) before "
              "it finished: os._exit, a crash, or out of memory")
        return 1
    result = reply.result
    if "usage" in result:
        raise UsageError(result["usage"])
    if "failed" in result:
        print(result["failed"])
        return 1
    print((ex.train_table or train.table)(result["rows"]))
    return 0


def grade_all(folder: Path, as_json: bool, time_limit: float, hunt: int = 0) -> int:
    """Every exercise's file in `folder` graded (one child process): one row each (a lecturer's table)."""
    if not folder.is_dir():
        raise UsageError(f"grade all: no folder {folder} (--dir names the folder of a student's files)")
    files = [(ex, folder / file_name(ex)) for ex in EXERCISES]
    rows = [row(ex, path, v) for (ex, path), v in zip(files, grade_files(files, time_limit, hunt=hunt))]
    right = sum(r["right"] for r in rows)
    if as_json:
        print(json.dumps({"folder": str(folder), "right": right, "total": len(rows), "exercises": rows}, indent=1,
                         ensure_ascii=False))
    else:
        print(f"{'exercise':22s} {'tier':8s} {'status':12s} mistakes named (or the error's cause)")
        for r in rows:
            print(f"{r['exercise']:22s} {r['tier']:8s} {r['status']:12s} "
                  f"{', '.join(r['mistakes'] + r['flags']) or r['cause'] or '-'}")
        print(f"{right} of {len(rows)} right ({folder})")
        for r in rows:
            if r["output"]:
                print(printed(Verdict(r["exercise"], r["status"], "", output=r["output"]), r["file"]), end="")
    return 0 if right == len(rows) else 1
