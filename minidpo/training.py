"""What every training stage shares: device, seed, AdamW groups, LR schedule, progress line."""
from __future__ import annotations

import contextlib
import math
import random
import time

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """auto: cuda -> mps -> cpu. An explicit name that is not available is an error, not a fallback."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be auto, cpu, cuda or mps, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to torch")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple MPS is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None = plain fp32. auto -> bf16 on CUDA when supported, else fp32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    raise ValueError(f"--dtype must be auto, fp32 or bf16, not {name!r}")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside, the thread count restored after: for work on tensors of a few
    numbers, which a second thread only slows (on a busy machine each op waits for it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(model, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95)):
    """AdamW with weight decay on 2-D weights only (matmuls, embeddings); none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_ratio * lr` at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def _finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def check_finite(loss: torch.Tensor, stage: str, step: int, model=None, logps=(), lr=None, beta=None) -> None:
    """Stop when the loss is NaN or infinite, naming the flag most likely at fault from what
    actually happened: non-finite weights or log-probs mean the steps were too large (--lr); a
    loss that overflowed from finite log-probs means the KL coefficient was (--beta)."""
    if _finite([loss]):
        return
    head = f"{stage}: loss became {loss.float().mean().item()} at step {step}; stopping (the last written checkpoint is kept)"
    if model is not None and not _finite(model.parameters()):
        cause = f"the weights are no longer finite: the learning rate{_value(lr)} is too large, try a lower --lr"
    elif not _finite(logps):
        cause = f"the model's log-probs are no longer finite: the learning rate{_value(lr)} is too large, try a lower --lr"
    elif beta is not None:
        cause = f"the log-probs are finite, so β{_value(beta)} made the loss overflow: try a smaller --beta"
    else:
        cause = f"try a lower --lr{_value(lr, ' than')}"
    raise FloatingPointError(f"{head}: {cause}")


def check_weights_finite(model, stage: str, step: int, lr=None) -> None:
    """After an update, before the weights are used again (to sample, say): all finite?"""
    if not _finite(model.parameters()):
        raise FloatingPointError(f"{stage}: the weights stopped being finite at the update of step {step}; stopping "
                                 f"(the last written checkpoint is kept): the learning rate{_value(lr)} is too large, "
                                 "try a lower --lr")


def _value(v, word="") -> str:
    return "" if v is None else f"{word} {v:g}"


def measure_matmul_peak(device=torch.device("cpu"), n: int = 1024, seconds: float = 0.5) -> float:
    """fp32 matmul FLOP/s of this machine, measured now (2·n³ flops per n×n matmul)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_flops_per_token(cfg, seq_len: int) -> float:
    """≈ 6·N matmul flops per token (forward + backward) plus attention's 6·L·T·C (PaLM appendix B),
    N counting the tied head once as a matmul; embeddings lookups are not flops."""
    n_matmul = cfg.n_layer * 12 * cfg.n_embd ** 2 + cfg.vocab_size * cfg.n_embd
    return 6 * n_matmul + 6 * cfg.n_layer * seq_len * cfg.n_embd


class Progress:
    """The one-line log: `sft step 120/600 | loss 2.31 | 21.4k tok/s | mfu 68% | eta 0:41`."""

    def __init__(self, stage: str, total: int, every: int = 50, peak_flops: float | None = None,
                 flops_per_token: float | None = None, quiet: bool = False):
        self.stage, self.total, self.every, self.quiet = stage, total, every, quiet
        self.peak, self.fpt = peak_flops, flops_per_token
        self.t0 = time.perf_counter()
        self.tokens = 0
        self.excluded = 0.0  # seconds spent on evaluation, not counted in the throughput

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def paused(self):
        """Time inside this block (held-out evaluation) does not count towards tokens/s."""
        t = time.perf_counter()
        yield
        self.excluded += time.perf_counter() - t

    def tokens_per_s(self) -> float:
        return self.tokens / max(self.elapsed() - self.excluded, 1e-9)

    def mfu(self) -> float | None:
        if self.peak and self.fpt:
            return self.tokens_per_s() * self.fpt / self.peak
        return None

    def step(self, step: int, tokens: int = 0, **metrics) -> None:
        self.tokens += tokens
        if self.quiet or not (step % self.every == 0 or step == self.total):
            return
        parts = [f"{self.stage} step {step}/{self.total}"]
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
        if self.tokens:
            parts.append(f"{self.tokens_per_s() / 1e3:.1f}k tok/s")
        if self.mfu() is not None:
            parts.append(f"mfu {100 * self.mfu():.0f}%")
        eta = self.elapsed() / max(step, 1) * (self.total - step)
        parts.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
        print(" | ".join(parts), flush=True)


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak on a GPU, else the process's peak resident set
    (Linux: VmHWM, reset on entry through /proc/self/clear_refs). `mb` is None where unknown."""

    def __init__(self, device):
        self.device, self.mb = torch.device(device), None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            try:
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.mb = int(line.split()[1]) / 1024
            except OSError:
                pass
        return False


class StudyProgress:
    """Progress of a study made of many units (trainings): `frontier [12/96] ppo β=0.1 s1 (31s) |
    elapsed 5:12 | eta 14:30`. `kinds` lists the kind of every unit to come; the ETA is, for each
    unit left, the mean time of the units of its kind computed so far (else of any kind). Reused
    units cost nothing and do not count. It prints even under --quiet (which silences per-step lines)."""

    def __init__(self, study: str, kinds: list[str]):
        self.study, self.left = study, list(kinds)
        self.total, self.done, self.t0 = len(kinds), 0, time.perf_counter()
        self.seconds: dict[str, list[float]] = {}

    def unit_done(self, kind: str, label: str, seconds: float | None) -> None:
        self.done += 1
        self.left.remove(kind)
        if seconds is not None:
            self.seconds.setdefault(kind, []).append(seconds)
        every = [s for v in self.seconds.values() for s in v]
        mean_all = sum(every) / len(every) if every else 0.0
        eta = sum(sum(self.seconds[k]) / len(self.seconds[k]) if k in self.seconds else mean_all for k in self.left)
        elapsed = time.perf_counter() - self.t0
        took = "reused" if seconds is None else f"{seconds:.0f}s"
        print(f"{self.study} [{self.done}/{self.total}] {label} ({took}) | elapsed {_clock(elapsed)} | "
              f"eta {_clock(eta)}", flush=True)


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
