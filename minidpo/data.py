"""From text to tensors: render (prompt, response) as token ids with an exact response mask.

Prompt and response are tokenized separately and concatenated, so no BPE merge can cross the
boundary and the mask is exact by construction (no offsets computed from string lengths):

    ids   = <|prompt|> prompt <|response|> | response <|end|>
    mask  =     0        0         0       |    1       1
Batches are right-padded with <|end|> tokens whose mask is 0; causal attention means padding after
a sequence can never change that sequence's log-probs.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch


def row(prompt_ids: list[int], response_ids: list[int]) -> tuple[list[int], list[bool]]:
    """(ids, response mask) of one example: the mask is True exactly on the response tokens."""
    return list(prompt_ids) + list(response_ids), [False] * len(prompt_ids) + [True] * len(response_ids)


def render(tok, prompt: str, response: str) -> tuple[list[int], list[bool]]:
    return row(tok.encode_prompt(prompt), tok.encode_response(response))


def collate(rows: list[tuple[list[int], list[bool]]], pad_id: int, device="cpu", length: int | None = None):
    """(input_ids (B, T) long, response_mask (B, T) bool), right-padded to the longest row (or to
    `length`: a shard of a batch padded like the whole batch computes with the same shapes)."""
    T = max(max(len(ids) for ids, _ in rows), length or 0)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, (r, m) in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(m)] = torch.tensor(m)
    return ids.to(device), mask.to(device)


def sft_targets(input_ids, response_mask):
    """Next-token targets with every non-response position set to -100 (ignored by the loss)."""
    targets = input_ids[:, 1:].clone()
    targets[~response_mask[:, 1:]] = -100
    return input_ids[:, :-1], targets


def prompt_and_response_rows(tok, prompts: list[str], responses_ids: list[list[int]]):
    """Rows for generated responses (token ids already, ending with <|end|> or cut at max length)."""
    return [row(tok.encode_prompt(prompt), r) for prompt, r in zip(prompts, responses_ids)]


def pair_batch(encoded_pairs, device, pad_id, length: int | None = None):
    """Stack the chosen rows, then the rejected rows: one forward pass serves both halves (DPO and
    the reward model both batch pairs this way). Returns collate's (input_ids, response_mask)."""
    rows = [c for c, _ in encoded_pairs] + [r for _, r in encoded_pairs]
    return collate(rows, pad_id, device, length)


class EncodedPairs(Sequence):
    """The token rows of many pairs, held compactly, in blocks of a few thousand pairs: a block is an
    int32 array of its pairs' prompt, chosen and rejected tokens one after another, and `bounds`
    (n, 4), where each pair's prompt, chosen completion and rejected completion start in it and where
    the pair ends. A Python list of ints takes about 36 bytes a token, this 4. Indexing gives what the
    loops consume, as `preferences.encode_pair` builds it: (chosen row, rejected row), each
    (ids, response mask) as lists."""

    def __init__(self, blocks: list[tuple[np.ndarray, np.ndarray]]):
        self.blocks = blocks
        self.first = [0]  # the index of each block's first pair, and then len(self)
        for _, bounds in blocks:
            self.first.append(self.first[-1] + len(bounds))

    def __len__(self) -> int:
        return self.first[-1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = i + len(self) if i < 0 else i
        if not 0 <= i < len(self):
            raise IndexError(f"pair {i} of {len(self)}")
        k = bisect.bisect_right(self.first, i) - 1
        tokens, bounds = self.blocks[k]
        p, c, r, end = bounds[i - self.first[k]].tolist()
        prompt = tokens[p:c].tolist()
        return row(prompt, tokens[c:r].tolist()), row(prompt, tokens[r:end].tolist())

    def lengths(self) -> np.ndarray:
        """(N, 2): the length of each pair's chosen row and rejected row."""
        rows = [np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 2] + b[:, 1] - b[:, 0]], 1) for _, b in self.blocks]
        return np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)


def rows_digest(encoded_pairs) -> str:
    """A hash of encoded pairs' token ids and masks (a list of rows, or EncodedPairs)."""
    h = hashlib.sha256()
    if isinstance(encoded_pairs, EncodedPairs):
        for tokens, bounds in encoded_pairs.blocks:
            h.update(tokens.astype("<i4").tobytes())
            h.update(bounds.astype("<i8").tobytes())
    else:
        h.update(json.dumps(list(encoded_pairs)).encode())
    return h.hexdigest()
