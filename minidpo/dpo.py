"""Stage 7: DPO training — one loss, no reward model, no sampling.

Per step: a batch of pairs goes through the policy in ONE forward pass (chosen rows and rejected
rows stacked), `pair_record` collects log π(y_w|x) and log π(y_l|x) (summed and per token) with the
cached reference log-probs, and the registered loss (`losses.LOSSES[cfg.loss_type]`) does the rest:
`batch_loss` is that whole computation for one batch, used by training and evaluation alike. The
reference model's log-probs are computed once, before training, and cached on disk (keyed by the
reference checkpoint's bytes and the tokenized data), so the reference never runs inside the
training loop; a loss that needs no reference (SimPO, ORPO, ...) never runs it at all.

Sequence log-probs are sums over response tokens, as in the paper. `average_logps=True` uses the
per-token mean instead; the log-ratio then shrinks by the response length (~15 tokens here), so β
must grow by about that factor for the same strength of the KL leash.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .checkpoint import atomic_write, input_hash, load_gpt, save_checkpoint, write_json, write_jsonl
from .distributed import global_share, is_main, shard, world_size, wrap
from .data import pair_batch, rows_digest
from .losses import PairRecord, UnpairedRecord, get_loss, loss_arguments, preference_metrics
from .model import sequence_logps
from .preferences import encode_pairs, encode_unpaired, read_preferences, read_unpaired
from .training import Progress, autocast, check_finite, lr_at, make_optimizer, set_lr


@dataclass
class DPOConfig:
    beta: float = 0.5
    lr: float = 5e-4
    epochs: int = 2
    batch_size: int = 32          # pairs per step (64 sequences per forward pass)
    warmup: int = 10
    weight_decay: float = 0.0
    loss_type: str = "sigmoid"    # any name in losses.LOSSES
    label_smoothing: float = 0.0  # for the losses that take it (sigmoid: conservative DPO)
    loss_args: dict = field(default_factory=dict)  # the loss's own hyperparameters (--loss-arg k=v)
    average_logps: bool = False
    grad_accum: int = 1           # micro-batches per step (same global batch, less memory)
    grad_checkpointing: bool = False  # recompute activations in the backward pass (less memory)
    log_every: int = 10
    seed: int = 0

    @classmethod
    def fast(cls, **kw):
        return cls(**{**dict(lr=4e-4, epochs=1, batch_size=16, log_every=10), **kw})

    def loss(self):
        """(the registered loss, the arguments it is called with); errors for unknown ones."""
        return get_loss(self.loss_type), loss_arguments(self.loss_type, self.label_smoothing, self.loss_args)

    def key(self) -> dict:
        """What decides a DPO run: these settings, and the source of the loss function itself."""
        return {**asdict(self), "loss_source": self.loss()[0].fingerprint()}


def pair_record(model, encoded_pairs, pad_id, beta: float, average: bool, ref_logps=None, dtype=None,
                length: int | None = None, logps_fn=sequence_logps) -> PairRecord:
    """The `PairRecord` of a batch of encoded pairs: one concatenated forward pass of `model`
    (chosen rows, then rejected rows) and the reference log-probs (N, 2), when there are any.
    `length`: pad the rows to it (a shard padded like its whole batch). `logps_fn`: how rows are
    scored, `model.sequence_logps` (the exercises pass a learner's own; every caller below passes
    it on, so one function scores the policy, the reference and the held-out pairs alike)."""
    device = next(model.parameters()).device
    ids, mask = pair_batch(encoded_pairs, device, pad_id, length)
    with autocast(device, dtype):
        out = logps_fn(model, ids, mask, average)
    n = len(encoded_pairs)
    seq, tokens = out.logps.float(), out.token_logps.float()
    response = mask[:, 1:]
    ref = ref_logps.to(device) if ref_logps is not None else None
    return PairRecord(seq[:n], seq[n:], beta,
                      ref[:, 0] if ref is not None else None, ref[:, 1] if ref is not None else None,
                      tokens[:n], tokens[n:], response[:n], response[n:], average)


def batch_loss(policy, encoded_pairs, ref_logps, cfg: DPOConfig, pad_id: int, dtype=None, prefix: str = "",
               labels=None, length: int | None = None, logps_fn=sequence_logps):
    """The loss of one batch of pairs: the policy's log-probs, the cached reference log-probs (or
    None for a reference-free loss), the registered loss. Returns (mean loss, its record, metrics).
    For an unpaired loss (KTO) each "pair" is an example and its mismatched completion
    (`preferences.encode_unpaired`) and `labels` says which examples are desirable."""
    loss, args = cfg.loss()
    record = pair_record(policy, encoded_pairs, pad_id, cfg.beta, cfg.average_logps, ref_logps, dtype, length,
                         logps_fn)
    if loss.data == "unpaired":
        desirable = torch.tensor(labels, dtype=torch.bool, device=record.chosen_logps.device)
        unpaired = UnpairedRecord(record.chosen_logps, record.ref_chosen_logps, record.rejected_logps,
                                  record.ref_rejected_logps, desirable, cfg.beta)
        out = loss(unpaired, **args)
        return out.losses.mean(), record, unpaired_metrics(out, unpaired, prefix)
    out = loss(record, **args)
    metrics = preference_metrics(out.losses, out.chosen_rewards, out.rejected_rewards,
                                 record.chosen_logps, record.rejected_logps, prefix)
    return out.losses.mean(), record, metrics


def unpaired_metrics(out, record: UnpairedRecord, prefix: str = "") -> dict:
    """TRL's KTO names: the mean implicit reward of desirable and of undesirable examples, their
    difference, and the KL estimate of the mismatched completions."""
    mean = lambda t: t.mean().item() if t.numel() else float("nan")
    return {f"{prefix}loss": out.losses.mean().item(), f"{prefix}rewards/chosen": mean(out.chosen_rewards),
            f"{prefix}rewards/rejected": mean(out.rejected_rewards),
            f"{prefix}rewards/margins": mean(out.chosen_rewards) - mean(out.rejected_rewards),
            f"{prefix}kl": (record.kl_logps - record.ref_kl_logps).mean().item(),
            f"{prefix}logps/chosen": mean(record.logps[record.desirable].detach()),
            f"{prefix}logps/rejected": mean(record.logps[~record.desirable].detach())}


@torch.no_grad()
def pair_logps(model, encoded_pairs, pad_id, average: bool, batch_size: int = 128,
               dtype=None, logps_fn=sequence_logps) -> torch.Tensor:
    """(N, 2) tensor: log π(y_w|x) and log π(y_l|x) of every pair under `model`, whichever model it
    is: the reference (whose scores the cache below keeps), the SFT model or a trained policy.
    In eval mode (no dropout), without gradients."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(encoded_pairs), batch_size):
        r = pair_record(model, encoded_pairs[i:i + batch_size], pad_id, 0.0, average, dtype=dtype,
                        logps_fn=logps_fn)
        out.append(torch.stack([r.chosen_logps, r.rejected_logps], 1).cpu())
    model.train(was_training)
    return torch.cat(out)


def cached_reference_logps(ref_model, ref_path, encoded_pairs, pad_id, average: bool, cache_dir,
                           dtype=None, logps_fn=sequence_logps) -> tuple[torch.Tensor, bool]:
    """Reference log-probs from `cache_dir` if these exact inputs were scored before, else computed
    and saved. Returns (logps (N, 2), was_cached). A cache file that cannot be read, or holds
    anything but finite (N, 2) numbers, is a miss: it is recomputed and overwritten."""
    h = hashlib.sha256(input_hash(ref_path).encode())
    h.update(json.dumps([rows_digest(encoded_pairs), average, str(dtype)]).encode())
    path = Path(cache_dir) / f"ref_logps-{h.hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            logps = torch.load(path, weights_only=True)
            if (isinstance(logps, torch.Tensor) and logps.shape == (len(encoded_pairs), 2)
                    and bool(torch.isfinite(logps).all())):
                return logps, True
        except Exception:  # truncated or foreign bytes: torch raises many types here
            pass
        print(f"{path}: unreadable or not the expected reference log-probs; recomputing it")
    logps = pair_logps(ref_model, encoded_pairs, pad_id, average, dtype=dtype, logps_fn=logps_fn)
    atomic_write(path, lambda f: torch.save(logps, f))
    return logps, False


@torch.no_grad()
def evaluate_pairs(policy, encoded_pairs, ref_logps, cfg: DPOConfig, pad_id, dtype=None, chunk: int = 128,
                   logps_fn=sequence_logps) -> dict:
    """The loss and its metrics on held-out pairs (`eval/` prefix), all pairs as one batch (scored
    `chunk` pairs per forward pass); `eval/rewards/accuracies` is the implicit reward's accuracy."""
    policy.eval()
    loss, args = cfg.loss()
    parts = [pair_record(policy, encoded_pairs[i:i + chunk], pad_id, cfg.beta, cfg.average_logps,
                         None if ref_logps is None else ref_logps[i:i + chunk], dtype, logps_fn=logps_fn)
             for i in range(0, len(encoded_pairs), chunk)]
    record = concat_records(parts)
    policy.train()
    if loss.data == "unpaired":  # held-out data are pairs: the implicit reward's metrics on them
        chosen, rejected = record.implicit_rewards()
        return {**preference_metrics(torch.full_like(chosen, float("nan")), chosen, rejected,
                                     record.chosen_logps, record.rejected_logps, prefix="eval/")}
    out = loss(record, **args)
    return preference_metrics(out.losses, out.chosen_rewards, out.rejected_rewards,
                              record.chosen_logps, record.rejected_logps, prefix="eval/")


def concat_records(records: list[PairRecord]) -> PairRecord:
    """One record from several (per-token tensors right-padded to the widest)."""
    width = max(r.chosen_token_logps.size(1) for r in records)

    def cat(name):
        values = [getattr(r, name) for r in records]
        if values[0] is None:
            return None
        if values[0].dim() == 2:
            values = [torch.nn.functional.pad(v, (0, width - v.size(1))) for v in values]
        return torch.cat(values)
    first = records[0]
    return PairRecord(cat("chosen_logps"), cat("rejected_logps"), first.beta, cat("ref_chosen_logps"),
                      cat("ref_rejected_logps"), cat("chosen_token_logps"), cat("rejected_token_logps"),
                      cat("chosen_mask"), cat("rejected_mask"), first.average_logps)


def run_dpo(policy, cfg: DPOConfig, train_enc, ref_train, val_enc, ref_val, pad_id: int, dtype=None,
            quiet: bool = False, log_path=None, on_step=None, train_labels=None, reference_model=None,
            logps_fn=sequence_logps) -> dict:
    """The DPO training loop on encoded pairs with precomputed reference log-probs (N, 2), or None
    for a loss that needs no reference; or, with `reference_model`, reference log-probs computed
    batch by batch from that model (TRL's mode without precomputation; the museum passes
    the policy itself here to show what a reference that is not frozen does).
    Updates `policy` in place; returns {"history", "seconds", "steps", "tokens_forward", "tokens_backward"}.
    on_step(step, policy) is called after every update (for checkpoints along training); `logps_fn`
    scores the rows (see `pair_record`)."""
    opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
    forward_model = wrap(policy)  # DDP under torchrun; the policy itself otherwise
    policy.config.checkpointing = cfg.grad_checkpointing
    steps_per_epoch = (len(train_enc) + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    prog = Progress("dpo", total, every=cfg.log_every, quiet=quiet)
    rng = random.Random(cfg.seed)
    history, tokens = [], 0

    # the log of a run in progress is NAME.partial.jsonl, rewritten whole and atomically at each
    # record (valid JSONL at every instant, NaN as null); it becomes NAME.jsonl when training ends,
    # so a run that fails leaves the last finished run's log in place and its own beside it
    partial = Path(log_path).with_suffix(".partial.jsonl") if log_path else None

    def record(r):
        history.append(r)
        if partial:
            write_jsonl(partial, history)

    record({"step": 0, **evaluate_pairs(policy, val_enc, ref_val, cfg, pad_id, dtype, logps_fn=logps_fn)})
    policy.train()
    step = 0
    for epoch in range(cfg.epochs):
        order = list(range(len(train_enc)))
        rng.shuffle(order)
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            set_lr(opt, lr_at(step, total, cfg.lr, cfg.warmup))
            step += 1
            opt.zero_grad(set_to_none=True)
            # one micro-batch (the plain path), or this rank's share of the batch in grad_accum
            # micro-batches, each loss scaled to its share of the global mean (distributed.py)
            micro = [idx] if cfg.grad_accum == 1 and world_size() == 1 else _micro_batches(idx, cfg.grad_accum)
            width = None if len(micro) == 1 else max(len(row[0]) for i in idx for row in train_enc[i])
            for part in micro:
                share = global_share(len(part), len(idx))
                part = part or idx[:1]  # an empty share still runs forward and backward, weighted 0
                batch = [train_enc[i] for i in part]
                if reference_model is not None:
                    ref_batch = pair_logps(reference_model, batch, pad_id, cfg.average_logps, dtype=dtype,
                                           logps_fn=logps_fn)
                else:
                    ref_batch = None if ref_train is None else ref_train[part]
                loss, rec, m = batch_loss(forward_model, batch, ref_batch, cfg, pad_id, dtype,
                                          labels=None if train_labels is None else [train_labels[i] for i in part],
                                          length=width, logps_fn=logps_fn)
                check_finite(loss, "dpo", step, policy, (rec.chosen_logps, rec.rejected_logps), cfg.lr, cfg.beta)
                (loss if len(micro) == 1 else loss * share).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            if step % cfg.log_every == 0 or step == total:
                r = {"step": step, "epoch": epoch, **m}
                if step == total or step % (cfg.log_every * 2) == 0:
                    with prog.paused():
                        r.update(evaluate_pairs(policy, val_enc, ref_val, cfg, pad_id, dtype, logps_fn=logps_fn))
                record(r)
            if on_step is not None:
                on_step(step, policy)
            n = sum(len(train_enc[i][0][0]) + len(train_enc[i][1][0]) for i in idx)
            tokens += n
            prog.step(step, tokens=n, loss=m["loss"], margin=m["rewards/margins"])
    policy.eval()
    if partial and is_main():  # (rank 0 alone writes files under torchrun)
        partial.replace(log_path)
    return {"history": history, "seconds": prog.elapsed(), "steps": total,
            "tokens_forward": tokens, "tokens_backward": tokens}


def _micro_batches(idx: list, n: int) -> list[list]:
    """This rank's share of a global batch in exactly n micro-batches (every rank makes the same
    number of backward passes, as DDP needs; a rank with too few pairs gets empty ones)."""
    mine = shard(idx)
    return [mine[i::n] for i in range(n)]


def train_dpo(cfg: DPOConfig, tok, sft_path, train_file, val_file, out_dir, device=torch.device("cpu"),
              dtype=None, quiet: bool = False, out_name: str = "dpo", checkpoint_steps=(),
              skip_invalid: bool = False, max_pairs: int | None = None, logps_fn=sequence_logps) -> dict:
    """Train a DPO policy from the SFT checkpoint on preference files; writes out_dir/{out_name}.pt,
    {out_name}_log.jsonl and {out_name}_metrics.json. Returns the metrics. skip_invalid=True refuses
    bad lines of the training file (each listed in the metrics) instead of stopping at the first;
    max_pairs trains on a seeded sample of that many of its lines.
    `logps_fn` scores policy and reference rows (see `pair_record`); the reference cache in out_dir
    does not know it, so a caller that changes it uses a folder of its own.
    (The museum's `train_with_fault` runs the same loop with a classic bug switched on.)"""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss, _ = cfg.loss()  # an unknown loss or argument fails here, before any work
    torch.manual_seed(cfg.seed)
    policy, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
    block = policy.config.block_size
    train_labels = None
    if loss.data == "unpaired":  # KTO: single labelled completions (pairs are split into two)
        examples, train_report = read_unpaired(train_file, skip_invalid, max_pairs, cfg.seed)
        train_enc, train_labels, train_trunc = encode_unpaired(tok, examples, block)
    else:
        train_pairs, train_report = read_preferences(train_file, skip_invalid, max_pairs, cfg.seed)
        train_enc, train_trunc = encode_pairs(tok, train_pairs, block)
    val_pairs, val_report = read_preferences(val_file)
    val_enc, val_trunc = encode_pairs(tok, val_pairs, block)
    t0 = time.perf_counter()
    ref_train = ref_val = None
    cached, ref_tokens = False, 0
    if loss.reference:  # a reference-free loss (SimPO, ORPO, ...) never loads or runs the reference
        ref, _ = load_gpt(sft_path, device, vocab_size=tok.vocab_size)
        ref_train, cached = cached_reference_logps(ref, sft_path, train_enc, tok.end_id, cfg.average_logps,
                                                   out_dir, dtype, logps_fn)
        ref_val, _ = cached_reference_logps(ref, sft_path, val_enc, tok.end_id, cfg.average_logps, out_dir, dtype,
                                            logps_fn)
        ref_tokens = int(train_enc.lengths().sum() + val_enc.lengths().sum())
        del ref  # from here on, the reference model is never needed again
    ref_seconds = time.perf_counter() - t0

    def checkpoint(step, model):
        if step in checkpoint_steps:  # checkpoints along training (the frontier evaluates them)
            save_checkpoint(out_dir / f"{out_name}_step{step}.pt", model.state_dict(),
                            {"stage": "dpo", "model": asdict(model.config), "train": asdict(cfg), "step": step})

    out = run_dpo(policy, cfg, train_enc, ref_train, val_enc, ref_val, tok.end_id, dtype, quiet,
                  out_dir / f"{out_name}_log.jsonl", checkpoint, train_labels, logps_fn=logps_fn)
    final = out["history"][-1]
    metrics = {"config": asdict(cfg), "loss_args": cfg.loss()[1], "seconds": out["seconds"], "reference_seconds": ref_seconds,
               "steps": out["steps"], "train_data": {**train_report, **train_trunc},
               "val_data": {**val_report, **val_trunc}, "reference_logps_cached": cached,
               "tokens_forward": out["tokens_forward"] + ref_tokens,  # the road's cost, cached or not
               "tokens_backward": out["tokens_backward"],
               "val_implicit_reward_accuracy": final["eval/rewards/accuracies"],
               "final": final, "history": out["history"]}
    save_checkpoint(out_dir / f"{out_name}.pt", policy.state_dict(),
                    {"stage": "dpo", "model": asdict(policy.config), "train": asdict(cfg),
                     "sft": str(sft_path), "data": str(train_file)})
    write_json(out_dir / f"{out_name}_metrics.json", metrics)
    return metrics
