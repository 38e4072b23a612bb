"""What every lesson uses besides the library: its run folder, its *Try* knobs, its figures.

- `tutorial_run("NN: title")` reads `--fast`, `--out`, `--seed` and `--device` (a notebook kernel's
  own arguments are ignored), claims the folder and returns the `Run`. A notebook runs exactly what
  the script runs: the same lecture-sized defaults on a CPU or a GPU (`MINIDPO_FAST=1` asks for the
  tiny settings, as `--fast` does for a script). Torch is pinned to 2 threads (`MINIDPO_THREADS`
  changes it): a reduction split over another number of threads rounds differently, a training run
  drifts from there, and the committed notebooks' numbers could not be compared with yours.
- `knobs = lesson_knobs(beta=0.5, ...)`: the values a lesson's *Try* asks you to change. Edit them
  in the cell and re-run the lesson from there, or pass `--set beta=0.05` to the script; the tests
  run every *Try* this way.
- `show(fig)`: the figure as an image in a notebook (it is saved as a PNG in both cases).
- `claim("DPO's margin grows", margin_end > margin_start, start=..., end=...)`: a sentence about this
  run's numbers, printed with the numbers it rests on and ✓, or ✗ and "does not hold with these
  settings". A learner who turns a knob sees which sentences their run no longer supports; the
  tests run every lesson at its defaults and fail on any ✗. `claim_paired` does the same for a
  comparison of two methods paired by seed (`harness.compare`: "above", "below" or "no measurable
  difference", from the 95 % interval of the paired difference).
- `saved_study(run, "frontier/frontier.json")`: a long study's saved result, which a lesson shows
  instead of running the study (in the lesson's folder, or in `runs/default`); `study_result`
  runs the study or reads that, as the lesson's `full_study` knob says.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from .compare import Difference, paired
from .runfolder import Run


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (a notebook: Jupyter, VS Code, Colab), not as a script? Asked of
    the running IPython shell: `ipykernel` merely imported (a kernel manager looks up its spec) is
    not a kernel, and neither is a terminal IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


LESSON_THREADS = 2  # the thread count the committed notebooks were executed with


def tutorial_run(description: str):
    """The Run a tutorial script works in: `--fast`, `--out`, `--seed`, `--device` from the command
    line (unknown arguments, such as a notebook kernel's, are ignored; MINIDPO_FAST=1 is `--fast`).
    Sets torch's thread count to MINIDPO_THREADS, default `LESSON_THREADS` (see the module docstring)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help="run folder (default: runs/tutorial, or runs/tutorial-fast)")
    p.add_argument("--fast", action="store_true", help="tiny configs, seconds instead of minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args, _ = p.parse_known_args()
    args.fast = args.fast or os.environ.get("MINIDPO_FAST") == "1"
    threads = os.environ.get("MINIDPO_THREADS", str(LESSON_THREADS))
    if not threads.isdigit() or int(threads) < 1:
        raise SystemExit(f"error: MINIDPO_THREADS={threads}: expected a whole number ≥ 1")
    torch.set_num_threads(int(threads))
    CLAIMS.clear()
    out = args.out or ("runs/tutorial-fast" if args.fast else "runs/tutorial")
    run = Run.create(out, seed=args.seed, fast=args.fast, device=args.device)
    run.claim_folder()
    return run


# --- claims: sentences about this run's numbers, checked by the run -------------------------------
HOLDS, FAILS = "✓", "✗"
CLAIMS: list[dict] = []  # this lesson's claims, in order: {"text", "holds", "numbers"}


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4g}" if value == value else "nan"


def failed_claims(out: str) -> list[str]:
    """The claims a lesson's printed output marks ✗ (its lines that start with FAILS)."""
    return [line for line in out.splitlines() if line.startswith(FAILS + " ")]


def claim(text: str, holds, **numbers) -> bool:
    """Print `text`, a sentence about this run's numbers, with `numbers` (the values it rests on) and ✓
    when `holds`, else ✗ and "does not hold with these settings". Never raises: a knob that turns a
    sentence false shows it. Returns whether it held."""
    holds = bool(holds)
    shown = ", ".join(f"{k} = {_number(v)}" for k, v in numbers.items())
    print(f"{HOLDS if holds else FAILS} {text}" + (f"  [{shown}]" if shown else "")
          + ("" if holds else "  — does not hold with these settings"))
    CLAIMS.append({"text": text, "holds": holds, "numbers": dict(numbers)})
    return holds


EXPECT = {">": "above", "<": "below", "=": "no measurable difference"}


def claim_paired(what: str, a_name: str, a, b_name: str, b, expect: str, unit: str = "") -> Difference:
    """A claim comparing two methods seed by seed (`a` and `b`: one value per seed, the same seeds in
    the same order): `expect` is ">" (a above b), "<" (a below b) or "=" (no measurable difference).
    The sentence is built from the expectation and `what` (e.g. "gold reward at KL 1"); it holds when
    the 95 % interval of the paired difference says so, and never on one seed. Returns the
    Difference."""
    d = paired(a, b)
    said = {">": f"{a_name} is above {b_name}", "<": f"{a_name} is below {b_name}",
            "=": f"no measurable difference between {a_name} and {b_name}"}[expect]
    claim(f"{what}: {said} — {a_name} − {b_name} = {d.describe(unit)}", d.verdict == EXPECT[expect],
          seeds=d.n)
    return d


def _parse_value(name: str, text: str, default):
    """`text` read as the type of the knob's default (bool: true/false/1/0)."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return type(default)(text) if default is not None else text
    except ValueError:
        raise SystemExit(f"error: --set {name}={text}: expected a {type(default).__name__}") from None


def lesson_knobs(**defaults) -> SimpleNamespace:
    """The lesson's *Try* knobs: `defaults`, with any `--set NAME=VALUE` of the command line (repeatable)
    applied. An unknown name or a value of the wrong type is one `error:` line. A changed knob is
    printed, so the output says which variant ran."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args, _ = p.parse_known_args()
    values = dict(defaults)
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or name not in defaults:
            raise SystemExit(f"error: --set {item}: this lesson's knobs are "
                             + ", ".join(f"{k}={v}" for k, v in defaults.items()))
        values[name] = _parse_value(name, text, defaults[name])
    changed = {k: v for k, v in values.items() if v != defaults[k]}
    if changed:
        print("Try variant:", ", ".join(f"{k}={v} (default {defaults[k]})" for k, v in changed.items()))
    return SimpleNamespace(**values)


SHIPPED_STUDIES = "studies"  # data/studies/: the full studies' results, committed (a wheel ships them too)


def shipped_study(name: str) -> Path | None:
    """The committed result of a full study, by the name the study writes ("frontier/frontier.json"
    is data/studies/frontier.json), or None when minidpo ships none."""
    from ..tokenizer import shipped_file
    found = shipped_file(SHIPPED_STUDIES) / Path(name).name
    return found if found.is_file() else None


def saved_study(run, name: str):
    """The saved result `name` of a long study (e.g. "frontier/frontier.json"): in the lesson's own
    folder, else in `runs/default` (the CLI's folder) when that holds the same configuration (fast,
    seed, dtype), else the committed full study (`shipped_study`); None when none has it. A lesson
    shows it instead of running the study."""
    from ..checkpoint import CheckpointError, read_json
    own, default = run.path(name), Path("runs/default")
    if own.is_file():
        return own
    if (default / name).is_file() and default.resolve() != run.out.resolve():
        try:
            config = read_json(default / "run_config.json")
        except CheckpointError:  # not a run folder (or unreadable): nothing to trust there
            config = None
        if config is not None and all(config.get(k) == v for k, v in run.folder_config().items()):
            return default / name
    return shipped_study(name)


def where_from(run, found: Path) -> str:
    """Where a saved study came from, in words a learner can act on."""
    if found == shipped_study(found.name):
        return (f"the full study committed with minidpo (data/{SHIPPED_STUDIES}/{found.name}: its default "
                "settings, seed 0, a 2-core CPU; your own run of the study takes its place)")
    return f"saved in {found.parent}"


def study_result(run, compute_now: bool, name: str, compute, what: str = "the full study"):
    """A long study's result for a lesson, and where it came from in words: `compute()` when
    `compute_now` (the lesson's `full_study` knob), else its saved result (`saved_study`: the
    lesson's folder, runs/default, or the committed study), else (None, None)."""
    from ..checkpoint import read_json
    if compute_now:
        return compute(), f"{what}, run in {run.out}"
    found = saved_study(run, name)
    return (read_json(found), f"{what} {where_from(run, found)}") if found else (None, None)


def show(fig):
    """Show `fig` in a notebook as a PNG image; in a script do nothing (the lesson saved it already).
    Our figures are built without pyplot, so a notebook would print a returned Figure as text."""
    if in_notebook():
        from IPython.display import Image, display
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        display(Image(buf.getvalue()))
    return None
