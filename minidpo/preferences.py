"""Stage 5: preference data — pairs sampled from the SFT model, labelled by Bradley–Terry.

For each prompt we draw K responses from the SFT model, exactly on-policy (temperature 1, no top-k),
and pair them up. A pair (y1, y2) is labelled (`PrefsConfig.labels`) either

  "bt"             with the Bradley–Terry model of the gold reward, P(y1 ≻ y2) = σ(r*(x, y1) − r*(x, y2)),
                   by a seeded coin flip, so labels are noisy the way human labels are: two responses
                   of nearly equal reward are a coin toss (the default);
  "deterministic"  the response with the higher gold reward is chosen, always (the DPO paper's IMDb
                   setting, where a sentiment classifier picks the winner); an exact tie is a coin toss. A pair of identical samples cannot be compared, and a pair with an empty
sample would not pass the file checks below: both are refused and counted in the report.

Files are JSONL with keys `prompt`, `chosen`, `rejected` (TRL's convention); other keys are kept but
ignored. The layouts real data ships in (Anthropic HH-RLHF's implicit prompts, TRL's conversations,
UltraFeedback's) are read through chat.py's template, roles kept; unpaired examples (`prompt`,
`completion`, `label`, for KTO) are read too. Every line is validated, and an error names file and
line. Files of real size are tokenized in batches into compact arrays (`encode_pairs`).

Length rule (documented, never silent): a pair whose prompt + completion exceeds the model's context
keeps the last `block_size // 2` tokens of its prompt, then the first tokens of each completion
that fit. A completion therefore never becomes empty. Truncated pairs are counted in the report.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from . import chat, world
from .checkpoint import atomic_write
from .data import EncodedPairs, row
from .sampling import make_generator, sample

REQUIRED_KEYS = ("prompt", "chosen", "rejected")


class PreferenceFileError(ValueError):
    """A problem with a preference file; the message names file and line."""


@dataclass
class PrefsConfig:
    train_repeats: int = 8      # each training film is prompted this many times ...
    val_repeats: int = 8        # ... and each held-out film this many times
    k: int = 2                  # samples per prompt, paired consecutively: (0,1), (2,3), ...
    labels: str = "bt"          # "bt" (noisy Bradley–Terry) or "deterministic" (the better one wins)
    seed: int = 0

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(train_repeats=2, val_repeats=4), **kw})


# --- making pairs ----------------------------------------------------------------------------
LABELS = ("bt", "deterministic")


def label_pair(rng: random.Random, prompt: str, y1: str, y2: str, s1: float | None = None,
               s2: float | None = None, labels: str = "bt") -> dict:
    """Bradley–Terry label: y1 wins with probability σ(s1 − s2), where the scores s are the gold
    rewards unless given (e.g. a reward model's, for labels without a human); with
    labels="deterministic" the higher score wins (a tie is a coin toss). The gold rewards are
    stored with the pair either way."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, not {labels!r}")
    r1, r2 = world.gold_reward(prompt, y1), world.gold_reward(prompt, y2)
    s1, s2 = (r1, r2) if s1 is None else (s1, s2)
    if labels == "deterministic" and s1 != s2:
        p1 = 1.0 if s1 > s2 else 0.0
    else:
        p1 = 1 / (1 + math.exp(-(s1 - s2)))
    if rng.random() < p1:
        return {"prompt": prompt, "chosen": y1, "rejected": y2, "chosen_gold": r1, "rejected_gold": r2}
    return {"prompt": prompt, "chosen": y2, "rejected": y1, "chosen_gold": r2, "rejected_gold": r1}


def make_pairs(model, tok, prompts: list[str], k: int, seed: int, dtype=None,
               scorer=None, labels: str = "bt") -> tuple[list[dict], dict]:
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
            pairs.append(label_pair(rng, flat[i], texts[i], texts[i + 1], scores[i], scores[i + 1], labels))
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
        pairs, counts = make_pairs(model, tok, prompts, cfg.k, seed, dtype, labels=cfg.labels)
        write_preferences(out_dir / f"prefs_{name}.jsonl", pairs)
        report[name] = {**counts, "oracle_accuracy": oracle_accuracy(pairs)}
    report["config"] = asdict(cfg)
    return report


# --- files --------------------------------------------------------------------------------------
def write_preferences(path, pairs: list[dict]) -> None:
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def _parse(raw: bytes, where: str) -> dict:
    """One line as a JSON object, or a PreferenceFileError naming file and line."""
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
    return obj


def _check_pair(obj: dict, where: str) -> dict:
    """A preference pair with string `prompt`, `chosen`, `rejected` (from any layout of chat.py)."""
    try:
        obj = chat.to_pair(obj)
    except ValueError as e:
        raise PreferenceFileError(f"{where}: {e}") from None
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


def _check_unpaired(obj: dict, where: str) -> dict:
    """An unpaired example: string `prompt` and `completion`, boolean `label` (desirable or not)."""
    for key, kind in (("prompt", str), ("completion", str), ("label", bool)):
        if key not in obj:
            raise PreferenceFileError(f"{where}: missing key {key!r} (an unpaired example needs prompt, "
                                      "completion, label)")
        if not isinstance(obj[key], kind):
            raise PreferenceFileError(f"{where}: {key!r} must be a {'boolean' if kind is bool else 'string'}, "
                                      f"not {type(obj[key]).__name__}")
    if not obj["completion"].strip():
        raise PreferenceFileError(f"{where}: 'completion' is empty")
    return obj


def _read_lines(path, check, what: str, skip_invalid: bool) -> tuple[list[dict], dict]:
    """Every non-blank line through `check`; the first bad line raises `file:line: what is wrong`,
    or with skip_invalid each bad line is refused and listed in the report."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceFileError(f"preference file not found: {path}")
    items, refused, blank = [], [], 0
    try:
        for lineno, raw in enumerate(_lines(path), 1):
            if not raw.strip():
                blank += 1
                continue
            where = f"{path}:{lineno}"
            try:
                items.append(check(_parse(raw, where), where))
            except PreferenceFileError as e:
                if not skip_invalid:
                    raise
                refused.append(str(e))
    except OSError as e:
        raise PreferenceFileError(f"{path}: cannot read it ({e.strerror})") from None
    if not items:
        raise PreferenceFileError(f"{path}: no valid {what} found")
    return items, {"file": str(path), "read": len(items), "refused": refused, "blank_lines": blank}


def _lines(path: Path):
    """The file's lines as bytes, read as it streams (a file of real size is never held whole), split
    and numbered as bytes.splitlines() would (\n, \r\n or a lone \r end a line); a UTF-8 byte-order
    mark, which some Windows tools write first, is dropped."""
    with open(path, "rb") as f:
        first = True
        for raw in f:
            if first:
                raw, first = raw.removeprefix(b"\xef\xbb\xbf"), False
            yield from raw.splitlines() if b"\r" in raw else (raw.rstrip(b"\n"),)


def read_preferences(path, skip_invalid: bool = False, max_pairs: int | None = None,
                     seed: int = 0) -> tuple[list[dict], dict]:
    """(pairs, report). Lines are `{"prompt", "chosen", "rejected"}` with strings, or any layout of
    chat.py (HH-RLHF, TRL's conversations, UltraFeedback). Every line is checked; by default the
    first bad line raises a PreferenceFileError `file:line: what is wrong`. skip_invalid=True refuses
    bad lines instead, and lists each one in report["refused"] (nothing is dropped silently). Blank
    lines are counted. max_pairs: keep a seeded sample of that many pairs (in file order), and say so."""
    return _sample(*_read_lines(path, _check_pair, "preference pairs", skip_invalid), max_pairs, seed)


def _sample(items: list, report: dict, n: int | None, seed: int) -> tuple[list, dict]:
    """A seeded sample of n items in their order (all of them when n is None or not smaller); the
    report says what was kept."""
    if n is None or n >= len(items):
        return items, report
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep], {**report, "sampled": f"{n} of {len(items)} (seed {seed})", "read": n}


def read_unpaired(path, skip_invalid: bool = False, max_pairs: int | None = None,
                  seed: int = 0) -> tuple[list[dict], dict]:
    """(examples, report) for losses that learn from single labelled completions (KTO): a file of
    `{"prompt", "completion", "label": true|false}` lines; or a file of pairs, each split into its
    chosen completion (label true) and its rejected one (label false). max_pairs: a seeded sample of
    that many lines."""
    path = Path(path)
    first = next((line for line in (_lines(path) if path.is_file() else []) if line.strip()), b"")
    try:
        unpaired = "completion" in json.loads(first)
    except (ValueError, TypeError):
        unpaired = False
    if unpaired:
        return _sample(*_read_lines(path, _check_unpaired, "unpaired examples", skip_invalid), max_pairs, seed)
    pairs, report = read_preferences(path, skip_invalid, max_pairs, seed)
    return pairs_to_unpaired(pairs), {**report, "split_from_pairs": True, "read": 2 * len(pairs)}


def pairs_to_unpaired(pairs: list[dict]) -> list[dict]:
    """Each pair as two unpaired examples: (prompt, chosen, desirable), (prompt, rejected, not)."""
    return [{"prompt": p["prompt"], "completion": c, "label": label}
            for p in pairs for c, label in ((p["chosen"], True), (p["rejected"], False))]


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


def encode_pairs(tok, pairs: list[dict], block_size: int, threads: int | None = None) -> tuple[EncodedPairs, dict]:
    """Every pair as `encode_pair` encodes it, held compactly (data.EncodedPairs): the texts are
    tokenized a few thousand at a time on `threads` threads (tok.encode_batches), and each batch is
    laid out with array operations, the length rule included."""
    texts = [pair[key] for pair in pairs for key in ("prompt", "chosen", "rejected")]
    before, after = ([tok.prompt_id], [tok.response_id]) if tok.kind == "minidpo" else ([], [])  # encode_prompt's
    half, blocks, n_trunc = block_size // 2, [], 0
    for ids, lengths in tok.encode_batches(texts, chunk=3 * 1365, threads=threads):
        starts = np.cumsum(lengths) - lengths
        n = len(lengths) // 3
        # every pair laid out whole: <before> prompt <after> | chosen <end> | rejected <end>
        src = np.concatenate([ids, np.array(before + after + [tok.end_id], dtype=np.int32)])
        base = len(ids)
        seg_start = np.stack([np.full(n, base), starts[0::3], np.full(n, base + len(before)), starts[1::3],
                              np.full(n, src.size - 1), starts[2::3], np.full(n, src.size - 1)], 1)
        seg_len = np.stack([np.full(n, len(before)), lengths[0::3], np.full(n, len(after)), lengths[1::3],
                            np.ones(n, np.int64), lengths[2::3], np.ones(n, np.int64)], 1)
        full = _gather(src, seg_start.ravel(), seg_len.ravel())
        P = lengths[0::3] + len(before) + len(after)
        C, R = lengths[1::3] + 1, lengths[2::3] + 1
        # the length rule, on every pair at once: the prompt's last half-context, then what fits
        cut = P + np.maximum(C, R) > block_size
        P2 = np.where(cut & (P > half), half, P)
        C2, R2 = np.where(cut, np.minimum(C, block_size - P2), C), np.where(cut, np.minimum(R, block_size - P2), R)
        if cut.any():
            p0 = np.cumsum(P + C + R) - (P + C + R)
            full = _gather(full, np.stack([p0 + P - P2, p0 + P, p0 + P + C], 1).ravel(),
                           np.stack([P2, C2, R2], 1).ravel())
        p0 = np.cumsum(P2 + C2 + R2) - (P2 + C2 + R2)
        blocks.append((full, np.stack([p0, p0 + P2, p0 + P2 + C2, p0 + P2 + C2 + R2], 1)))
        n_trunc += int(cut.sum())
    encoded = EncodedPairs(blocks)
    return encoded, {"encoded": len(encoded), "truncated": n_trunc}


def _gather(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """src[s:s + n] for every (s, n) of starts and lengths, concatenated."""
    offsets = np.cumsum(lengths) - lengths
    return src[np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))]


def mismatched_completions(prompts: list[str]) -> list[int]:
    """For each example i, the index j of the example whose completion is i's mismatched y′ (KTO's
    reference point, see `encode_unpaired`). y′ must come from ANOTHER prompt: a pair split in two
    puts (x, y_w) beside (x, y_l), so a shift by one would hand every desirable example its own
    rejected response, the very completion KTO pushes down, and z0 would measure that instead of
    KL(π ‖ π_ref). So: group the examples by prompt (in order of first appearance) and shift by the
    largest group's size, a permutation that always lands in another group when no prompt holds
    more than half of the examples. Otherwise each example of the big prompt takes the other
    prompts' completions in turn; a file with a single prompt has no other prompt, and there a
    shift by two (one by one for two examples) at least skips a split pair's partner."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    order = [i for members in groups.values() for i in members]
    n, largest = len(order), max((len(m) for m in groups.values()), default=0)
    if len(groups) == 1:
        shift = 2 if n > 2 else 1
        return [(i + shift) % n for i in range(n)]
    if 2 * largest <= n:
        out = [0] * n
        for pos, i in enumerate(order):
            out[i] = order[(pos + largest) % n]
        return out
    out = [0] * n
    for members in groups.values():
        others = [j for j in order if prompts[j] != prompts[members[0]]]
        for turn, i in enumerate(members):
            out[i] = others[turn % len(others)]
    return out


def encode_unpaired(tok, examples: list[dict], block_size: int) -> tuple[list, list[bool], dict]:
    """(rows, labels, report) for unpaired examples. Each row is a pair of token rows: the example
    (x_i, y_i) and a mismatched completion (x_i, y_j) for KTO's reference point, the KL of the policy
    to the reference on completions that do not belong to the prompt. j is another prompt's example
    (`mismatched_completions`): KTO's paper and TRL take y′ from other prompts (TRL shifts within a
    batch); here the mismatch is fixed over the file, so the reference log-probs stay cacheable."""
    other = mismatched_completions([e["prompt"] for e in examples])
    shifted = [{"prompt": e["prompt"], "chosen": e["completion"], "rejected": examples[j]["completion"]}
               for e, j in zip(examples, other)]
    rows, report = encode_pairs(tok, shifted, block_size)
    return rows, [bool(e["label"]) for e in examples], report
