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

from dataclasses import dataclass

import torch

from .model import sequence_logps
from .rollouts import RLLoop, kl_estimates
from .training import autocast, check_finite, make_optimizer, set_lr


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


def kl_penalised_advantages(rewards, policy_token_logps, ref_token_logps, beta: float) -> torch.Tensor:
    """Steps 3 and 4. rewards: (B, K), K samples of each of B prompts; per-token log-probs (B, K, T),
    0 outside the response. R = r − β·Σ_t [log π − log π_ref] (k1, detached), then the
    leave-one-out advantages of R within each prompt, (B, K)."""
    kl_k1, _ = kl_estimates(policy_token_logps, ref_token_logps)
    return leave_one_out_advantages(rewards - beta * kl_k1)


def reinforce_loss(seq_logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−mean(A · log π(y|x)); A is a constant (detached), only log π carries gradient."""
    return -(advantages.detach() * seq_logps).mean()


def train_rlhf(cfg: RLHFConfig, tok, sft_path, rm_path, out_dir, device=torch.device("cpu"), dtype=None,
               quiet: bool = False, out_name: str = "rlhf", checkpoint_steps=(),
               advantages_fn=None, loss_fn=None) -> dict:
    """REINFORCE from the SFT checkpoint against the reward model at `rm_path`
    (or the gold reward when cfg.reward == "gold"). Writes out_dir/{out_name}.pt and metrics.
    `advantages_fn` (steps 3–4) and `loss_fn` (step 5): None is the library's, `kl_penalised_advantages`
    and `reinforce_loss` (the exercises pass a learner's own)."""
    # resolved at the call: the module's functions then (a test swaps reinforce_loss)
    advantages_fn, loss_fn = advantages_fn or kl_penalised_advantages, loss_fn or reinforce_loss
    loop = RLLoop("rlhf", cfg, tok, sft_path, rm_path, out_dir, device, dtype, quiet, out_name, checkpoint_steps)
    policy = loop.policy
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    set_lr(opt, cfg.lr)
    for step in range(1, cfg.steps + 1):
        batch = loop.rollout(step)                                          # steps 1 and 2
        with loop.timed("update"):
            with autocast(loop.device, dtype):
                current = sequence_logps(policy, batch.rows_ids, batch.rows_mask, with_entropy=True)
            groups = (cfg.prompts_per_step, cfg.k, -1)  # prompt × sample × token
            adv = advantages_fn(batch.reward.view(groups[:2]), current.token_logps.view(groups),  # steps 3, 4
                                batch.ref_token_logps.view(groups), cfg.beta).flatten().to(loop.device)
            loss = loss_fn(current.logps.float(), adv)                                      # step 5
            check_finite(loss, "rlhf", step, policy, (current.logps,), cfg.lr, cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
        loop.updated += batch.rows_ids.numel()  # the policy's forward and backward
        loop.log(step, batch, current.token_logps, current.entropy, loss.item())
    return loop.finish()


def first_step_reaching(history: list[dict], target: float, window: int = 10) -> int | None:
    """The first step at which the mean gold reward of the last `window` steps' samples reaches
    `target` (e.g. DPO's final gold reward), or None if it never does."""
    for i in range(window, len(history) + 1):
        if sum(r["gold_reward"] for r in history[i - window:i]) / window >= target:
            return i
    return None
