"""Stage 6b: RLHF the classic way — REINFORCE on the policy with a KL penalty to the reference.

One step:
  1. draw B prompts, sample K responses each from the current policy, exactly on-policy
     (temperature 1, no top-k / top-p), with the KV cache, stopping at <|end|> or max length;
  2. score: the learned (normalised) reward r̂(x, y), and the sequence log-ratio to the reference
     kl(x, y) = Σ_t [log π(y_t|…) − log π_ref(y_t|…)] over response tokens only;
  3. the return R = r̂(x, y) − β·kl(x, y), detached (the KL penalty is folded into the reward);
  4. the leave-one-out baseline: A_i = R_i − mean of the other K−1 returns for the same prompt;
  5. loss = −mean(A · Σ_t log π(y_t|…)), an AdamW step with gradient clipping.

Its expectation is the gradient of E[r̂] − β·KL(π‖π_ref) (a test checks this exactly on an
enumerable toy). Simplifications, on purpose:
  - plain REINFORCE: no value network, no GAE, no PPO ratio clipping, one update per batch
    (so the samples are exactly on-policy and no importance weights are needed);
  - the KL penalty is the sequence-level k1 estimate log π/π_ref of the sampled response, added
    to the reward, not a per-token penalty or an analytic KL;
  - a response cut at max length is scored as it is (no special truncation penalty);
  - no reward whitening across the batch beyond the reward model's fixed normalisation;
  - the reference is the frozen SFT model and is never updated.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, asdict
from pathlib import Path

import torch

from . import world
from .checkpoint import load_gpt, save_checkpoint, write_json
from .data import collate, prompt_and_response_rows
from .model import sequence_logps
from .reward_model import load_reward_model
from .sampling import make_generator, sample
from .training import Progress, autocast, check_finite, check_weights_finite, make_optimizer, set_lr


@dataclass
class RLHFConfig:
    beta: float = 0.05
    steps: int = 150
    prompts_per_step: int = 16
    k: int = 4                 # samples per prompt (>= 2 for the leave-one-out baseline)
    lr: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    log_every: int = 10
    seed: int = 0
    reward: str = "learned"    # "learned" (the reward model) or "gold" (RL on r* itself, for contrast)

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(steps=30, prompts_per_step=8, log_every=5), **kw})


def leave_one_out_advantages(returns: torch.Tensor) -> torch.Tensor:
    """returns: (B, K). A_i = R_i − (Σ_j R_j − R_i)/(K−1): a baseline that does not use R_i itself,
    so the gradient estimate stays unbiased."""
    K = returns.size(1)
    if K < 2:
        raise ValueError("the leave-one-out baseline needs k >= 2 samples per prompt")
    return returns - (returns.sum(1, keepdim=True) - returns) / (K - 1)


def reinforce_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−mean(A · log π(y|x)); A is a constant (detached), only log π carries gradient."""
    return -(advantages.detach() * seq_logps).mean()


def sample_or_explain(policy, tok, prompts, gen, stage: str, step: int, lr: float, dtype=None):
    """On-policy samples (temperature 1, no top-k); when the last update broke the policy, the
    error names the learning rate that did it instead of failing inside torch."""
    try:
        return sample(policy, tok, prompts, gen, temperature=1.0, top_k=None, dtype=dtype)
    except FloatingPointError as e:
        raise FloatingPointError(f"{stage}: cannot sample at step {step}: {e}; the update before it, with "
                                 f"learning rate {lr:g}, was too large: try a lower --lr") from None


def train_rlhf(cfg: RLHFConfig, tok, sft_path, rm_path, out_dir, device=torch.device("cpu"), dtype=None,
               quiet: bool = False, out_name: str = "rlhf", checkpoint_every: int = 0) -> dict:
    """REINFORCE from the SFT checkpoint against the reward model at `rm_path`
    (or the gold reward when cfg.reward == "gold"). Writes out_dir/{out_name}.pt and metrics."""
    out_dir = Path(out_dir)
    if cfg.reward not in ("learned", "gold"):
        raise ValueError(f"reward must be 'learned' or 'gold', not {cfg.reward!r}")
    if not cfg.beta >= 0:  # also refuses NaN
        raise ValueError(f"rlhf: β must be ≥ 0 (a negative KL coefficient pays the policy to leave the reference), "
                         f"not {cfg.beta}")
    torch.manual_seed(cfg.seed)
    policy, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
    ref, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
    ref.eval()
    rm = load_reward_model(rm_path, device, tok.vocab_size) if cfg.reward == "learned" else None
    train_titles, _ = world.split_titles()
    rng = random.Random(cfg.seed)
    gen = make_generator(cfg.seed, device)
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    set_lr(opt, cfg.lr)
    prog = Progress("rlhf", cfg.steps, every=cfg.log_every, quiet=quiet)
    history = []
    seconds = {"sampling": 0.0, "scoring": 0.0, "update": 0.0}
    generated = scored = updated = 0
    for step in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        prompts = [world.make_prompt(rng.choice(train_titles)) for _ in range(cfg.prompts_per_step)]
        flat = [p for p in prompts for _ in range(cfg.k)]
        ids = sample_or_explain(policy, tok, flat, gen, "rlhf", step, cfg.lr, dtype)
        texts = [tok.decode_response(r) for r in ids]
        rows_ids, rows_mask = collate(prompt_and_response_rows(tok, flat, ids), tok.end_id, device)
        t1 = time.perf_counter()
        gold = torch.tensor([world.gold_reward(p, t) for p, t in zip(flat, texts)])
        with torch.no_grad(), autocast(device, dtype):
            ref_token_logps = sequence_logps(ref, rows_ids, rows_mask).token_logps
            proxy = rm(rows_ids, rows_mask).float().cpu() if rm is not None else gold
        t2 = time.perf_counter()
        with autocast(device, dtype):
            current = sequence_logps(policy, rows_ids, rows_mask, with_entropy=True)
        token_logps, logps, entropy = current.token_logps, current.logps, current.entropy
        log_ratio = (token_logps.detach() - ref_token_logps).float()       # per token, response only
        kl_k1 = log_ratio.sum(-1).cpu()
        kl_k3 = ((-log_ratio).exp() - 1 + log_ratio).sum(-1).cpu()         # ≥ 0 per sample
        returns = (proxy - cfg.beta * kl_k1).view(cfg.prompts_per_step, cfg.k)
        adv = leave_one_out_advantages(returns).flatten().to(device)
        loss = reinforce_loss(logps.float(), adv)
        check_finite(loss, "rlhf", step, policy, (logps,), cfg.lr, cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        check_weights_finite(policy, "rlhf", step, cfg.lr)  # before they are used to sample again
        t3 = time.perf_counter()
        seconds["sampling"] += t1 - t0
        seconds["scoring"] += t2 - t1
        seconds["update"] += t3 - t2
        n_tokens = rows_mask[:, 1:].sum().item()
        generated += sum(len(r) for r in ids)
        scored += (2 if rm is not None else 1) * rows_ids.numel()  # reference (+ reward model) passes
        updated += rows_ids.numel()                                # the policy's forward and backward
        record = {"step": step, "proxy_reward": proxy.mean().item(), "gold_reward": gold.mean().item(),
                  "kl_k1": kl_k1.mean().item(), "kl_k3": kl_k3.mean().item(),
                  "entropy": (entropy.sum() / max(1, n_tokens)).item(),
                  "length": sum(len(r) for r in ids) / len(ids),
                  "fluency": sum(world.is_fluent(p, t) for p, t in zip(flat, texts)) / len(flat),
                  "loss": loss.item(), "seconds": prog.elapsed()}
        history.append(record)
        prog.step(step, tokens=rows_ids.numel(), proxy=record["proxy_reward"], gold=record["gold_reward"],
                  kl=record["kl_k1"], len=record["length"])
        if checkpoint_every and step % checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint(out_dir / f"{out_name}_step{step}.pt", policy.state_dict(),
                            {"stage": "rlhf", "model": asdict(policy.config), "train": asdict(cfg), "step": step})
    policy.eval()
    metrics = {"config": asdict(cfg), "steps": cfg.steps, "seconds": prog.elapsed(), "time_split": seconds,
               "seconds_per_step": {k: v / cfg.steps for k, v in seconds.items()},
               "samples_generated": cfg.steps * cfg.prompts_per_step * cfg.k,
               "tokens_generated": generated, "tokens_forward": scored + updated, "tokens_backward": updated,
               "history": history}
    save_checkpoint(out_dir / f"{out_name}.pt", policy.state_dict(),
                    {"stage": "rlhf", "model": asdict(policy.config), "train": asdict(cfg),
                     "sft": str(sft_path), "reward_model": str(rm_path)})
    write_json(out_dir / f"{out_name}_metrics.json", metrics)
    return metrics


def first_step_reaching(history: list[dict], target: float, window: int = 10) -> int | None:
    """The first step at which the mean gold reward of the last `window` steps' samples reaches
    `target` (e.g. DPO's final gold reward), or None if it never does."""
    for i in range(window, len(history) + 1):
        if sum(r["gold_reward"] for r in history[i - window:i]) / window >= target:
            return i
    return None
