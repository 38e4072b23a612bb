"""RLHF with PPO, the way InstructGPT (Ouyang et al. 2022) and TRL's PPOTrainer do it. Read it
next to rlhf.py: the rollouts are the same (`rollouts.RLLoop`); what PPO adds is a value function,
per-token credit assignment, and several clipped updates per batch of samples.

One step:
  1. rollouts: B prompts × K samples from the current policy, exactly on-policy (temperature 1);
  2. score once, without gradient: the sampling policy's log-probs log π_old(y_t) per token, the
     reference's log π_ref(y_t), the value model's V(s_t) before each response token, and the
     reward r(x, y): the reward model's normalised score, or the gold reward (`reward="gold"`:
     PPO-GT, the DPO paper's PPO on the ground-truth reward);
  3. per-token rewards: r_t = −β·(log π_old(y_t) − log π_ref(y_t)) at every response token, and
     r(x, y) added at the last one (the KL penalty spread over tokens, as TRL does);
  4. GAE (Schulman et al. 2016) with γ = 1, λ = 0.95: δ_t = r_t + γ·V(s_{t+1}) − V(s_t),
     A_t = δ_t + γλ·A_{t+1} (V = 0 after the last token); the value targets R_t = A_t + V(s_t);
     then the advantages are whitened (mean 0, std 1 over the batch's response tokens);
  5. `epochs` passes over the rollouts in `minibatches`: with ρ_t = π_θ(y_t)/π_old(y_t),
       policy loss = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε))                 (PPO eq. 7)
       value loss  = ½·mean_t max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²)
     each model takes an AdamW step on its own loss, with gradient clipping.

Logged each step, beside rlhf.py's numbers: `approx_kl` (how far the step's updates moved the
policy: the k3 estimate of KL(π_old ‖ π_θ) per token on the rollout's tokens, `approx_kl` below;
TRL logs k2 = ½·mean (log π_θ − log π_old)² per minibatch during the updates instead), `clip_frac`
(fraction of tokens whose ratio was clipped), `value_ev` (explained variance of the value targets
by the old values, 1 − Var(R − V)/Var(R)), entropy.

The value function lives in its own model: a GPT backbone with a scalar head read at every
position, so its loss never disturbs the policy's representation (a value head on the policy's
own trunk, as early TRL did, couples the two losses through shared weights). InstructGPT and
TRL initialise it from the reward model; here it starts from the SFT backbone with a zero head,
so PPO on the gold reward (which has no reward model) is the same algorithm, and every run starts
from V = 0.

Simplifications, on purpose:
  - no reward whitening or clipping, no penalty for a response cut at max length;
  - a fixed KL coefficient β (no adaptive KL controller), the k1 per-token penalty;
  - the reference is the frozen SFT model; one learning rate schedule: constant;
  - the policy and the value model step with their own AdamW and learning rate on their own loss
    (TRL sums the two losses, with a value coefficient, into one backward pass);
  - no early stopping of the epochs on a large approx_kl.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .checkpoint import load_gpt
from .model import GPT, sequence_logps
from .rollouts import RLLoop
from .training import autocast, check_finite, make_optimizer


@dataclass
class PPOConfig:
    beta: float = 0.05          # KL coefficient, as for REINFORCE
    steps: int = 100            # rollout batches
    prompts_per_step: int = 16
    k: int = 4                  # samples per prompt (same sampling budget per step as REINFORCE)
    lr: float = 1e-4            # policy
    value_lr: float = 1e-3
    epochs: int = 4             # passes over each batch of rollouts
    minibatches: int = 2
    clip: float = 0.2           # ε of the clipped surrogate
    clip_value: float = 0.2     # ε_v of the clipped value loss
    gamma: float = 1.0
    lam: float = 0.95
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    log_every: int = 10
    seed: int = 0
    reward: str = "learned"     # "learned" (the reward model) or "gold" (PPO-GT)

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(steps=20, prompts_per_step=8, epochs=2, log_every=5), **kw})


class ValueModel(nn.Module):
    """V(s_t): a GPT backbone and a scalar head read at every position."""

    def __init__(self, backbone: GPT):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids):
        """(B, T-1): the value at each position that predicts the next token (as logits do)."""
        return self.head(self.backbone.hidden(input_ids[:, :-1])).squeeze(-1).float()


def token_rewards(reward, policy_token_logps, ref_token_logps, mask, beta: float) -> torch.Tensor:
    """(N, T-1): −β·(log π_old − log π_ref) at each response token, plus the sequence reward at the
    last response token of each row."""
    rewards = -beta * (policy_token_logps - ref_token_logps) * mask
    last = (mask * torch.arange(mask.size(1), device=mask.device)).argmax(1)  # last True per row
    rewards[torch.arange(len(mask)), last] += reward.to(rewards.device)
    return rewards


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation along each row's response tokens (mask True), backwards:
    δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}, with V and A = 0 past the last token.
    Returns (advantages, returns = advantages + values), both 0 outside the mask."""
    mask = mask.float()
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_value = next_advantage = torch.zeros(rewards.size(0), device=rewards.device)
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value, next_advantage = values[:, t], advantages[:, t]
    return advantages, (advantages + values) * mask


def whiten(x, mask) -> torch.Tensor:
    """(x − mean) / std over the masked entries (0 elsewhere)."""
    n = mask.sum()
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / (n - 1).clamp(min=1)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def masked_mean(x, mask) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def clipped_policy_loss(new_logps, old_logps, advantages, mask, clip: float):
    """PPO's clipped surrogate, per token, averaged over the response tokens; also returns the
    fraction of tokens where the clipped term was the larger loss (the clip fraction)."""
    ratio = torch.exp(new_logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_frac


def approx_kl(new_logps, old_logps, mask) -> torch.Tensor:
    """k3 (Schulman 2020) of KL(π_old ‖ π_θ), per token, averaged over the response tokens, on
    tokens sampled from π_old: with r = π_θ/π_old, (r − 1) − log r ≥ 0, unbiased because
    E_old[r] = 1 and E_old[−log r] = KL(π_old ‖ π_θ). (The ratio the other way round, π_old/π_θ,
    would need samples from π_θ.)"""
    log_r = (new_logps - old_logps) * mask
    return masked_mean(log_r.exp() - 1 - log_r, mask)


def clipped_value_loss(values, old_values, returns, mask, clip: float):
    """½·max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²), averaged over the response tokens."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def explained_variance(values, returns, mask) -> float:
    """1 − Var(R − V)/Var(R) over the response tokens: 1 = the values predict the targets."""
    m = mask.bool()
    r, v = returns[m], values[m]
    var = r.var()
    return float("nan") if var == 0 else (1 - (r - v).var() / var).item()


def train_ppo(cfg: PPOConfig, tok, sft_path, rm_path, out_dir, device=torch.device("cpu"), dtype=None,
              quiet: bool = False, out_name: str = "ppo", checkpoint_steps=(), gae_fn=None,
              policy_loss_fn=None) -> dict:
    """PPO from the SFT checkpoint against the reward model at `rm_path` (or the gold reward when
    cfg.reward == "gold"). Writes out_dir/{out_name}.pt and {out_name}_metrics.json. `gae_fn` (step 4)
    and `policy_loss_fn` (step 5): None is the library's, `gae` and `clipped_policy_loss` (the
    exercises pass a learner's own)."""
    gae_fn, policy_loss_fn = gae_fn or gae, policy_loss_fn or clipped_policy_loss
    loop = RLLoop("ppo", cfg, tok, sft_path, rm_path, out_dir, device, dtype, quiet, out_name, checkpoint_steps)
    policy = loop.policy
    value = ValueModel(load_gpt(sft_path, device, vocab_size=tok.vocab_size)[0]).to(device)
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    value_opt = make_optimizer(value, cfg.value_lr, cfg.weight_decay)
    for step in range(1, cfg.steps + 1):
        batch = loop.rollout(step)                                                          # step 1
        mask = batch.mask.float()
        with loop.timed("scoring"), torch.no_grad(), autocast(loop.device, dtype):          # step 2
            old = sequence_logps(policy, batch.rows_ids, batch.rows_mask, with_entropy=True)
            old_values = value(batch.rows_ids) * mask
        rewards = token_rewards(batch.reward, old.token_logps, batch.ref_token_logps, mask, cfg.beta)  # step 3
        advantages, returns = gae_fn(rewards, old_values, mask, cfg.gamma, cfg.lam)        # step 4
        advantages = whiten(advantages, mask)
        stats = {"clip_frac": [], "policy_loss": [], "value_loss": []}
        with loop.timed("update"):                                                           # step 5
            for i in loop.minibatches(len(mask)):
                with autocast(loop.device, dtype):
                    new = sequence_logps(policy, batch.rows_ids[i], batch.rows_mask[i])
                    new_values = value(batch.rows_ids[i])
                pg_loss, clip_frac = policy_loss_fn(new.token_logps.float(), old.token_logps[i],
                                                    advantages[i], mask[i], cfg.clip)
                vf_loss = clipped_value_loss(new_values, old_values[i], returns[i], mask[i], cfg.clip_value)
                check_finite(pg_loss, "ppo", step, policy, (new.logps,), cfg.lr, cfg.beta)
                check_finite(vf_loss, "ppo (value)", step, value, lr=cfg.value_lr)
                for model, optimizer, loss in ((policy, opt, pg_loss), (value, value_opt, vf_loss)):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                for k, v in (("clip_frac", clip_frac), ("policy_loss", pg_loss), ("value_loss", vf_loss)):
                    stats[k].append(v.item())
                loop.updated += 2 * batch.rows_ids[i].numel()  # policy and value, forward and backward
            with torch.no_grad(), autocast(loop.device, dtype):
                after = sequence_logps(policy, batch.rows_ids, batch.rows_mask).token_logps.float()
            moved = approx_kl(after, old.token_logps, mask).item()  # KL(π_old ‖ π_θ), k3 on π_old's tokens
        mean = lambda xs: sum(xs) / len(xs)
        loop.log(step, batch, old.token_logps, old.entropy, mean(stats["policy_loss"]),
                 value_loss=mean(stats["value_loss"]), clip_frac=mean(stats["clip_frac"]), approx_kl=moved,
                 value_ev=explained_variance(old_values, returns, mask))
    return loop.finish(value_model={"init": "SFT backbone, zero head", "params": sum(p.numel() for p in value.parameters())})
