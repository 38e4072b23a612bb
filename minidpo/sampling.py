"""Sampling responses from a policy: the one place generation is batched for every stage."""
from __future__ import annotations

import torch

from .training import autocast

MAX_NEW_TOKENS = 32  # world responses are at most ~27 tokens; longer means the model rambles


def make_generator(seed: int, device) -> torch.Generator:
    """A seeded generator on the model's device (CUDA sampling needs a CUDA generator)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def sample(model, tok, prompts: list[str], generator: torch.Generator, temperature: float = 1.0,
           top_k: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 256,
           dtype=None) -> list[list[int]]:
    """One response (token ids, ending with <|end|> unless cut at max length) per prompt.
    temperature 1 and no top-k is exactly on-policy: what DPO pairs and REINFORCE need."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with autocast(device, dtype):
        for i in range(0, len(prompts), batch_size):
            encoded = [tok.encode_prompt(p) for p in prompts[i:i + batch_size]]
            out += model.generate(encoded, max_new_tokens, temperature=temperature, top_k=top_k,
                                  stop_id=tok.end_id, generator=generator)
    model.train(was_training)
    return out
