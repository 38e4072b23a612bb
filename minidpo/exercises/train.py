"""`grade NAME --train`: the learner's function inside the real `--fast` stage that uses it, printed
beside the library's run of the same seed (gold reward, win rate, KL, fluency).

The run folder is a `--fast` one under the learner's current folder (default runs/fast, the folder
`python -m minidpo run --fast` makes): the reference stages are reused from it, or computed there
first. Each run with the learner's function is a provenance-keyed unit in RUN/exercises/NAME (its
key holds the hash of the learner's file), so grading again with an unchanged file reuses it. The
function enters training through the stage's own extension point (a function passed in, or the
loss registry), whose default is the library's function: passing the library's reproduces the
reference run bit for bit.

The training runs in a child process (`train_job`, the child's end; child.py says why), which sends
back the rows of the table, or what stopped the run. The learner's function is watched there: its
first NaN or ±inf output stops the run with a message naming the function and that output (not the
pipeline's hyper-parameters, whose advice would send the learner to the wrong place).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

from .. import losses
from ..checkpoint import CheckpointError, WriteError, read_json, write_json
from ..evaluate import summary_row
from ..harness.runfolder import Run, RunFolderError
from ..harness.stages import ensure
from ..preferences import PreferenceFileError
from .child import load_module, where


@dataclass
class Learner:
    fn: Callable          # the learner's function
    path: Path            # their file
    module: ModuleType    # the file, loaded
    digest: str           # sha256 of the file's bytes: what the units are keyed by


def learner(module: ModuleType, function: str, watch=None) -> Learner:
    """The learner's function of `module`; with `watch` (its Exercise), checked for NaN and ±inf."""
    path = Path(module.__file__)
    fn = getattr(module, function)
    return Learner(watched(fn, watch) if watch else fn, path, module, hashlib.sha256(path.read_bytes()).hexdigest()[:16])


class NonFinite(Exception):
    """The learner's function returned NaN or ±inf inside training (the message says where)."""


def watched(fn: Callable, ex) -> Callable:
    """`fn`, stopping at its first non-finite output with the element, its index, and what the
    library's function gives on the same inputs."""
    def checked(*args):
        out = fn(*args)
        for i, (name, x) in enumerate(zip(ex.outputs, out if len(ex.outputs) > 1 else (out,))):
            if torch.is_tensor(x) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise NonFinite(_non_finite(ex, args, i, name, x))
        return out
    return checked


def _non_finite(ex, args, i: int, name: str, x) -> str:
    at = tuple((~torch.isfinite(x.detach())).nonzero()[0].tolist())
    text = (f"it returned {x.detach()[at].item()} in {name}" + (f" at {list(at)}" if at else "")
            + f" (its first non-finite output, of {x.numel()} values; in shape {tuple(x.shape)})")
    try:
        with torch.no_grad():
            theirs = ex.solution(*(a.detach() if torch.is_tensor(a) else a for a in args))
        ref = theirs if len(ex.outputs) == 1 else theirs[i]
        text += f"; the library's {ex.function} gives {ref[at].item():.4f} there, on the same inputs"
    except Exception:  # a shape the library's function does not take: the message stands without it
        pass
    return text + (". The run's settings are not the cause: grade it (python -m minidpo grade "
                   f"{ex.name}) and look for the case whose output is not finite.")


def open_run(out, seed: int, device: str = "auto", dtype: str = "auto") -> Run:
    """The --fast run folder the reference stages live in (made or checked here)."""
    run = Run.create(out, seed, fast=True, device=device, dtype=dtype, quiet=True)
    run.claim_folder()
    return run


def reference(run: Run, stage: str) -> dict:
    """The evaluation of the pipeline's own `stage` (dpo, rlhf, ppo, grpo), made first when missing."""
    ensure(run, f"eval_{stage}")
    return summary_row(read_json(run.path(f"eval_{stage}.json")))


def learner_unit(run: Run, name: str, config, learner: Learner, train: Callable, inputs: dict, code: str,
                 what: str) -> dict:
    """`train(folder)` -> (checkpoint, notes) with the learner's function, then the checkpoint evaluated
    like every policy (`Run.evaluate`); both cached as one unit keyed by `config`, the inputs, the
    code and the learner's file. Returns the evaluation (plus the notes)."""
    folder = run.out / "exercises" / name
    folder.mkdir(parents=True, exist_ok=True)

    def go():
        checkpoint, notes = train(folder)
        write_json(folder / "eval.json", {**summary_row(run.evaluate(run.load_policy(checkpoint))), **notes})
    config = asdict(config) if is_dataclass(config) else config
    announced(f"{what} (in {folder})", lambda: run.cached(
        f"exercise_{name}", {**config, "learner": learner.digest}, inputs, go, outputs=[folder / "eval.json"],
        code=code, folder=folder, announce=False))
    return read_json(folder / "eval.json")


def announced(what: str, compute: Callable):
    """compute(), between a line saying what runs and one saying how long it took."""
    print(f"-- {what} ...", flush=True)
    t0 = time.perf_counter()
    out = compute()
    seconds = time.perf_counter() - t0
    print("   reused: nothing it depends on has changed" if out is False and seconds < 1
          else f"   done in {seconds:.1f}s", flush=True)
    return out


def keyed_by_file(loss: losses.Loss, learner: Learner) -> losses.Loss:
    """A registered loss whose fingerprint (its training's key) is the learner's whole file: an edit
    to a helper of their function retrains it too."""
    return replace(loss, source=learner.module)


@contextlib.contextmanager
def temporary_loss(name: str):
    """A loss registered for this run only (the registry is what the loss bench iterates)."""
    try:
        yield name
    finally:
        losses.LOSSES.pop(name, None)


COLUMNS = (("gold_reward", "gold", "{:+.3f}"), ("win_rate_vs_sft", "win vs SFT", "{:.3f}"),
           ("kl_to_ref", "KL to ref", "{:.2f}"), ("fluency", "fluency", "{:.3f}"), ("length", "length", "{:.1f}"))


def table(rows: list[tuple[str, dict]]) -> str:
    """Runs side by side, one line each, then the notes a run carries."""
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{title:>10}" for _, title, _ in COLUMNS)]
    for label, row in rows:
        lines.append(f"{label:{width}}  " + "  ".join(f"{fmt.format(row[key]):>10}" for key, _, fmt in COLUMNS))
    lines += [f"{label}: {row['note']}" for label, row in rows if row.get("note")]
    return "\n".join(lines)


def train_job(job: dict, find) -> dict:
    """The child's end of --train: the learner's file loaded here and run inside the stage. Returns
    {"rows": the table's rows}, {"failed": the message} or {"usage": the run folder's trouble}."""
    ex, path, shown = find(job["exercise"]), Path(job["path"]), job["shown"]
    fn = ex.function
    try:
        run = open_run(job["out"], job["seed"], job["device"], job["dtype"])
        rows = ex.train(run, learner(load_module(path), fn, watch=ex), hunt=job["hunt"])
    except (RunFolderError, CheckpointError, WriteError, PreferenceFileError) as e:
        return {"usage": str(e)}  # the run folder's trouble, not the learner's: one `error:` line from the CLI
    except NonFinite as e:
        return {"failed": f"{ex.name}: training stopped inside your {fn}: {e}"}
    except BaseException as e:  # noqa: B036 - the learner's function failed (or exited) inside training
        mine = where(e, shown) != shown
        if isinstance(e, FloatingPointError) and not mine:
            return {"failed": f"{ex.name}: training with your {fn} stopped: {e}"}
        if mine:
            return {"failed": f"{ex.name}: your {fn} raised {type(e).__name__} at {where(e, shown)} during training: {e}"}
        return {"failed": f"{ex.name}: training with your {fn} failed: {type(e).__name__}: {e} (grade it first: its "
                          "outputs' shapes and dtypes must be the library's)"}
    return {"rows": json.loads(json.dumps(rows, default=float))}  # plain data for the pipe
