"""Policies trained at several β, shared by the frontier, diversity and over-optimisation studies.

`trained(run, method, beta, ...)` returns the checkpoint of DPO or RLHF (REINFORCE on the run's
reward model) trained from the run's SFT model with that β and otherwise default settings,
training it only if the run folder does not hold it yet (in RUN/sweeps/).
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from . import pipeline as P
from .dpo import DPOConfig, train_dpo
from .evaluate import evaluate_policy, summary_row
from .rlhf import RLHFConfig, train_rlhf


def folder(run) -> Path:
    return run.out / "sweeps"


def trained(run, method: str, beta: float, checkpoints: int = 0, **overrides) -> dict:
    """{step: checkpoint path} for `method` ("dpo" or "rlhf") at `beta`, the last step included;
    `checkpoints` > 0 also keeps that many intermediate checkpoints along training."""
    tag = "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    name = f"{method}_beta{beta}{tag}"
    out = folder(run)
    if not checkpoints and not run.force:  # the pipeline's own policy, if it was trained this way
        cfg = _config(run, method, beta, overrides)
        own = run.path(f"{method}.pt")
        if own.is_file() and P.read_json(own.with_suffix(".json")).get("train") == asdict(cfg):
            return {P.read_json(run.path(f"{method}_metrics.json"))["steps"]: own}
    final = out / f"{name}.pt"
    have = _steps(out, name)
    if run.force or not final.is_file() or len(have) < checkpoints:
        cfg = _config(run, method, beta, overrides)
        if method == "dpo":
            every = max(1, _dpo_steps(run, cfg) // (checkpoints + 1)) if checkpoints else 0
            train_dpo(cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
                      out, run.device, run.dtype, quiet=True, out_name=name, checkpoint_every=every)
        else:
            every = max(1, cfg.steps // (checkpoints + 1)) if checkpoints else 0
            train_rlhf(cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), out, run.device,
                       run.dtype, quiet=True, out_name=name, checkpoint_every=every)
        have = _steps(out, name)
    last = P.read_json(out / f"{name}_metrics.json")["steps"]
    return {**{s: out / f"{name}_step{s}.pt" for s in have if s < last}, last: final}


def _config(run, method, beta, overrides):
    if method not in ("dpo", "rlhf"):
        raise ValueError(f"method must be 'dpo' or 'rlhf', not {method!r}")
    base = {"dpo": DPOConfig, "rlhf": RLHFConfig}[method]
    return replace((base.fast if run.fast else base)(seed=run.seed), beta=beta, **overrides)


def evaluate(run, checkpoint, sft_gold) -> dict:
    policy = P.load_gpt(checkpoint, run.device, vocab_size=run.tok.vocab_size)[0].eval()
    ref = P.load_policy(run, "sft.pt")
    return summary_row(evaluate_policy(policy, ref, run.tok, run.eval_prompts(), seed=run.seed + 100,
                                       sft_gold=sft_gold, dtype=run.dtype))


def prepare(run) -> list[float]:
    """The stages every sweep needs; returns the SFT baseline's gold rewards."""
    P.stage_sft(run)
    P.stage_eval_sft(run)
    P.stage_prefs(run)
    P.stage_reward_model(run)
    return P.read_json(run.path("eval_sft.json"))["gold"]


def _dpo_steps(run, cfg) -> int:
    from .preferences import read_preferences
    n = len(read_preferences(run.path("prefs_train.jsonl"))[0])
    return cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)


def _steps(out: Path, name: str) -> list[int]:
    return sorted(int(p.stem.rsplit("_step", 1)[1]) for p in out.glob(f"{name}_step*.pt"))
