"""A small byte-level BPE: trained here on our corpus, served by tiktoken.

Training (`train_bpe`) is the classic algorithm made fast enough for a lecture:
  1. split the text into chunks with a regex (words with their leading space, numbers, punctuation);
  2. count each distinct chunk once (a word-frequency dict), as a tuple of byte ids;
  3. repeatedly merge the most frequent adjacent pair, updating pair counts *incrementally*
     (only the words that contain the pair change) and finding the best pair with a heap.
The merges are saved in tiktoken's text format (base64 token bytes, rank per line) and served by a
`tiktoken.Encoding`, so encoding is fast and the byte fallback makes it lossless on any text.
Nothing is ever downloaded.

Sequence format for a (prompt, response) example, tokenized in two parts so that no merge crosses
the boundary and the response mask is exact:
    <|prompt|> prompt-tokens <|response|> response-tokens <|end|>
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import os
import re
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tiktoken

# ASCII classes only, so Python's `re` (training) and tiktoken's regex engine (serving) split text
# the same way. Non-ASCII letters fall into the "other" class: still lossless via the byte fallback.
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""
PROMPT, RESPONSE, END = "<|prompt|>", "<|response|>", "<|end|>"
SPECIAL_TOKENS = [PROMPT, RESPONSE, END]


def shipped_file(name: str) -> Path:
    """A file or folder of data/ (our merges, the example preference files, the tiny GPT-2) as this
    install holds it: inside the package, where a wheel or `pip install .` puts it (pyproject.toml
    maps data/ to minidpo/assets), or in the checkout's data/ (an editable install, or no install)."""
    here = Path(__file__).resolve().parent
    packaged = here / "assets" / name
    return packaged if packaged.exists() else here.parent / "data" / name


DEFAULT_MERGES = shipped_file("tokenizer.tiktoken")
EXAMPLE_PREFS = shipped_file("example_prefs.jsonl")


def train_bpe(text: str, num_merges: int) -> dict[bytes, int]:
    """Learn up to `num_merges` merges; return tiktoken's mergeable ranks {token bytes: rank}.

    Deterministic: ties between equally frequent pairs go to the smallest (id, id) pair.
    Stops early when no pair occurs twice."""
    chunks = Counter(re.findall(PAT_STR, text))
    words = [list(chunk.encode("utf-8")) for chunk in chunks]
    freqs = list(chunks.values())
    vocab = [bytes([i]) for i in range(256)]          # id -> bytes; ids 0..255 are the raw bytes
    ranks = {b: i for i, b in enumerate(vocab)}

    pair_count: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += freqs[wi]
            pair_words[pair].add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    while len(vocab) - 256 < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:          # stale heap entry: its count has changed
            continue
        if -neg < 2:
            break
        merged = vocab[pair[0]] + vocab[pair[1]]
        if merged in ranks:                          # same bytes reachable by another merge: skip
            pair_count.pop(pair)
            continue
        new_id = len(vocab)
        vocab.append(merged)
        ranks[merged] = new_id
        changed = set()
        for wi in pair_words.pop(pair):
            w, f = words[wi], freqs[wi]
            for p in zip(w, w[1:]):                  # remove this word's old pairs ...
                pair_count[p] -= f
                changed.add(p)
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):              # ... and add its new ones
                pair_count[p] += f
                pair_words[p].add(wi)
                changed.add(p)
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str | Path) -> None:
    """tiktoken's text format: one `base64(token bytes) rank` per line."""
    lines = [f"{base64.b64encode(tok).decode('ascii')} {rank}" for tok, rank in
             sorted(ranks.items(), key=lambda kv: kv[1])]
    from .checkpoint import atomic_write
    text = "\n".join(lines) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode("ascii")))


def load_ranks(path: str | Path) -> dict[bytes, int]:
    """Read the ranks file ourselves (tiktoken's loader caches by path and would go stale)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer merges file not found: {path}")
    ranks = {}
    for lineno, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: not a 'base64 rank' line ({e})") from None
    return ranks


# GPT-2's pre-tokenizer (as in its encoder.py and tiktoken's "gpt2"): contractions, letters, digits,
# other symbols, each optionally after one space; runs of white space
GPT2_PAT_STR = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_END = "<|endoftext|>"


class Tokenizer:
    """A `tiktoken.Encoding` over merge ranks, plus the prompt/response format.

    kind="minidpo" (ours): `<|prompt|> x <|response|> y <|end|>`, three special tokens after the merges.
    kind="gpt2" (a user's GPT-2 ranks file, for real GPT-2 weights): GPT-2's regex, its one special
    token `<|endoftext|>` (id = the number of ranks, 50256) ends a response, and there are no format
    markers: the prompt text carries its own format ("Human: ... Assistant:"), tokenized apart from
    the response as always, so the mask stays exact."""

    def __init__(self, ranks: dict[bytes, int], name: str = "minidpo", kind: str = "minidpo"):
        if kind not in ("minidpo", "gpt2"):
            raise ValueError(f"tokenizer kind must be 'minidpo' or 'gpt2', not {kind!r}")
        self.kind = kind
        if kind == "gpt2":
            specials = {GPT2_END: len(ranks)}
            self.enc = tiktoken.Encoding(name, pat_str=GPT2_PAT_STR, mergeable_ranks=ranks, special_tokens=specials)
            self.prompt_id = self.response_id = None
            self.end_id, self.end_text = specials[GPT2_END], GPT2_END
        else:
            specials = {tok: len(ranks) + i for i, tok in enumerate(SPECIAL_TOKENS)}
            self.enc = tiktoken.Encoding(name, pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)
            self.prompt_id, self.response_id, self.end_id = (specials[t] for t in SPECIAL_TOKENS)
            self.end_text = END
        self.vocab_size = self.enc.n_vocab
        self.n_ordinary = len(ranks)
        # what the merges are, not where they came from: part of every stage's provenance key
        self.fingerprint = hashlib.sha256(kind.encode() + b"".join(
            base64.b64encode(t) + b" %d\n" % r for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))).hexdigest()
        if kind == "minidpo":  # (the shipped tokenizer's fingerprint predates the kinds: keep it)
            self.fingerprint = hashlib.sha256(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in
                                                       sorted(ranks.items(), key=lambda kv: kv[1]))).hexdigest()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MERGES, kind: str = "minidpo") -> "Tokenizer":
        tok = cls(load_ranks(path), name=f"minidpo-{kind}", kind=kind)
        tok.path = str(path)
        return tok

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)          # special-token strings stay plain text

    def encode_batches(self, texts: list[str], chunk: int = 4096, threads: int | None = None):
        """Yield (ids, lengths) for each `chunk` texts in order: their ordinary tokens (as `encode`
        gives them) concatenated in an int32 array, and each text's token count. Fast for many texts:
        a chunk is joined by the end token's string and encoded in ONE call, the special token cutting
        the text so each piece is encoded as if alone, with no Python int per token; chunks run on
        `threads` threads (tiktoken lets go of the GIL while it encodes). A chunk holding that string
        as text (or text tiktoken's fast path refuses) is encoded text by text instead."""
        def one(part):
            if not any(self.end_text in t for t in part):
                try:
                    ids = self.enc.encode_to_numpy(self.end_text.join(part) + self.end_text,
                                                   allowed_special={self.end_text}, disallowed_special=())
                    ends = np.flatnonzero(ids == self.end_id)
                    return ids[ids != self.end_id].astype(np.int32), np.diff(ends, prepend=-1) - 1
                except UnicodeEncodeError:  # lone surrogates: `encode` repairs them as tiktoken does
                    pass
            rows = [self.encode(t) for t in part]
            return (np.fromiter((i for r in rows for i in r), np.int32, sum(map(len, rows))),
                    np.array([len(r) for r in rows], dtype=np.int64))
        if len(texts) <= chunk:  # one chunk (or none): no threads to start
            yield from [one(texts)] if texts else []
            return
        threads = threads or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            pending = deque()
            for i in range(0, len(texts), chunk):
                pending.append(pool.submit(one, texts[i:i + chunk]))
                if len(pending) > 2 * threads:  # a few chunks ahead, not the whole file's tokens
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def decode(self, ids) -> str:
        """Text of ordinary tokens (special tokens are format, not text, and are left out)."""
        return self.enc.decode([int(i) for i in ids if int(i) < self.n_ordinary])

    def encode_prompt(self, prompt: str) -> list[int]:
        if self.kind == "gpt2":
            return self.encode(prompt)
        return [self.prompt_id] + self.encode(prompt) + [self.response_id]

    def encode_response(self, response: str) -> list[int]:
        return self.encode(response) + [self.end_id]

    def decode_response(self, ids) -> str:
        """Text of generated response tokens, cut at the first <|end|>."""
        ids = list(ids)
        if self.end_id in ids:
            ids = ids[:ids.index(self.end_id)]
        return self.decode(ids)


def train_default(out: str | Path = DEFAULT_MERGES, num_merges: int = 512, n_examples: int = 20000,
                  seed: int = 0) -> dict[bytes, int]:
    """Train the shipped merges on the world's corpus (`python -m minidpo tokenizer`)."""
    from .world import make_corpus, TITLES
    text = "\n".join(p + "\n" + r for p, r in make_corpus(n_examples, seed=seed))
    text += "\n" + "\n".join(TITLES)  # every film name, held-out ones included, tokenizes alike
    ranks = train_bpe(text, num_merges)
    save_ranks(ranks, out)
    return ranks
