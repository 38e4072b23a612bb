"""Stage 4: supervised fine-tuning (SFT) on the world's corpus, or on the chosen responses of a file.

Next-token cross-entropy on response tokens only: the prompt is given, not learned (its targets are
-100). AdamW (decay on 2-D weights only), linear warmup + cosine decay, held-out loss on reviews of
films never seen in training. The checkpoint is `sft.pt` + `sft.json` in the output folder.

`train_sft_on_pairs` is the same training off the toy (`sft --data PAIRS.jsonl`): it fine-tunes a
model it is given (an imported GPT-2, or ours) on the chosen responses of a preference file, as the
DPO paper does on HH before DPO, with held-out loss on another file or on a seeded share of this one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, asdict, field
from pathlib import Path

import torch

from . import world
from .checkpoint import load_gpt, save_checkpoint, write_json
from .data import render, collate, sft_targets
from .distributed import global_share, shard, world_size, wrap
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
              quiet: bool = False, stop_after_steps: int | None = None) -> dict:
    """Train, save `out_dir/sft.pt`, return the metrics dict (also written to sft_metrics.json).

    Every `eval_every` steps a resume file (sft_resume.pt) is written; an interrupted run called
    again with the same config continues from it and ends bit-identical to an uninterrupted one.
    `stop_after_steps` simulates an interruption (for the test and the curious)."""
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    train_titles, heldout_titles = world.split_titles()
    train = [render(tok, p, r) for p, r in world.make_corpus(cfg.n_train, cfg.seed, train_titles)]
    val = [render(tok, p, r) for p, r in world.make_corpus(cfg.n_val, cfg.seed + 1, heldout_titles)]
    model_cfg = GPTConfig(**{**cfg.model, "vocab_size": tok.vocab_size})
    model = GPT(model_cfg).to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    forward_model = wrap(model)  # DDP under torchrun; the model itself otherwise
    rng = random.Random(cfg.seed)
    mean_len = sum(len(r[0]) for r in train) / len(train)
    train_ids, train_mask = collate(train, tok.end_id)  # pad once; each batch is a row selection
    train_len = torch.tensor([len(ids) for ids, _ in train])
    peak = measure_matmul_peak(device) if device.type == "cpu" else None
    prog = Progress("sft", cfg.steps, every=max(1, cfg.eval_every // 2), peak_flops=peak,
                    flops_per_token=train_flops_per_token(model_cfg, round(mean_len)), quiet=quiet)
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    history["val_step"].append(0)
    history["val_loss"].append(mean_response_loss(model, val, tok.end_id, device, dtype))
    resume_path = out_dir / "sft_resume.pt"
    start = _resume(resume_path, cfg, model, opt, rng, history, quiet)
    model.train()
    for step in range(start + 1, cfg.steps + 1):
        set_lr(opt, lr_at(step - 1, cfg.steps, cfg.lr, cfg.warmup))
        idx = torch.tensor(rng.sample(range(len(train)), cfg.batch_size))
        T = int(train_len[idx].max())  # trim to the longest row of this batch
        if world_size() > 1:  # this rank's rows; its mean weighted to its share of the global mean
            global_tokens = int(train_mask[idx, 1:T].sum())
            idx = torch.tensor(shard(idx.tolist()))
        x, y = sft_targets(train_ids[idx, :T].to(device), train_mask[idx, :T].to(device))
        with autocast(device, dtype):
            _, loss = forward_model(x, y)
        check_finite(loss, "sft", step, model, lr=cfg.lr)
        opt.zero_grad(set_to_none=True)
        (loss * global_share(int((y != -100).sum()), global_tokens) if world_size() > 1 else loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with prog.paused():
                history["val_step"].append(step)
                history["val_loss"].append(mean_response_loss(model, val, tok.end_id, device, dtype))
        prog.step(step, tokens=x.numel(), loss=loss.item(), val=history["val_loss"][-1])
        if step % cfg.eval_every == 0 and step < cfg.steps:
            _save_resume(resume_path, cfg, step, model, opt, rng, history)
        if stop_after_steps is not None and step >= stop_after_steps:
            raise KeyboardInterrupt(f"sft stopped after step {step} (stop_after_steps)")
    model.eval()
    metrics = {"train_loss_last": history["train_loss"][-1], "val_loss_init": history["val_loss"][0],
               "val_loss": history["val_loss"][-1], "tokens_per_s": prog.tokens_per_s(),
               "matmul_peak_flops": peak, "mfu": prog.mfu(), "seconds": prog.elapsed(),
               "params": model.num_params(), "history": history}
    save_checkpoint(out_dir / "sft.pt", model.state_dict(),
                    {"stage": "sft", "model": asdict(model_cfg), "train": asdict(cfg)})
    write_json(out_dir / "sft_metrics.json", metrics)
    resume_path.unlink(missing_ok=True)  # a finished stage leaves no resume files behind
    resume_path.with_suffix(".json").unlink(missing_ok=True)
    return metrics


def _save_resume(path, cfg, step, model, opt, rng, history) -> None:
    """Everything needed to continue bit-identically: weights, AdamW moments, the batch RNG."""
    from .checkpoint import save_checkpoint
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict()},
                    {"train": asdict(cfg), "step": step, "rng": _jsonable(rng.getstate()), "history": history})


def _resume(path, cfg, model, opt, rng, history, quiet) -> int:
    """Load `path` if it was written by this same config; return the step to continue after."""
    from .checkpoint import load_checkpoint
    if not path.is_file():
        return 0
    state, meta = load_checkpoint(path)
    if meta.get("train") != asdict(cfg):
        if not quiet:
            print(f"sft: ignoring {path} (written by another config)")
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    version, internal, gauss = meta["rng"]
    rng.setstate((version, tuple(internal), gauss))
    history.clear()
    history.update(meta["history"])
    if not quiet:
        print(f"sft: resuming from {path} at step {meta['step']}")
    return meta["step"]


def _jsonable(obj):
    return [_jsonable(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


@dataclass
class PairsSFTConfig:
    epochs: int = 1
    steps: int | None = None      # at most this many steps (None: `epochs` passes over the pairs)
    batch_size: int = 16
    lr: float = 5e-5              # a fine-tune: the model knows the language already
    warmup: int = 10
    weight_decay: float = 0.0
    eval_every: int = 50
    val_fraction: float = 0.05    # held out of the file when there is no held-out file
    max_pairs: int | None = None  # a seeded sample of the file (try things on a laptop)
    seed: int = 0

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(steps=20, batch_size=8, eval_every=10), **kw})


def sft_pairs_data(cfg: PairsSFTConfig, tok, train_file, val_file, block_size: int, skip_invalid: bool = False):
    """(training pairs encoded, held-out chosen rows, report): SFT trains on each pair's (prompt,
    chosen) row, cut by the length rule of `preferences.encode_pair`. Without `val_file`, a seeded `val_fraction` of the pairs
    (at least one) is held out of training."""
    from .preferences import PreferenceFileError, encode_pairs, read_preferences
    pairs, train_report = read_preferences(train_file, skip_invalid, cfg.max_pairs, cfg.seed)
    if val_file is not None:
        val_pairs, val_report = read_preferences(val_file)
    else:
        if len(pairs) < 2:
            raise PreferenceFileError(f"{train_file}: one pair cannot be split into training and held-out "
                                      "pairs: give --val-data")
        held = set(random.Random(cfg.seed).sample(range(len(pairs)), max(1, round(cfg.val_fraction * len(pairs)))))
        val_pairs = [p for i, p in enumerate(pairs) if i in held]
        pairs = [p for i, p in enumerate(pairs) if i not in held]
        val_report = {"held_out_of": str(train_file), "read": len(val_pairs)}
    train_enc, train_trunc = encode_pairs(tok, pairs, block_size)  # (compact: rows are built per batch)
    val_enc, val_trunc = encode_pairs(tok, val_pairs, block_size)
    return train_enc, [chosen for chosen, _ in val_enc], {
        "train_data": {**train_report, **train_trunc, "pairs": len(pairs)},
        "val_data": {**val_report, **val_trunc, "pairs": len(val_pairs)}}


def train_sft_on_pairs(cfg: PairsSFTConfig, tok, base_path, train_file, val_file, out_dir,
                       device=torch.device("cpu"), dtype=None, quiet: bool = False, skip_invalid: bool = False,
                       out_name: str = "sft") -> dict:
    """Fine-tune the model at `base_path` on the chosen responses of `train_file`; save
    `out_dir/{out_name}.pt` (the model DPO then starts from and keeps as its reference) and
    {out_name}_metrics.json. Returns the metrics."""
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    model, _ = load_gpt(base_path, device, vocab_size=tok.vocab_size)
    train, val, data = sft_pairs_data(cfg, tok, train_file, val_file, model.config.block_size, skip_invalid)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    total = cfg.steps or cfg.epochs * -(-len(train) // cfg.batch_size)
    rng, order = random.Random(cfg.seed), []
    prog = Progress("sft", total, every=max(1, cfg.eval_every // 2), quiet=quiet)
    history = {"step": [], "train_loss": [], "val_step": [0],
               "val_loss": [mean_response_loss(model, val, tok.end_id, device, dtype)]}
    model.train()
    for step in range(1, total + 1):
        if len(order) < cfg.batch_size:  # a new pass over the pairs, in a new order
            order += rng.sample(range(len(train)), len(train))
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        set_lr(opt, lr_at(step - 1, total, cfg.lr, cfg.warmup))
        x, y = sft_targets(*collate([train[i][0] for i in idx], tok.end_id, device))
        with autocast(device, dtype):
            _, loss = model(x, y)
        check_finite(loss, "sft", step, model, lr=cfg.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        if step % cfg.eval_every == 0 or step == total:
            with prog.paused():
                history["val_step"].append(step)
                history["val_loss"].append(mean_response_loss(model, val, tok.end_id, device, dtype))
        prog.step(step, tokens=x.numel(), loss=loss.item(), val=history["val_loss"][-1])
    model.eval()
    metrics = {"config": asdict(cfg), "base": str(base_path), **data, "steps": total,
               "val_loss_init": history["val_loss"][0], "val_loss": history["val_loss"][-1],
               "tokens_per_s": prog.tokens_per_s(), "seconds": prog.elapsed(), "params": model.num_params(),
               "history": history}
    save_checkpoint(out_dir / f"{out_name}.pt", model.state_dict(),
                    {"stage": "sft-on-pairs", "model": asdict(model.config), "train": asdict(cfg),
                     "base": str(base_path), "data": str(train_file)})
    write_json(out_dir / f"{out_name}_metrics.json", metrics)
    return metrics
