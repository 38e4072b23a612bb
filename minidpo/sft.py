"""Stage 4: supervised fine-tuning (SFT) on the world's corpus.

Next-token cross-entropy on response tokens only: the prompt is given, not learned (its targets are
-100). AdamW (decay on 2-D weights only), linear warmup + cosine decay, held-out loss on reviews of
films never seen in training. The checkpoint is `sft.pt` + `sft.json` in the output folder.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, asdict, field
from pathlib import Path

import torch

from . import world
from .checkpoint import save_checkpoint, write_json
from .data import render, collate, sft_targets
from .model import GPT, GPTConfig
from .tokenizer import Tokenizer
from .training import (Progress, autocast, check_finite, lr_at, make_optimizer, measure_matmul_peak,
                       set_lr, train_flops_per_token)


@dataclass
class SFTConfig:
    n_train: int = 20000
    n_val: int = 1000
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.1
    eval_every: int = 100
    seed: int = 0
    model: dict = field(default_factory=lambda: asdict(GPTConfig()))

    @classmethod
    def fast(cls, **kw):
        """A tiny config for tests and `--fast`: runs in seconds, still learns the grammar a bit."""
        base = dict(n_train=4000, n_val=200, steps=200, batch_size=32, eval_every=50,
                    model=asdict(GPTConfig(n_layer=2, n_head=2, n_embd=64)))
        base.update(kw)
        return cls(**base)


@torch.no_grad()
def mean_response_loss(model, rows, pad_id, device, dtype=None, batch_size=256) -> float:
    """Token-weighted mean cross-entropy over the response tokens of `rows`."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        ids, mask = collate(rows[i:i + batch_size], pad_id, device)
        x, y = sft_targets(ids, mask)
        with autocast(device, dtype):
            _, loss = model(x, y)
        n = int((y != -100).sum())
        total, count = total + loss.item() * n, count + n
    model.train()
    return total / count


def train_sft(cfg: SFTConfig, tok: Tokenizer, out_dir, device=torch.device("cpu"), dtype=None,
              quiet: bool = False) -> dict:
    """Train, save `out_dir/sft.pt`, return the metrics dict (also written to sft_metrics.json)."""
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    train_titles, heldout_titles = world.split_titles()
    train = [render(tok, p, r) for p, r in world.make_corpus(cfg.n_train, cfg.seed, train_titles)]
    val = [render(tok, p, r) for p, r in world.make_corpus(cfg.n_val, cfg.seed + 1, heldout_titles)]
    model_cfg = GPTConfig(**{**cfg.model, "vocab_size": tok.vocab_size})
    model = GPT(model_cfg).to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    rng = random.Random(cfg.seed)
    mean_len = sum(len(r[0]) for r in train) / len(train)
    peak = measure_matmul_peak(device) if device.type == "cpu" else None
    prog = Progress("sft", cfg.steps, every=max(1, cfg.eval_every // 2), peak_flops=peak,
                    flops_per_token=train_flops_per_token(model_cfg, round(mean_len)), quiet=quiet)
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    history["val_step"].append(0)
    history["val_loss"].append(mean_response_loss(model, val, tok.end_id, device, dtype))
    model.train()
    for step in range(1, cfg.steps + 1):
        set_lr(opt, lr_at(step - 1, cfg.steps, cfg.lr, cfg.warmup))
        ids, mask = collate(rng.sample(train, cfg.batch_size), tok.end_id, device)
        x, y = sft_targets(ids, mask)
        with autocast(device, dtype):
            _, loss = model(x, y)
        check_finite(loss, "sft", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history["val_step"].append(step)
            history["val_loss"].append(mean_response_loss(model, val, tok.end_id, device, dtype))
        prog.step(step, tokens=x.numel(), loss=loss.item(), val=history["val_loss"][-1])
    model.eval()
    metrics = {"train_loss_last": history["train_loss"][-1], "val_loss_init": history["val_loss"][0],
               "val_loss": history["val_loss"][-1], "tokens_per_s": prog.tokens_per_s(),
               "matmul_peak_flops": peak, "mfu": prog.mfu(), "seconds": prog.elapsed(),
               "params": model.num_params(), "history": history}
    save_checkpoint(out_dir / "sft.pt", model.state_dict(),
                    {"stage": "sft", "model": asdict(model_cfg), "train": asdict(cfg)})
    write_json(out_dir / "sft_metrics.json", metrics)
    return metrics
