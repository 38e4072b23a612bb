"""Checkpoints: a plain `state_dict` (.pt) plus a JSON config beside it, written atomically.

Atomic = write to a temporary file `.NAME.*.tmp` in the same folder, then `os.replace` it over the
target, so an interrupted run never leaves a half-written file (a run killed mid-write leaves only
the temporary file, which the next start removes: `remove_stale_temporaries`). Every file we write
goes through `atomic_write` and gets ordinary permissions (0666 minus the umask, usually 0644).
Loading uses `torch.load(weights_only=True)`: no pickled code is ever executed. Every failure is a
`CheckpointError` that names the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    pass


TMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    """0666 minus the process umask: what `open()` would give (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class WriteError(OSError):
    """A file that could not be written (a full disk, a quota, no permission); `path` is untouched."""

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}; the file as it was is untouched"


def _write_error(path: Path, e: BaseException) -> WriteError:
    """One WriteError for every way a write fails: an OSError from Python's own writes, or the
    RuntimeError torch.save raises from C++ when a write inside it fails (the OSError it hit, if
    any, is its __context__)."""
    cause = e if isinstance(e, OSError) else e.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return WriteError(cause.errno, cause.strerror, str(path))
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return WriteError(None, f"the write failed ({first}); is the disk full?", str(path))


def atomic_write(path: Path, write) -> None:
    """Call write(binary file) on a temporary file beside `path`, then rename it over `path`.
    Any failure to write (a full disk inside torch.save included) is a WriteError naming `path`,
    with `path` as it was and no temporary file left. Under torchrun only rank 0 writes (the
    others hold the same numbers)."""
    from .distributed import is_main
    if not is_main():
        return
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, WriteError):
            raise _write_error(path, e) from None
        raise


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete `.NAME.*.tmp` files that a killed run left behind under `folder`; return them."""
    stale = [p for p in Path(folder).rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


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


def write_jsonl(path, records: list[dict]) -> None:
    """One JSON object a line, non-finite floats as null; atomic, so valid at every instant."""
    text = "".join(json.dumps(_clean(r)) + "\n" for r in records)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def read_json(path, required: tuple[str, ...] = ()) -> dict:
    """A JSON object from `path`; a missing file, invalid JSON, another type than an object, or a
    missing `required` key is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]!r} (edited by hand? re-run the stage that wrote it)")
    return obj


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
        # torch's own message suggests weights_only=False: never the right advice for a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}); delete it and "
                              "re-run the stage that writes it") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state, config


def model_config(config: dict, path, vocab_size: int | None = None):
    """The GPTConfig stored in a checkpoint's JSON, validated; `vocab_size` (the tokenizer's) must
    match it. Errors name the file."""
    from .model import GPTConfig
    try:
        cfg = GPTConfig(**config["model"]).validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(path).with_suffix('.json')}: no valid 'model' config ({e})") from None
    if vocab_size is not None and cfg.vocab_size != vocab_size:
        raise CheckpointError(f"{path}: model vocab_size {cfg.vocab_size} does not match the "
                              f"tokenizer's {vocab_size} (trained with other merges?)")
    return cfg


def load_gpt(path, device="cpu", vocab_size: int | None = None):
    """A GPT from `path` (.pt + .json). `vocab_size`: the tokenizer's, checked against the config."""
    from .model import GPT
    state, config = load_checkpoint(path)
    model = GPT(model_config(config, path, vocab_size))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its config ({first})") from None
    return model.to(device), config


_hashes: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: each file is read once per process


def file_hash(path) -> str:
    """sha256 of a file's bytes (hex)."""
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hashes[memo] = h.hexdigest()
    return _hashes[memo]


def input_hash(path) -> str:
    """The content hash of an input. A checkpoint is its .pt AND the .json beside it (the model's
    shape lives there), so both are hashed together."""
    path = Path(path)
    if path.suffix == ".pt" and path.with_suffix(".json").is_file():
        return hashlib.sha256((file_hash(path) + file_hash(path.with_suffix(".json"))).encode()).hexdigest()
    return file_hash(path)
