"""Hugging Face's tokenizer files, read into tiktoken's merge ranks and written from them.

A GPT-2 folder describes its byte-level BPE in two files, `vocab.json` ({token: id}) and
`merges.txt` (one merge "a b" a line, earliest first), or in one, `tokenizer.json` (both of those
plus the pre-tokenizer and the special tokens). Tokens are strings, not bytes: GPT-2 maps every
byte to one printable character (`byte_to_char`; the space becomes "Ġ"), so " the" is "Ġthe".

tiktoken keeps one number per token, its rank, which is both its id and its merge priority (lower
merges first); Hugging Face keeps the id in vocab.json and the priority in the order of merges.txt.
A vocabulary converts exactly when the two agree: the 256 single bytes and the merge results take
the ids 0..n-1, and each merge's result has a higher id than the one before (GPT-2's own files do).
Going out, each token of two or more bytes is written as the merge of the two lower-ranked tokens
that BPE of its bytes stops at (tiktoken's own conversion does the same).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..chat import chat_template
from ..tokenizer import GPT2_END, GPT2_PAT_STR, PAT_STR, PROMPT, RESPONSE, SPECIAL_TOKENS, Tokenizer

KINDS = {"gpt2": ([GPT2_END], GPT2_PAT_STR), "minidpo": (SPECIAL_TOKENS, PAT_STR)}  # kind -> (specials, regex)


class TokenizerFilesError(ValueError):
    pass


def byte_to_char() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (its encoder.py's bytes_to_unicode): the bytes that
    print as themselves keep their character, the other 68 (controls, space, ...) get 256, 257, ..."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_TO_CHAR = byte_to_char()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def to_text(token: bytes) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in token)


def to_bytes(text: str, where: str) -> bytes:
    try:
        return bytes(CHAR_TO_BYTE[c] for c in text)
    except KeyError as e:
        raise TokenizerFilesError(f"{where}: token {text!r} has the character {e.args[0]!r}, which is not in "
                                  "GPT-2's byte alphabet (not a byte-level BPE)") from None


# --- in ------------------------------------------------------------------------------------------
def _merges_txt(path: Path) -> list[tuple[str, str, str]]:
    """(a, b, where) of each merge line; the "#version" line and blank lines are skipped."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip() or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFilesError(f"{path}:{lineno}: not a merge line 'a b'")
        out.append((parts[0], parts[1], f"{path}:{lineno}"))
    return out


def json_object(path: Path, error: type[Exception] = TokenizerFilesError) -> dict:
    """The JSON object in a file of a Hugging Face folder (a byte-order mark allowed); invalid JSON
    or another type than an object raises `error` naming the file."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _files(folder: Path):
    """(vocab, merges, where the vocab came from, tokenizer.json or None) of a folder."""
    tj = folder / "tokenizer.json"
    spec = json_object(tj) if tj.is_file() else None
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return json_object(folder / "vocab.json"), _merges_txt(folder / "merges.txt"), str(folder / "vocab.json"), spec
    if spec is None:
        raise TokenizerFilesError(f"{folder}: no vocab.json + merges.txt and no tokenizer.json (or give "
                                  "--tokenizer FILE, a ranks file in tiktoken's format)")
    model = spec.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise TokenizerFilesError(f"{tj}: its model is not a byte-level BPE with a vocab")
    merges = []
    for i, m in enumerate(model.get("merges") or []):  # "a b" (older files) or ["a", "b"] (newer ones)
        pair = m.split(" ") if isinstance(m, str) else m
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise TokenizerFilesError(f"{tj}: model.merges[{i}] is not a merge 'a b'")
        merges.append((pair[0], pair[1], f"{tj}: model.merges[{i}]"))
    return model["vocab"], merges, f"{tj}: model.vocab", spec


def _check_pre_tokenizer(spec: dict, kind: str, where: Path) -> None:
    """tokenizer.json must split text the way `kind`'s regex does, with no normalizer and no prefix space."""
    pre, pattern = spec.get("pre_tokenizer") or {}, KINDS[kind][1]
    if spec.get("normalizer"):
        raise TokenizerFilesError(f"{where}: it has a normalizer ({spec['normalizer'].get('type')}); "
                                  "minidpo's tokenizers have none")
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if any(s.get("add_prefix_space") for s in steps if s.get("type") == "ByteLevel"):
        raise TokenizerFilesError(f"{where}: add_prefix_space is set; minidpo's tokenizers add no space")
    regexes = [s.get("pattern", {}).get("Regex") for s in steps if s.get("type") == "Split"]
    regexes += [GPT2_PAT_STR for s in steps if s.get("type") == "ByteLevel" and s.get("use_regex", True)]
    if regexes != [pattern]:
        raise TokenizerFilesError(f"{where}: its pre-tokenizer does not split text as {kind}'s regex does "
                                  f"({pattern!r})")


def read_hf_tokenizer(folder) -> tuple[dict[bytes, int], str]:
    """(tiktoken's mergeable ranks, kind) from a folder's vocab.json + merges.txt (or tokenizer.json).
    kind: "gpt2" (one special token, <|endoftext|>) or "minidpo" (ours: <|prompt|> <|response|> <|end|>).
    Every mismatch is a TokenizerFilesError naming the file (and line)."""
    folder = Path(folder)
    vocab, merges, where, spec = _files(folder)
    ids = {}
    for text, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerFilesError(f"{where}: the id of {text!r} is {i!r}, not a non-negative integer")
        ids[text] = i
    ranks = {bytes([b]): ids.get(BYTE_TO_CHAR[b]) for b in range(256)}
    missing = [t for t, r in ranks.items() if r is None]
    if missing:
        raise TokenizerFilesError(f"{where}: the single byte {to_text(missing[0])!r} is not in the vocabulary "
                                  "(a byte-level BPE holds all 256)")
    last = -1
    for a, b, line in merges:
        if a not in ids or b not in ids or a + b not in ids:
            name = next(t for t in (a, b, a + b) if t not in ids)
            raise TokenizerFilesError(f"{line}: {name!r} is not in {where}")
        token, rank = to_bytes(a + b, line), ids[a + b]
        if token in ranks:
            raise TokenizerFilesError(f"{line}: {a + b!r} is made by an earlier merge too")
        if rank <= last:
            raise TokenizerFilesError(f"{line}: {a + b!r} has id {rank}, below the merge before it ({last}): "
                                      "ids and merge order disagree, which tiktoken's ranks cannot express")
        ranks[token], last = rank, rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerFilesError(f"{where}: the bytes and merge results do not have the ids 0..{len(ranks) - 1}")
    specials = sorted(((i, t) for t, i in ids.items() if i >= len(ranks)))
    if len(ids) != len(ranks) + len(specials):
        odd = next(t for t, i in ids.items() if i < len(ranks) and to_bytes(t, where) not in ranks)
        raise TokenizerFilesError(f"{where}: {odd!r} is neither a byte nor made by a merge")
    names = [t for _, t in specials]
    kind = next((k for k, (toks, _) in KINDS.items() if names == toks), None)
    if kind is None or [i for i, _ in specials] != list(range(len(ranks), len(ranks) + len(names))):
        raise TokenizerFilesError(f"{where}: the tokens after the merges ({', '.join(names) or 'none'}) are neither "
                                  f"GPT-2's {GPT2_END} nor minidpo's {' '.join(SPECIAL_TOKENS)}, at ids from {len(ranks)}")
    if spec is not None:
        _check_pre_tokenizer(spec, kind, folder / "tokenizer.json")
    return ranks, kind


# --- out -----------------------------------------------------------------------------------------
def _bpe(ranks: dict[bytes, int], token: bytes, below: int) -> list[bytes]:
    """tiktoken's BPE of `token`'s bytes using only ranks below `below`: merge the lowest-ranked
    adjacent pair until none is left."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        found = [(ranks.get(parts[i] + parts[i + 1], below), i) for i in range(len(parts) - 1)]
        rank, i = min(found)
        if rank >= below:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def merges_of(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that makes each token of two or more bytes, in rank order."""
    out = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe(ranks, token, rank)
        if len(parts) != 2:
            raise TokenizerFilesError(f"token {rank} ({token!r}) is not the merge of two lower-ranked tokens")
        out.append((parts[0], parts[1]))
    return out


def tokenizer_files(tok: Tokenizer, model_max_length: int) -> dict[str, object]:
    """{file name: JSON object or text} of `tok` as Hugging Face reads it: vocab.json + merges.txt
    (GPT-2's slow tokenizer), tokenizer.json (the fast one: OUR pre-tokenizer regex, which is not
    GPT-2's, and our special tokens) and tokenizer_config.json (which loads tokenizer.json as it is,
    and carries chat.py's template as `chat_template`: apply_chat_template renders a conversation as
    minidpo does)."""
    ranks = {tok.enc.decode_single_token_bytes(i): i for i in range(tok.n_ordinary)}
    specials = KINDS[tok.kind][0]
    vocab = {to_text(t): i for t, i in sorted(ranks.items(), key=lambda kv: kv[1])}
    vocab.update({s: tok.n_ordinary + i for i, s in enumerate(specials)})
    merges = [f"{to_text(a)} {to_text(b)}" for a, b in merges_of(ranks)]
    end = specials[-1]
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": KINDS[tok.kind][1]}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges}}
    wrap = (PROMPT, RESPONSE) if tok.kind == "minidpo" else ("", "")  # our format tokens around a prompt
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              "eos_token": end, "bos_token": end, "add_prefix_space": False, "clean_up_tokenization_spaces": False,
              "chat_template": chat_template(*wrap)}  # the prompt minidpo renders (chat.py), for apply_chat_template
    return {"vocab.json": vocab, "merges.txt": "#version: 0.2\n" + "".join(m + "\n" for m in merges),
            "tokenizer.json": spec, "tokenizer_config.json": config}
