"""Checkpoints: a plain `state_dict` (.pt) plus a JSON config beside it, written atomically.

Atomic = write to a temporary file in the same folder, then `os.replace` it over the target, so an
interrupted run never leaves a half-written file. Loading uses `torch.load(weights_only=True)`:
no pickled code is ever executed. Every failure is a `CheckpointError` that names the file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    pass


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(obj):
    """JSON has no NaN/inf: write them as null rather than produce an unreadable file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path, obj) -> None:
    text = json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def save_checkpoint(path, state_dict: dict, config: dict) -> None:
    """`path` is the .pt file; the config goes to the same name with .json."""
    path = Path(path)
    atomic_write(path, lambda f: torch.save(state_dict, f))
    write_json(path.with_suffix(".json"), config)


def load_checkpoint(path, map_location="cpu") -> tuple[dict, dict]:
    """(state_dict, config) or a CheckpointError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (run the stage that writes it first)")
    config = read_json(path.with_suffix(".json"))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled objects ... all end here
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state, config


def load_gpt(path, device="cpu", vocab_size: int | None = None):
    """A GPT from `path` (.pt + .json). `vocab_size`: the tokenizer's, checked against the config."""
    from .model import GPT, GPTConfig
    state, config = load_checkpoint(path)
    try:
        cfg = GPTConfig(**config["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{Path(path).with_suffix('.json')}: no valid 'model' config ({e})") from None
    if vocab_size is not None and cfg.vocab_size != vocab_size:
        raise CheckpointError(f"{path}: model vocab_size {cfg.vocab_size} does not match the "
                              f"tokenizer's {vocab_size} (trained with other merges?)")
    model = GPT(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its config ({first})") from None
    return model.to(device), config
