"""Provenance: every stage records what it was computed from, and is reused only when that is unchanged.

A stage's *key* is everything that decides its outputs:

    {"config": the stage's settings (the seed included), "dtype": "fp32" or "bf16",
     "inputs": {role: content hash of the file it read (the SFT checkpoint, the preference data ...)},
     "code":   {module: hash of the minidpo source it reaches (code_deps.py: definitions, not files)}}

When a stage finishes, FOLDER/provenance/NAME.json records its key, the hash of every output, where
each input came from, when it finished and how long it took. A stage is *current* when that record
exists, its key equals the key it would be computed with now, and every output still has its
recorded hash. So a changed flag, another data file, a replaced checkpoint, a hand-edited output or
an edited loss function each make exactly the stages that depend on them stale, and nothing else.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..checkpoint import CheckpointError, file_hash, input_hash, read_json, write_json
from .code_deps import code_hashes, entries_for_config

def make_key(config: dict, dtype: str, inputs: dict, code: str) -> dict:
    """inputs: role -> a file Path (hashed here) or a precomputed hash string. code: the module
    that computes the stage; the key holds what of minidpo's source it reaches (code_deps.py)."""
    return {"config": config, "dtype": dtype,
            "inputs": {role: v if isinstance(v, str) else input_hash(v) for role, v in sorted(inputs.items())},
            "code": code_hashes(code, *entries_for_config(config))}


def record_path(folder, name: str) -> Path:
    return Path(folder) / "provenance" / f"{name}.json"


def read_record(folder, name: str) -> dict | None:
    """The record of stage `name`, or None when there is none (or it is unreadable: then the stage
    is simply recomputed, as if it had never run)."""
    path = record_path(folder, name)
    if not path.is_file():
        return None
    try:
        rec = read_json(path, required=("key", "outputs"))
    except CheckpointError:
        return None
    return rec if isinstance(rec["outputs"], dict) and isinstance(rec["key"], dict) else None


def why_stale(folder, name: str, key: dict | None = None) -> str | None:
    """None when stage `name` in `folder` is current; otherwise the reason, in words.
    With `key`, the recorded key must equal it; without, the recorded inputs must still have their
    recorded hashes (so a stage whose input file was replaced afterwards is stale too)."""
    rec = read_record(folder, name)
    if rec is None:
        return "no provenance record"
    if key is not None and rec["key"] != key:
        return "inputs changed: " + describe_change(rec["key"], key)
    for out, h in rec["outputs"].items():
        path = Path(folder) / out
        if not path.is_file():
            return f"{out} is missing"
        if file_hash(path) != h:
            return f"{out} was changed after the {name} stage wrote it"
    if key is None:
        for role, src in rec.get("sources", {}).items():
            path = Path(folder) / src
            if not path.is_file():
                return f"its input {src} is gone"
            if input_hash(path) != rec["key"]["inputs"].get(role):
                return f"its input {src} was replaced after it ran"
    return None


def describe_change(old: dict, new: dict) -> str:
    """What differs between two keys, e.g. "config beta 0.5 -> 0.1, inputs train_data"."""
    parts = []
    oc, nc = old.get("config", {}), new.get("config", {})
    changed = [k for k in sorted(set(oc) | set(nc)) if oc.get(k) != nc.get(k)]
    if changed:
        parts.append("config " + ", ".join(f"{k} {oc.get(k)} -> {nc.get(k)}" for k in changed[:4]))
    if old.get("dtype") != new.get("dtype"):
        parts.append(f"dtype {old.get('dtype')} -> {new.get('dtype')}")
    for field in ("inputs", "code"):
        o, n = old.get(field, {}), new.get(field, {})
        roles = [r for r in sorted(set(o) | set(n)) if o.get(r) != n.get(r)]
        if roles:
            parts.append(f"{field} " + ", ".join(roles))
    return "; ".join(parts) or "format of the record"


def write_record(folder, name: str, key: dict, outputs, sources: dict, seconds: float, device: str,
                 peak_memory_mb: float | None = None) -> dict:
    """Record that stage `name` made `outputs` (paths inside `folder`) from `key`; `sources`
    (role -> path) says where each input file came from, for the report."""
    folder = Path(folder)
    rec = {"key": key,
           "outputs": {_rel(folder, p): file_hash(p) for p in outputs},
           "sources": {role: _rel(folder, p) for role, p in sources.items()},
           "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": seconds, "device": device,
           "peak_memory_mb": peak_memory_mb}
    write_json(record_path(folder, name), rec)
    return rec


def _rel(folder: Path, path) -> str:
    """A path inside the folder relative to it (so a folder can be moved or copied); others absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def short(h: str | None) -> str:
    """The first 12 hex digits of a hash, as the report prints it."""
    return (h or "-")[:12]
