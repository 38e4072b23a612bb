"""`grade NAME --train`: the learner's function inside the real `--fast` stage that uses it, printed
beside the library's run of the same seed (gold reward, win rate, KL, fluency).

The run folder is a `--fast` one under the learner's current folder (default runs/fast, the folder
`python -m minidpo run --fast` makes): the reference stages are reused from it, or computed there
first. Each run with the learner's function is a provenance-keyed unit in RUN/exercises/NAME (its
key holds the hash of the learner's file), so grading again with an unchanged file reuses it. The
function enters training through the stage's own extension point (a function passed in, or the
loss registry), whose default is the library's function: passing the library's reproduces the
reference run bit for bit.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Callable

from .. import losses
from ..checkpoint import read_json, write_json
from ..evaluate import summary_row
from ..harness.runfolder import Run
from ..harness.stages import ensure


@dataclass
class Learner:
    fn: Callable          # the learner's function
    path: Path            # their file
    module: ModuleType    # the file, loaded
    digest: str           # sha256 of the file's bytes: what the units are keyed by


def learner(module: ModuleType, function: str) -> Learner:
    path = Path(module.__file__)
    return Learner(getattr(module, function), path, module, hashlib.sha256(path.read_bytes()).hexdigest()[:16])


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
