"""Evaluation shared by every method (SFT, DPO, RLHF), so a comparison table comes from one function.

On held-out prompts (films never trained on) we sample from the policy exactly as it would be used
(temperature 1) and report:
  gold_reward   mean r*(x, y) of the samples                               (higher is better)
  win_rate_vs_sft  P[r*(x, y_policy) > r*(x, y_sft)] on the same prompts, ties count 1/2, for the
                policy's and the SFT baseline's samples drawn INDEPENDENTLY (the DPO paper's win
                rate; `Run.evaluate` samples them with different seeds)
  ties_vs_sft   fraction of those pairs with equal gold reward
  kl_to_ref     mean over policy samples of Σ_t log π(y_t|…) − log π_ref(y_t|…)  (sequence KL, nats)
  fluency       fraction of samples the world's grammar check accepts
  reused_word_frac  fraction that reuse a sentiment word (grammatical, but penalised by r*)
  unique_frac   fraction of distinct responses (a diversity measure that works in a tiny vocabulary)
  distinct_2    distinct word bigrams / all word bigrams (kept for comparison with the literature)
  length        mean response length in tokens (the <|end|> token included)
  entropy       mean per-token entropy of π over its own samples' response positions (nats)
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import world
from .data import collate, prompt_and_response_rows
from .model import sequence_logps
from .sampling import make_generator, sample
from .training import autocast


class Scored(NamedTuple):
    logps: torch.Tensor  # (N,) log π(y|x) of each response, on the CPU
    entropy: float       # mean per-token entropy of π over all their response positions (nats)


@torch.no_grad()
def response_logps(model, tok, prompts, responses_ids, batch_size: int = 256, dtype=None,
                   average: bool = False) -> Scored:
    """log π(y|x) for given (prompt, response-token) pairs, in batches, on the model's device."""
    device = next(model.parameters()).device
    rows = prompt_and_response_rows(tok, prompts, responses_ids)
    logps, entropy, n = [], 0.0, 0
    for i in range(0, len(rows), batch_size):
        ids, mask = collate(rows[i:i + batch_size], tok.end_id, device)
        with autocast(device, dtype):
            out = sequence_logps(model, ids, mask, average, with_entropy=True)
        logps.append(out.logps.float().cpu())
        entropy += out.entropy.sum().item()
        n += int(out.lengths.sum())
    return Scored(torch.cat(logps), entropy / max(1, n))


def text_stats(prompts: list[str], texts: list[str]) -> dict:
    parts = [world.reward_breakdown(p, t) for p, t in zip(prompts, texts)]
    gold = [b["reward"] for b in parts]
    fluent = [world.fluent(b) for b in parts]
    bigrams = [tuple(w[i:i + 2]) for w in (t.split() for t in texts) for i in range(len(w) - 1)]
    return {"gold": gold,
            "gold_reward": sum(gold) / len(gold),
            "gold_std": (sum((g - sum(gold) / len(gold)) ** 2 for g in gold) / len(gold)) ** 0.5,
            "fluency": sum(fluent) / len(fluent),
            "reused_word_frac": sum(b["reused_word"] > 0 for b in parts) / len(texts),
            "unique_frac": len(set(zip(prompts, texts))) / len(texts),
            "distinct_2": len(set(bigrams)) / max(1, len(bigrams))}


def win_rate(gold_a: list[float], gold_b: list[float]) -> float:
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(gold_a, gold_b)) / len(gold_a)


def tie_frac(gold_a: list[float], gold_b: list[float]) -> float:
    return sum(a == b for a, b in zip(gold_a, gold_b)) / len(gold_a)


def eval_prompts(samples_per_prompt: int = 8) -> list[str]:
    """The held-out films, each repeated: the same list for every method, so rows pair up."""
    return [world.make_prompt(t) for t in world.split_titles()[1] for _ in range(samples_per_prompt)]


def evaluate_policy(policy, ref, tok, prompts: list[str], seed: int = 1234, sft_gold=None,
                    dtype=None) -> dict:
    """Sample once per prompt from `policy` with generator `seed`, score everything; `sft_gold`
    from the SFT's own run. The win rate is the paper's only if `seed` is not the one the SFT
    samples were drawn with: the same random stream couples the two sample sets (a policy near SFT
    then repeats SFT's samples token for token, and every repeat is a tie)."""
    device = next(policy.parameters()).device
    ids = sample(policy, tok, prompts, make_generator(seed, device), dtype=dtype)
    texts = [tok.decode_response(r) for r in ids]
    stats = text_stats(prompts, texts)
    logp, stats["entropy"] = response_logps(policy, tok, prompts, ids, dtype=dtype)
    logp_ref = response_logps(ref, tok, prompts, ids, dtype=dtype).logps
    stats["kl_to_ref"] = (logp - logp_ref).mean().item()
    stats["length"] = sum(len(r) for r in ids) / len(ids)
    stats["win_rate_vs_sft"] = win_rate(stats["gold"], sft_gold) if sft_gold is not None else 0.5
    if sft_gold is not None:
        stats["ties_vs_sft"] = tie_frac(stats["gold"], sft_gold)
    stats["samples"] = [{"prompt": p, "response": t, "gold": g}
                        for p, t, g in zip(prompts, texts, stats["gold"])]
    return stats


def summary_row(stats: dict) -> dict:
    """The scalar part of `evaluate_policy`'s result (no per-sample lists)."""
    return {k: v for k, v in stats.items() if k not in ("gold", "samples")}


def first_per_prompt(samples: list[dict]) -> list[int]:
    """Indices of the first sample of each distinct prompt, in order (for side-by-side tables)."""
    seen, out = set(), []
    for i, s in enumerate(samples):
        if s["prompt"] not in seen:
            seen.add(s["prompt"])
            out.append(i)
    return out
