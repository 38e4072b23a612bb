"""Policies trained at several β, shared by the frontier, diversity and failure-modes studies.

`trained(run, method, beta, ...)` returns the checkpoint of DPO or RLHF (REINFORCE on the run's
reward model) trained from the run's SFT model with that β and otherwise default settings. Each is
a provenance-keyed unit in RUN/sweeps/ (`run.cached`): trained once, reused while its settings and
input files are unchanged. With no intermediate checkpoints asked for, the pipeline's own policy
is used when it was trained with exactly these settings on exactly these files.
"""
from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

from .checkpoint import read_json
from .dpo import DPOConfig, train_dpo
from .rlhf import RLHFConfig, train_rlhf

CONFIGS = {"dpo": DPOConfig, "rlhf": RLHFConfig}


def folder(run) -> Path:
    return run.out / "sweeps"


def trained(run, method: str, beta: float, checkpoints: int = 0, **overrides) -> dict[int, Path]:
    """{step: checkpoint path} for `method` ("dpo" or "rlhf") at `beta`, the last step included;
    `checkpoints` > 0 also keeps that many intermediate checkpoints along training."""
    if method not in CONFIGS:
        raise ValueError(f"method must be 'dpo' or 'rlhf', not {method!r}")
    cfg = replace(run.settings(CONFIGS[method]), beta=beta, **overrides)
    inputs = run.inputs(method)
    if not checkpoints and run.is_current(method, asdict(cfg), inputs):
        return {read_json(run.path(f"{method}_metrics.json"))["steps"]: run.path(f"{method}.pt")}
    name = f"{method}_beta{beta}" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    out = folder(run)

    def go():
        if method == "dpo":
            every = max(1, _dpo_steps(run, cfg) // (checkpoints + 1)) if checkpoints else 0
            train_dpo(cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], out, run.device,
                      run.dtype, quiet=True, out_name=name, checkpoint_every=every)
        else:
            every = max(1, cfg.steps // (checkpoints + 1)) if checkpoints else 0
            train_rlhf(cfg, run.tok, inputs["sft"], inputs["reward_model"], out, run.device, run.dtype,
                       quiet=True, out_name=name, checkpoint_every=every)
    run.cached(name, {**asdict(cfg), "checkpoints": checkpoints}, inputs, go,
               outputs=lambda: _files(out, name), code=method, folder=out)
    last = read_json(out / f"{name}_metrics.json")["steps"]
    return {**{s: out / f"{name}_step{s}.pt" for s in _steps(out, name) if s < last}, last: out / f"{name}.pt"}


def evaluate(run, checkpoint) -> dict:
    """The scalar evaluation of a checkpoint on the held-out films (against SFT)."""
    from .evaluate import summary_row
    policy = run.load_policy(checkpoint)
    return summary_row(run.evaluate(policy))


def _dpo_steps(run, cfg) -> int:
    from .preferences import read_preferences
    n = len(read_preferences(run.path("prefs_train.jsonl"))[0])
    return cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)


def _steps(out: Path, name: str) -> list[int]:
    pattern = re.compile(re.escape(name) + r"_step(\d+)\.pt")
    return sorted(int(m.group(1)) for p in out.glob(f"{name}_step*.pt") if (m := pattern.fullmatch(p.name)))


def _files(out: Path, name: str) -> list[Path]:
    """Every file one trained unit wrote: its checkpoint, metrics, log and step checkpoints."""
    files = [out / f"{name}{suffix}" for suffix in (".pt", ".json", "_metrics.json", "_log.jsonl")]
    steps = [out / f"{name}_step{s}{ext}" for s in _steps(out, name) for ext in (".pt", ".json")]
    return [f for f in files if f.is_file()] + steps
