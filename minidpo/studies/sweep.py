"""Policies trained at several β, shared by the frontier, diversity and failure-modes studies.

`trained(run, method, beta, ...)` returns the checkpoint of DPO, RLHF (REINFORCE on the run's
reward model) or PPO (on the same reward model) trained from the run's SFT model with that β and
otherwise default settings. Each is
a provenance-keyed unit in RUN/sweeps/ (`run.cached`): trained once, reused while its settings and
input files are unchanged. The pipeline's own policy is used when it was trained with exactly these
settings on exactly these files.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from ..dpo import DPOConfig, train_dpo
from ..ppo import PPOConfig, train_ppo
from ..rlhf import RLHFConfig, train_rlhf

CONFIGS = {"dpo": DPOConfig, "rlhf": RLHFConfig, "ppo": PPOConfig}
RL_TRAINERS = {"rlhf": train_rlhf, "ppo": train_ppo}


def folder(run) -> Path:
    return run.out / "sweeps"


def trained(run, method: str, beta: float, **overrides) -> Path:
    """The final checkpoint of `method` ("dpo", "rlhf" or "ppo") trained at `beta` (and `overrides`)."""
    if method not in CONFIGS:
        raise ValueError(f"method must be one of {', '.join(CONFIGS)}, not {method!r}")
    cfg = replace(run.settings(CONFIGS[method]), beta=beta, **overrides)
    inputs = run.inputs(method)
    key = cfg.key() if method == "dpo" else asdict(cfg)
    if run.is_current(method, key, inputs):
        return run.path(f"{method}.pt")
    name = f"{method}_beta{beta}" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    out = folder(run)

    def go():
        if method == "dpo":
            train_dpo(cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], out, run.device,
                      run.dtype, quiet=True, out_name=name)
        else:
            RL_TRAINERS[method](cfg, run.tok, inputs["sft"], inputs["reward_model"], out, run.device, run.dtype,
                                quiet=True, out_name=name)
    files = [out / f"{name}{suffix}" for suffix in (".pt", ".json", "_metrics.json")]
    run.cached(name, key, inputs, go, outputs=files, code=method, folder=out)
    return files[0]


def evaluate(run, checkpoint) -> dict:
    """The scalar evaluation of a checkpoint on the held-out films (against SFT)."""
    from ..evaluate import summary_row
    policy = run.load_policy(checkpoint)
    return summary_row(run.evaluate(policy))
