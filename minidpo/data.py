"""From text to tensors: render (prompt, response) as token ids with an exact response mask.

Prompt and response are tokenized separately and concatenated, so no BPE merge can cross the
boundary and the mask is exact by construction (no offsets computed from string lengths):

    ids   = <|prompt|> prompt <|response|> | response <|end|>
    mask  =     0        0         0       |    1       1
Batches are right-padded with <|end|> tokens whose mask is 0; causal attention means padding after
a sequence can never change that sequence's log-probs.
"""
from __future__ import annotations

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
