"""Stage 5: preference data — pairs sampled from the SFT model, labelled by Bradley–Terry.

For each prompt we draw K responses from the SFT model, exactly on-policy (temperature 1, no top-k),
and pair them up. A pair (y1, y2) is labelled with the Bradley–Terry model of the gold reward,

    P(y1 ≻ y2) = σ(r*(x, y1) − r*(x, y2)),

by a seeded coin flip, so labels are noisy the way human labels are: two responses of nearly equal
reward are a coin toss. A pair of identical samples cannot be compared, and a pair with an empty
sample would not pass the file checks below: both are refused and counted in the report.

Files are JSONL with keys `prompt`, `chosen`, `rejected` (TRL / Anthropic HH convention); other keys
are kept but ignored. `read_preferences` validates every line and names file and line on error.

Length rule (documented, never silent): a pair whose prompt + completion exceeds the model's context
keeps the last `block_size // 2` tokens of its prompt, then the first tokens of each completion
that fit. A completion therefore never becomes empty. Truncated pairs are counted in the report.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, asdict, field
from pathlib import Path

from . import world
from .checkpoint import atomic_write
from .data import row
from .sampling import make_generator, sample

REQUIRED_KEYS = ("prompt", "chosen", "rejected")


class PreferenceFileError(ValueError):
    """A problem with a preference file; the message names file and line."""


@dataclass
class PrefsConfig:
    train_repeats: int = 8      # each training film is prompted this many times ...
    val_repeats: int = 8        # ... and each held-out film this many times
    k: int = 2                  # samples per prompt, paired consecutively: (0,1), (2,3), ...
    seed: int = 0

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(train_repeats=2, val_repeats=4), **kw})


# --- making pairs ----------------------------------------------------------------------------
def label_pair(rng: random.Random, prompt: str, y1: str, y2: str, s1: float | None = None,
               s2: float | None = None) -> dict:
    """Bradley–Terry label: y1 wins with probability σ(s1 − s2), where the scores s are the gold
    rewards unless given (e.g. a reward model's, for labels without a human). The gold rewards
    are stored with the pair either way."""
    r1, r2 = world.gold_reward(prompt, y1), world.gold_reward(prompt, y2)
    s1, s2 = (r1, r2) if s1 is None else (s1, s2)
    p1 = 1 / (1 + math.exp(-(s1 - s2)))
    if rng.random() < p1:
        return {"prompt": prompt, "chosen": y1, "rejected": y2, "chosen_gold": r1, "rejected_gold": r2}
    return {"prompt": prompt, "chosen": y2, "rejected": y1, "chosen_gold": r2, "rejected_gold": r1}


def make_pairs(model, tok, prompts: list[str], k: int, seed: int, dtype=None,
               scorer=None) -> tuple[list[dict], dict]:
    """Sample k responses per prompt from `model`, pair them, label by Bradley–Terry on the gold
    reward, or on `scorer(prompts, response_token_lists) -> scores` when given.
    Returns (pairs, counts); counts say how many candidate pairs were refused and why."""
    if k < 2 or k % 2:
        raise ValueError(f"k (samples per prompt) must be an even number >= 2, not {k}")
    device = next(model.parameters()).device
    flat = [p for p in prompts for _ in range(k)]
    ids = sample(model, tok, flat, make_generator(seed, device), dtype=dtype)
    texts = [tok.decode_response(r) for r in ids]
    scores = [float(s) for s in scorer(flat, ids)] if scorer is not None else [None] * len(flat)
    rng = random.Random(seed)
    pairs, identical, empty = [], 0, 0
    for i in range(0, len(flat), 2):
        if texts[i] == texts[i + 1]:
            identical += 1
        elif not texts[i].strip() or not texts[i + 1].strip():
            empty += 1  # the file format refuses empty completions, so we never write one
        else:
            pairs.append(label_pair(rng, flat[i], texts[i], texts[i + 1], scores[i], scores[i + 1]))
    return pairs, {"candidates": len(flat) // 2, "refused_identical": identical, "refused_empty": empty,
                   "pairs": len(pairs)}


def oracle_accuracy(pairs: list[dict]) -> float:
    """How often the gold reward itself agrees with the (noisy) labels: the ceiling for any reward
    model trained on them. Ties count 1/2."""
    acc = 0.0
    for p in pairs:
        rc, rr = world.gold_reward(p["prompt"], p["chosen"]), world.gold_reward(p["prompt"], p["rejected"])
        acc += 1.0 if rc > rr else 0.5 if rc == rr else 0.0
    return acc / max(1, len(pairs))


def generate_preference_files(model, tok, cfg: PrefsConfig, out_dir, dtype=None) -> dict:
    """Write out_dir/prefs_train.jsonl (training films) and prefs_val.jsonl (held-out films)."""
    out_dir = Path(out_dir)
    train_titles, heldout_titles = world.split_titles()
    report = {}
    for name, titles, repeats, seed in (("train", train_titles, cfg.train_repeats, cfg.seed),
                                        ("val", heldout_titles, cfg.val_repeats, cfg.seed + 1)):
        prompts = [world.make_prompt(t) for t in titles for _ in range(repeats)]
        pairs, counts = make_pairs(model, tok, prompts, cfg.k, seed, dtype)
        write_preferences(out_dir / f"prefs_{name}.jsonl", pairs)
        report[name] = {**counts, "oracle_accuracy": oracle_accuracy(pairs)}
    report["config"] = asdict(cfg)
    return report


# --- files --------------------------------------------------------------------------------------
def write_preferences(path, pairs: list[dict]) -> None:
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def _check_line(raw: bytes, where: str) -> dict:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PreferenceFileError(f"{where}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise PreferenceFileError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise PreferenceFileError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    for key in REQUIRED_KEYS:
        if key not in obj:
            raise PreferenceFileError(f"{where}: missing key {key!r} (need {', '.join(REQUIRED_KEYS)})")
        if not isinstance(obj[key], str):
            raise PreferenceFileError(f"{where}: {key!r} must be a string, not {type(obj[key]).__name__}")
    for key in ("chosen", "rejected"):
        if not obj[key].strip():
            raise PreferenceFileError(f"{where}: {key!r} is empty")
    if obj["chosen"] == obj["rejected"]:
        raise PreferenceFileError(f"{where}: 'chosen' and 'rejected' are identical (nothing to learn)")
    return obj


def read_preferences(path, skip_invalid: bool = False) -> tuple[list[dict], dict]:
    """(pairs, report). Every line is checked; by default the first bad line raises a
    PreferenceFileError `file:line: what is wrong`. skip_invalid=True refuses bad lines instead,
    and lists each one in report["refused"] (nothing is dropped silently). Blank lines are counted."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceFileError(f"preference file not found: {path}")
    pairs, refused, blank = [], [], 0
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            blank += 1
            continue
        try:
            pairs.append(_check_line(raw, f"{path}:{lineno}"))
        except PreferenceFileError as e:
            if not skip_invalid:
                raise
            refused.append(str(e))
    if not pairs:
        raise PreferenceFileError(f"{path}: no valid preference pairs found")
    return pairs, {"file": str(path), "read": len(pairs), "refused": refused, "blank_lines": blank}


# --- tokens ---------------------------------------------------------------------------------------
def encode_pair(tok, pair: dict, block_size: int) -> tuple[tuple, tuple, bool]:
    """(chosen row, rejected row, truncated?) where a row is (ids, response_mask), per the length
    rule in the module docstring. Prompt and completions are tokenized separately."""
    p = tok.encode_prompt(pair["prompt"])
    c, r = tok.encode_response(pair["chosen"]), tok.encode_response(pair["rejected"])
    truncated = False
    if len(p) + max(len(c), len(r)) > block_size:
        truncated = True
        if len(p) > block_size // 2:
            p = p[-(block_size // 2):]
        room = block_size - len(p)
        c, r = c[:room], r[:room]
    return row(p, c), row(p, r), truncated


def encode_pairs(tok, pairs: list[dict], block_size: int) -> tuple[list, dict]:
    encoded, n_trunc = [], 0
    for pair in pairs:
        c, r, t = encode_pair(tok, pair, block_size)
        encoded.append((c, r))
        n_trunc += t
    return encoded, {"encoded": len(encoded), "truncated": n_trunc}
