"""What the three RL algorithms (REINFORCE in rlhf.py, PPO in ppo.py, GRPO in grpo.py) share: the
loop around them. `RLLoop` loads the policy, the frozen reference and the reward, draws training
prompts, samples rollouts exactly on-policy (temperature 1, no top-k, the KV cache), scores them,
times the phases, logs one record per step and writes the checkpoint and metrics. An algorithm only
says how it turns a `Rollout` into an update.

The reward is the learned reward model's normalised score (`reward="learned"`) or the gold reward
r*(x, y) itself (`reward="gold"`: RL on the true reward, e.g. PPO-GT in the DPO paper's Figure 2).
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import world
from .checkpoint import load_gpt, save_checkpoint, write_json
from .data import collate, prompt_and_response_rows
from .distributed import gather_shards, rank, shard, sync_from_main
from .model import sequence_logps
from .reward_model import load_reward_model
from .sampling import make_generator, sample
from .training import Progress, autocast, check_weights_finite


SHUFFLE_SEED_OFFSET = 1  # the minibatch shuffle's seed, apart from the sampling seed
RANK_SEED_OFFSET = 1000  # under torchrun, rank r samples with seed + r × this (rank 0: the plain seed)


@dataclass
class Rollout:
    """N = prompts × k responses sampled from the policy, and what is known about them."""
    prompts: list[str]              # (N,) each prompt repeated k times, in groups
    ids: list[list[int]]            # the sampled response tokens (ending with <|end|> unless cut)
    texts: list[str]
    rows_ids: torch.Tensor          # (N, T) prompt + response, right-padded
    rows_mask: torch.Tensor         # (N, T) True on response tokens
    gold: torch.Tensor              # (N,) r*(x, y)
    reward: torch.Tensor            # (N,) the reward optimised: the reward model's, or gold
    ref_token_logps: torch.Tensor   # (N, T-1) log π_ref per response token (0 elsewhere)

    @property
    def mask(self) -> torch.Tensor:
        """(N, T-1): the next-token positions that predict a response token."""
        return self.rows_mask[:, 1:]


def sample_or_explain(policy, tok, prompts, gen, stage: str, step: int, lr: float, dtype=None):
    """On-policy samples (temperature 1, no top-k); when the last update broke the policy, the
    error names the learning rate that did it instead of failing inside torch."""
    try:
        return sample(policy, tok, prompts, gen, temperature=1.0, top_k=None, dtype=dtype)
    except FloatingPointError as e:
        raise FloatingPointError(f"{stage}: cannot sample at step {step}: {e}; the update before it, with "
                                 f"learning rate {lr:g}, was too large: try a lower --lr") from None


def kl_estimates(policy_token_logps, ref_token_logps) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample sequence KL estimates to the reference from the sample's own tokens:
    k1 = Σ_t log π/π_ref (unbiased, can be negative) and k3 = Σ_t (π_ref/π − 1 − log π_ref/π) ≥ 0."""
    log_ratio = (policy_token_logps.detach() - ref_token_logps).float()
    return log_ratio.sum(-1).cpu(), ((-log_ratio).exp() - 1 + log_ratio).sum(-1).cpu()


class RLLoop:
    """The frame of an RL run from the SFT checkpoint; see the module docstring."""

    def __init__(self, stage: str, cfg, tok, sft_path, rm_path, out_dir, device, dtype=None, quiet=False,
                 out_name: str | None = None, checkpoint_steps=()):
        if cfg.reward not in ("learned", "gold"):
            raise ValueError(f"reward must be 'learned' or 'gold', not {cfg.reward!r}")
        if not cfg.beta >= 0:  # also refuses NaN
            raise ValueError(f"{stage}: β must be ≥ 0 (a negative KL coefficient pays the policy to leave the "
                             f"reference), not {cfg.beta}")
        self.stage, self.cfg, self.tok, self.device, self.dtype = stage, cfg, tok, device, dtype
        self.out_dir, self.out_name = Path(out_dir), out_name or stage
        self.checkpoint_steps, self.sft_path, self.rm_path = set(checkpoint_steps), sft_path, rm_path
        torch.manual_seed(cfg.seed)
        self.policy, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
        self.ref, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
        self.ref.eval()
        self.rm = load_reward_model(rm_path, device, tok.vocab_size) if cfg.reward == "learned" else None
        self.titles = world.split_titles()[0]
        self.rng = random.Random(cfg.seed)
        self.gen = make_generator(cfg.seed + RANK_SEED_OFFSET * rank(), device)  # sampling
        self.shuffle = torch.Generator().manual_seed(cfg.seed + SHUFFLE_SEED_OFFSET)  # minibatch order
        self.prog = Progress(stage, cfg.steps, every=cfg.log_every, quiet=quiet)
        self.history: list[dict] = []
        self.seconds = {"sampling": 0.0, "scoring": 0.0, "update": 0.0}
        self.generated = self.scored = self.updated = 0  # tokens: generated; through no-grad and grad passes

    @contextlib.contextmanager
    def timed(self, phase: str):
        t = time.perf_counter()
        yield
        self.seconds[phase] += time.perf_counter() - t

    def minibatches(self, n: int):
        """Row indices for the update: `epochs` passes over the n rollouts, each in a fresh order
        (the loop's shuffle generator), cut into `minibatches` parts (PPO and GRPO)."""
        size = math.ceil(n / self.cfg.minibatches)
        for _ in range(self.cfg.epochs):
            order = torch.randperm(n, generator=self.shuffle)
            for start in range(0, n, size):
                yield order[start:start + size].to(self.device)

    def rollout(self, step: int) -> Rollout:
        """Draw `prompts_per_step` training prompts, sample `k` responses each from the current
        policy, score them with the reward and the reference (no gradient). Under torchrun each rank
        samples its shard of the responses and every rank receives all of them."""
        cfg, tok = self.cfg, self.tok
        with self.timed("sampling"):
            prompts = [world.make_prompt(self.rng.choice(self.titles)) for _ in range(cfg.prompts_per_step)]
            flat = [p for p in prompts for _ in range(cfg.k)]
            mine = sample_or_explain(self.policy, tok, shard(flat), self.gen, self.stage, step, cfg.lr, self.dtype)
            ids = gather_shards(mine, len(flat))
            texts = [tok.decode_response(r) for r in ids]
            rows_ids, rows_mask = collate(prompt_and_response_rows(tok, flat, ids), tok.end_id, self.device)
        with self.timed("scoring"):
            gold = torch.tensor([world.gold_reward(p, t) for p, t in zip(flat, texts)])
            with torch.no_grad(), autocast(self.device, self.dtype):
                ref_token_logps = sequence_logps(self.ref, rows_ids, rows_mask).token_logps
                reward = self.rm(rows_ids, rows_mask).float().cpu() if self.rm is not None else gold
        self.generated += sum(len(r) for r in ids)
        self.scored += (2 if self.rm is not None else 1) * rows_ids.numel()
        return Rollout(flat, ids, texts, rows_ids, rows_mask, gold, reward, ref_token_logps)

    def log(self, step: int, batch: Rollout, policy_token_logps, entropy, loss: float, **extra) -> dict:
        """One record per step: proxy and gold reward of the step's samples, KL to the reference
        (k1 and k3, from the policy that sampled them), entropy, length, fluency, the loss, and
        whatever the algorithm adds (clip fraction, value error ...)."""
        kl_k1, kl_k3 = kl_estimates(policy_token_logps, batch.ref_token_logps)
        n_tokens = batch.mask.sum().item()
        record = {"step": step, "proxy_reward": batch.reward.mean().item(), "gold_reward": batch.gold.mean().item(),
                  "kl_k1": kl_k1.mean().item(), "kl_k3": kl_k3.mean().item(),
                  "entropy": (entropy.sum() / max(1, n_tokens)).item(),
                  "length": sum(len(r) for r in batch.ids) / len(batch.ids),
                  "fluency": sum(world.is_fluent(p, t) for p, t in zip(batch.prompts, batch.texts)) / len(batch.prompts),
                  "loss": loss, **extra, "seconds": self.prog.elapsed()}
        self.history.append(record)
        self.prog.step(step, tokens=batch.rows_ids.numel(), proxy=record["proxy_reward"], gold=record["gold_reward"],
                       kl=record["kl_k1"], len=record["length"])
        sync_from_main(self.policy)  # under torchrun: every rank samples from rank 0's weights
        check_weights_finite(self.policy, self.stage, step, self.cfg.lr)  # before they sample again
        if step in self.checkpoint_steps and step < self.cfg.steps:  # checkpoints along training
            self._save(self.out_dir / f"{self.out_name}_step{step}.pt", step)
        return record

    def finish(self, **extra) -> dict:
        """Write the final checkpoint and the metrics; return the metrics."""
        self.policy.eval()
        cfg = self.cfg
        metrics = {"config": asdict(cfg), "steps": cfg.steps, "seconds": self.prog.elapsed(),
                   "time_split": self.seconds,
                   "seconds_per_step": {k: v / cfg.steps for k, v in self.seconds.items()},
                   "samples_generated": cfg.steps * cfg.prompts_per_step * cfg.k,
                   "tokens_generated": self.generated, "tokens_forward": self.scored + self.updated,
                   "tokens_backward": self.updated, **extra, "history": self.history}
        self._save(self.out_dir / f"{self.out_name}.pt")
        write_json(self.out_dir / f"{self.out_name}_metrics.json", metrics)
        return metrics

    def _save(self, path, step: int | None = None):
        config = {"stage": self.stage, "model": asdict(self.policy.config), "train": asdict(self.cfg),
                  "sft": str(self.sft_path), "reward_model": str(self.rm_path)}
        save_checkpoint(path, self.policy.state_dict(), config if step is None else {**config, "step": step})
