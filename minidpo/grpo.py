"""GRPO, Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath §4.1): PPO's clipped
ratio without a value model. The baseline of a sample is the other samples of its own prompt.

One step:
  1. rollouts: B prompts × K samples each (the group), exactly on-policy (`rollouts.RLLoop`);
  2. score: the reward r_i of each sample (the reward model's, or gold with `reward="gold"`), the
     sampling policy's log-probs log π_old(y_t) and the reference's log π_ref(y_t), per token;
  3. group-normalised advantages (eq. 3's Â): A_i = (r_i − mean(r_group)) / (std(r_group) + 1e-4),
     the same A_i for every token of sample i (outcome supervision);
  4. `epochs` passes over the rollouts in `minibatches`, with ρ_t = π_θ(y_t)/π_old(y_t):
       L = mean_i (1/|y_i|) Σ_t [ max(−A_i·ρ_t, −A_i·clip(ρ_t, 1−ε, 1+ε)) + β·k3_t ]
     where k3_t = π_ref/π_θ − log(π_ref/π_θ) − 1 ≥ 0 is the KL estimator of eq. 4, in the loss
     itself rather than in the reward as in PPO and REINFORCE.

Compared with REINFORCE's leave-one-out baseline (rlhf.py): the same idea of a group baseline, plus
a division by the group's spread, the clipped importance ratio that allows several updates per
batch, and the KL as a loss term. Compared with PPO (ppo.py): no value model, no GAE.

Simplifications, on purpose: the reference is the frozen SFT model (no periodic reference update);
a constant learning rate; a group whose rewards are all equal has A = 0 (no signal), as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import sequence_logps
from .ppo import masked_mean
from .rollouts import RLLoop
from .training import autocast, check_finite, make_optimizer


@dataclass
class GRPOConfig:
    beta: float = 0.04          # weight of the k3 KL term in the loss (DeepSeekMath: 0.04)
    steps: int = 100
    prompts_per_step: int = 8
    k: int = 8                  # samples per prompt: the group
    lr: float = 1e-4
    epochs: int = 2
    minibatches: int = 2
    clip: float = 0.2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    log_every: int = 10
    seed: int = 0
    reward: str = "learned"

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(steps=20, prompts_per_step=4, epochs=1, log_every=5), **kw})


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """rewards: (B, K), one row per prompt. (r − mean of its group) / (std of its group + eps)."""
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True) if rewards.size(1) > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def k3(policy_token_logps, ref_token_logps) -> torch.Tensor:
    """Per token: π_ref/π − log(π_ref/π) − 1, ≥ 0, an unbiased estimate of KL(π ‖ π_ref) (eq. 4)."""
    log_ratio = ref_token_logps - policy_token_logps
    return log_ratio.exp() - log_ratio - 1


def grpo_loss(new_logps, old_logps, ref_logps, advantages, mask, clip: float, beta: float):
    """DeepSeekMath eq. 3 for a minibatch: per-token clipped surrogate plus β·k3, averaged over each
    sample's tokens, then over the samples. Returns (loss, clip fraction)."""
    adv = advantages.unsqueeze(1).expand_as(new_logps)
    ratio = torch.exp(new_logps - old_logps)
    unclipped, clipped = -adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)
    per_token = torch.maximum(unclipped, clipped) + beta * k3(new_logps, ref_logps)
    per_sample = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_sample.mean(), masked_mean((clipped > unclipped).float(), mask)


def train_grpo(cfg: GRPOConfig, tok, sft_path, rm_path, out_dir, device=torch.device("cpu"), dtype=None,
               quiet: bool = False, out_name: str = "grpo", checkpoint_steps=(),
               advantages_fn=None) -> dict:
    """GRPO from the SFT checkpoint against the reward model at `rm_path` (or the gold reward).
    Writes out_dir/{out_name}.pt and {out_name}_metrics.json. `advantages_fn` (step 3): None is the
    library's `group_advantages` (the exercises pass a learner's own)."""
    advantages_fn = advantages_fn or group_advantages
    if cfg.k < 2:
        raise ValueError("GRPO needs k >= 2 samples per prompt (the group is the baseline)")
    loop = RLLoop("grpo", cfg, tok, sft_path, rm_path, out_dir, device, dtype, quiet, out_name, checkpoint_steps)
    policy = loop.policy
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    for step in range(1, cfg.steps + 1):
        batch = loop.rollout(step)                                                          # step 1
        mask = batch.mask.float()
        with loop.timed("scoring"), torch.no_grad(), autocast(loop.device, dtype):          # step 2
            old = sequence_logps(policy, batch.rows_ids, batch.rows_mask, with_entropy=True)
        advantages = advantages_fn(batch.reward.view(cfg.prompts_per_step, cfg.k)).flatten().to(loop.device)
        losses, clip_fracs = [], []
        with loop.timed("update"):                                                           # step 4
            for i in loop.minibatches(len(mask)):
                with autocast(loop.device, dtype):
                    new = sequence_logps(policy, batch.rows_ids[i], batch.rows_mask[i])
                loss, clip_frac = grpo_loss(new.token_logps.float(), old.token_logps[i],
                                            batch.ref_token_logps[i].float(), advantages[i], mask[i],
                                            cfg.clip, cfg.beta)
                check_finite(loss, "grpo", step, policy, (new.logps,), cfg.lr, cfg.beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                opt.step()
                losses.append(loss.item())
                clip_fracs.append(clip_frac.item())
                loop.updated += batch.rows_ids[i].numel()
        loop.log(step, batch, old.token_logps, old.entropy, sum(losses) / len(losses),
                 clip_frac=sum(clip_fracs) / len(clip_fracs))
    return loop.finish()
