"""More than one process, through PyTorch's own engine: `torchrun --nproc_per_node=N -m minidpo
sft|reward-model|dpo ...` trains with DistributedDataParallel (gloo on CPU, NCCL on GPUs), and
`... rlhf|ppo|grpo` samples the rollouts on every rank.

Every rank builds the same model from the same seed and draws the same global batch of indices;
rank r keeps indices r, r+N, r+2N, ... (`shard`). Each rank's loss is its part of the GLOBAL mean
(`global_share`), so DDP's gradient averaging gives exactly the single-process gradient of the same
global batch, and the runs agree to float rounding. Rank 0 alone writes files (checkpoint.atomic_write
is a no-op elsewhere); `barrier` keeps the others from reading a file before it is written.
The RL stages (rlhf, ppo, grpo) are parallel where their time goes, in sampling: every rank samples
its shard of the step's prompts with its own generator, the responses are gathered (`gather_shards`),
and every rank then scores them and makes the same update (`sync_from_main` keeps the copies equal).
With one process (plain `python -m minidpo`) every function here is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard(indices: list) -> list:
    """This rank's part of a global batch."""
    return indices[rank()::world_size()]


def gather_shards(local: list, total: int) -> list:
    """The inverse of `shard`: every rank's part of a list of `total` items, back in the original
    order, on every rank (one process: `local` itself)."""
    if not dist.is_initialized():
        return local
    parts = [None] * world_size()
    dist.all_gather_object(parts, local)
    whole = [None] * total
    for r, part in enumerate(parts):
        whole[r::world_size()] = part
    return whole


def sync_from_main(model) -> None:
    """Copy rank 0's parameters to every rank. Ranks that apply the same update to the same data
    agree already on a CPU; on a GPU some backward kernels are not deterministic, and this keeps
    the ranks from drifting apart."""
    if dist.is_initialized():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def global_share(local_count: int, global_count: int) -> float:
    """The factor that turns this rank's mean into its share of the global mean, once DDP has
    averaged the gradients over the ranks: local_count / global_count × world size."""
    return local_count / global_count * world_size()


def wrap(model):
    """DDP around `model` when distributed (its forward syncs the gradients), else the model."""
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)
