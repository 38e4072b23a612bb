"""Stage 6a: the reward model of classic RLHF — a GPT backbone plus a scalar head.

r_φ(x, y) = w · h_last + b, where h_last is the backbone's final hidden state at the last response
token (<|end|>, the token that has read the whole response). The backbone starts from the SFT
checkpoint; the head starts at zero, so every response starts with reward 0.

Training is Bradley–Terry maximum likelihood on the same pairs DPO uses:
    L = −log σ(r_φ(x, y_w) − r_φ(x, y_l))  +  λ·(r_φ(x, y_w) + r_φ(x, y_l))²
The second, optional term (λ = `center_weight`, small) only pins the reward's free additive
constant near 0; Bradley–Terry itself is blind to that constant.

Before RL the output is normalised to mean 0, std 1 on samples of the reference (SFT) policy, so
one β means the same KL strength whatever scale the head happened to learn. The two numbers are
buffers of the module, saved in its checkpoint.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, asdict
from pathlib import Path

import torch
import torch.nn as nn

from . import world
from .checkpoint import CheckpointError, load_checkpoint, load_gpt, model_config, save_checkpoint, write_json
from .data import collate, pair_batch, prompt_and_response_rows
from .distributed import global_share, shard, world_size, wrap
from .losses import bradley_terry_loss
from .model import GPT, GPTConfig
from .preferences import encode_pairs, oracle_accuracy, read_preferences
from .sampling import make_generator, sample
from .training import Progress, autocast, check_finite, lr_at, make_optimizer, set_lr


class RewardModel(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.backbone = GPT(cfg)
        self.head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("shift", torch.zeros(()))  # set by `normalise`
        self.register_buffer("scale", torch.ones(()))

    def raw(self, input_ids, response_mask):
        """Un-normalised reward (B,), read at each row's last response token."""
        h = self.backbone.hidden(input_ids)  # (B, T, C)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        last = (response_mask * positions).argmax(1)  # index of the last True in each row
        return self.head(h[torch.arange(len(h)), last]).squeeze(-1).float()

    def forward(self, input_ids, response_mask):
        return (self.raw(input_ids, response_mask) - self.shift) / self.scale


class _RawReward(nn.Module):
    """The reward model's raw score as a module's forward (what DDP wraps for training)."""

    def __init__(self, rm: RewardModel):
        super().__init__()
        self.rm = rm

    def forward(self, input_ids, response_mask):
        return self.rm.raw(input_ids, response_mask)


@dataclass
class RMConfig:
    lr: float = 1e-3
    epochs: int = 2
    batch_size: int = 32
    warmup: int = 10
    weight_decay: float = 0.0
    center_weight: float = 1e-3
    norm_samples: int = 512   # reference samples used for mean/std normalisation
    log_every: int = 10
    seed: int = 0

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(batch_size=16, norm_samples=64, log_every=5), **kw})


@torch.no_grad()
def score(rm, tok, prompts, responses_ids, batch_size: int = 256, dtype=None, raw: bool = False):
    """Reward of each (prompt, response tokens), normalised unless raw=True. CPU tensor (N,)."""
    device = next(rm.parameters()).device
    rows = prompt_and_response_rows(tok, prompts, responses_ids)
    rm.eval()
    out = []
    for i in range(0, len(rows), batch_size):
        ids, mask = collate(rows[i:i + batch_size], tok.end_id, device)
        with autocast(device, dtype):
            out.append((rm.raw(ids, mask) if raw else rm(ids, mask)).cpu())
    return torch.cat(out)


@torch.no_grad()
def pair_accuracy(rm, encoded_pairs, pad_id, dtype=None, batch_size: int = 128) -> tuple[float, float]:
    """(accuracy, mean Bradley–Terry loss) of the reward model on labelled pairs; a tie counts ½
    (so the zero-initialised head starts at chance, 0.5)."""
    rm.eval()
    correct, loss = 0.0, 0.0
    device = next(rm.parameters()).device
    for i in range(0, len(encoded_pairs), batch_size):
        chunk = encoded_pairs[i:i + batch_size]
        ids, mask = pair_batch(chunk, device, pad_id)
        with autocast(device, dtype):
            s = rm.raw(ids, mask)
        c, r = s[:len(chunk)], s[len(chunk):]
        correct += ((c > r).float() + 0.5 * (c == r).float()).sum().item()
        loss += bradley_terry_loss(c, r).sum().item()
    rm.train()
    return correct / len(encoded_pairs), loss / len(encoded_pairs)


def normalise(rm, policy, tok, prompts, seed: int, dtype=None) -> dict:
    """Set shift/scale so the reward of reference-policy samples has mean 0 and std 1."""
    device = next(policy.parameters()).device
    ids = sample(policy, tok, prompts, make_generator(seed, device), dtype=dtype)
    raw = score(rm, tok, prompts, ids, dtype=dtype, raw=True)
    rm.shift.fill_(raw.mean().item())
    rm.scale.fill_(raw.std().clamp(min=1e-6).item())
    gold = torch.tensor([world.gold_reward(p, tok.decode_response(r)) for p, r in zip(prompts, ids)])
    return {"raw_mean": raw.mean().item(), "raw_std": raw.std().item(),
            "gold_correlation": torch.corrcoef(torch.stack([raw, gold]))[0, 1].item()}


def train_reward_model(cfg: RMConfig, tok, sft_path, train_file, val_file, out_dir,
                       device=torch.device("cpu"), dtype=None, quiet: bool = False,
                       max_train_pairs: int | None = None, out_name: str = "reward_model",
                       loss_fn=None) -> dict:
    """Train on `train_file` pairs (optionally only the first `max_train_pairs`); write
    out_dir/{out_name}.pt and {out_name}_metrics.json. `loss_fn(chosen, rejected)` -> per-pair
    losses: None is `bradley_terry_loss` (the exercises pass a learner's own)."""
    loss_fn = loss_fn or bradley_terry_loss  # resolved at the call: the module's function then (a test swaps it)
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    sft, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
    rm = RewardModel(sft.config).to(device)
    rm.backbone.load_state_dict(sft.state_dict())
    train_pairs, _ = read_preferences(train_file)
    val_pairs, _ = read_preferences(val_file)
    train_pairs = train_pairs[:max_train_pairs]
    train_enc, _ = encode_pairs(tok, train_pairs, sft.config.block_size)
    val_enc, _ = encode_pairs(tok, val_pairs, sft.config.block_size)

    opt = make_optimizer(rm, cfg.lr, cfg.weight_decay)
    forward_rm = wrap(_RawReward(rm))  # DDP under torchrun; the raw reward otherwise
    steps_per_epoch = (len(train_enc) + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    prog = Progress("reward-model", total, every=cfg.log_every, quiet=quiet)
    rng = random.Random(cfg.seed)
    history = {"step": [0], "val_accuracy": [pair_accuracy(rm, val_enc, tok.end_id, dtype)[0]],
               "train_loss": [float("nan")], "train_accuracy": [float("nan")]}
    rm.train()
    step = tokens = 0
    for _ in range(cfg.epochs):
        order = list(range(len(train_enc)))
        rng.shuffle(order)
        for b in range(steps_per_epoch):
            chunk = [train_enc[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            n_global = len(chunk)
            chunk = shard(chunk)  # this rank's pairs (all of them in one process)
            set_lr(opt, lr_at(step, total, cfg.lr, cfg.warmup))
            step += 1
            ids, mask = pair_batch(chunk, device, tok.end_id)
            with autocast(device, dtype):
                s = forward_rm(ids, mask)
            c, r = s[:len(chunk)], s[len(chunk):]
            loss = loss_fn(c, r).mean() + cfg.center_weight * ((c + r) ** 2).mean()
            check_finite(loss, "reward-model", step, rm, (s,), cfg.lr)
            opt.zero_grad(set_to_none=True)
            (loss * global_share(len(chunk), n_global) if world_size() > 1 else loss).backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
            opt.step()
            acc = (c > r).float().mean().item()
            tokens += ids.numel()
            if step % cfg.log_every == 0 or step == total:
                history["step"].append(step)
                history["train_loss"].append(loss.item())
                history["train_accuracy"].append(acc)
                history["val_accuracy"].append(pair_accuracy(rm, val_enc, tok.end_id, dtype)[0])
            prog.step(step, tokens=ids.numel(), loss=loss.item(), acc=acc,
                      val_acc=history["val_accuracy"][-1])
    val_acc, val_loss = pair_accuracy(rm, val_enc, tok.end_id, dtype)
    train_titles, heldout_titles = world.split_titles()
    rng_titles = random.Random(cfg.seed)
    norm_prompts = [world.make_prompt(rng_titles.choice(train_titles)) for _ in range(cfg.norm_samples)]
    norm = normalise(rm, sft, tok, norm_prompts, cfg.seed + 7, dtype)
    # correlation with the gold reward on fresh SFT samples of held-out films
    heldout_prompts = [world.make_prompt(t) for t in heldout_titles for _ in range(4)]
    ids = sample(sft, tok, heldout_prompts, make_generator(cfg.seed + 8, device), dtype=dtype)
    learned = score(rm, tok, heldout_prompts, ids, dtype=dtype)
    gold = torch.tensor([world.gold_reward(p, tok.decode_response(r)) for p, r in zip(heldout_prompts, ids)])
    metrics = {"config": asdict(cfg), "seconds": prog.elapsed(), "train_pairs": len(train_enc),
               "tokens_forward": tokens, "tokens_backward": tokens,
               "samples_generated": len(norm_prompts) + len(heldout_prompts),
               "val_accuracy": val_acc, "val_loss": val_loss, "oracle_accuracy": oracle_accuracy(val_pairs),
               "normalisation": norm,
               "gold_correlation_heldout": torch.corrcoef(torch.stack([learned, gold]))[0, 1].item(),
               "scatter": {"learned": learned.tolist(), "gold": gold.tolist()},
               "history": history}
    metrics["accuracy_vs_oracle"] = val_acc / metrics["oracle_accuracy"]
    save_checkpoint(out_dir / f"{out_name}.pt", rm.state_dict(),
                    {"stage": "reward_model", "model": asdict(sft.config), "train": asdict(cfg),
                     "sft": str(sft_path)})
    write_json(out_dir / f"{out_name}_metrics.json", metrics)
    return metrics


def load_reward_model(path, device="cpu", vocab_size: int | None = None) -> RewardModel:
    state, config = load_checkpoint(path)
    rm = RewardModel(model_config(config, path, vocab_size))
    try:
        rm.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: not a reward-model checkpoint ({str(e).splitlines()[0]})") from None
    return rm.to(device).eval()
