#!/usr/bin/env bash
# The CUDA path, run and measured: `bash scripts/gpu_check.sh` on a machine with an NVIDIA GPU (<= 5 min).
#   1. the fast pipeline with bf16 autocast (`python -m minidpo run --fast --device cuda --dtype bf16`);
#   2. one DPO step on a GPT-2-small-shaped model (random weights, 8 pairs = 16 sequences x 512 tokens,
#      AdamW, bf16 autocast, SDPA), without and with gradient checkpointing: tokens/s and peak memory
#      printed next to the README's arithmetic for the same step;
#   3. torchrun on NCCL: an all-reduce, then `dpo --fast` in the folder of step 1 (one process per GPU,
#      at most two).
# Without CUDA it says so in one line and exits 0. GPU_CHECK_DRY=1 runs step 2 with tiny shapes on the
# CPU, so its Python is checked where no GPU is (tests/interop/test_gpu_check.py does).
# Output lands in ${GPU_CHECK_OUT:-runs/gpu_check}; PYTHON picks the interpreter (default: python).
set -euo pipefail
PY=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
DRY=${GPU_CHECK_DRY:-0}

if [ "$DRY" != "1" ]; then
    if ! why=$("$PY" -c "import torch; print('' if torch.cuda.is_available() else 'torch ' + torch.__version__ + \
            (', built for CUDA ' + torch.version.cuda if torch.version.cuda else ', a CPU-only build') + \
            ', sees no GPU')" 2>/dev/null); then
        echo "gpu_check: nothing to check: torch does not import ($("$PY" -c "import torch" 2>&1 | tail -n 1))"
        exit 0
    fi
    if [ -n "$why" ]; then
        echo "gpu_check: nothing to check: no CUDA device here ($why)"
        exit 0
    fi
fi
mkdir -p "$OUT"
export OUT DRY

step() { echo; echo "== $*"; }
if [ "$DRY" != "1" ]; then
    "$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'gpu_check: {torch.cuda.device_count()} x {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}')"
    step "1. the fast pipeline on CUDA with bf16 autocast"
    start=$SECONDS
    "$PY" -m minidpo run --fast --device cuda --dtype bf16 --quiet --force --out "$OUT/fast"
    echo "run --fast on cuda/bf16: $((SECONDS - start)) s (startup included); summary in $OUT/fast/summary.json"
fi

step "2. one DPO step on a GPT-2-small-shaped model"
"$PY" - <<'PYTHON'
import os
import torch
from minidpo.data import row
from minidpo.dpo import DPOConfig, batch_loss, pair_logps
from minidpo.model import GPT, GPTConfig
from minidpo.tools.bench import seconds_per_call
from minidpo.training import make_optimizer

dry = os.environ["DRY"] == "1"
device = torch.device("cpu" if dry else "cuda")
dtype = None if dry else torch.bfloat16
# GPT-2 small (124 M): 12 layers, 12 heads, width 768, 50257 tokens; dry: a toy of the same shape
shape = dict(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32) if dry else \
    dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
pairs, T, prompt_len = (2, 32, 8) if dry else (8, 512, 64)
B = 2 * pairs  # chosen and rejected rows in one forward pass
g = torch.Generator().manual_seed(0)
rand = lambda n: torch.randint(0, shape["vocab_size"] - 1, (n,), generator=g).tolist()
encoded = []
for _ in range(pairs):
    prompt = rand(prompt_len)
    encoded.append((row(prompt, rand(T - prompt_len)), row(prompt, rand(T - prompt_len))))
pad = shape["vocab_size"] - 1


def gb(x):
    return x / 1e9


def arithmetic(n_params, cfg, checkpointing, rows, T):
    """The README's memory arithmetic for this step: fp32 weights, gradients and AdamW's two moments
    (16 B/param); bf16 activations saved for the backward pass, 34 B per token per unit of width per
    layer (Korthikanti et al. 2022, with fused attention), or with checkpointing each layer's input
    (2 B) plus one layer's activations during its recomputation; logits: bf16 + an fp32 copy + the
    fp32 log-softmax, 10 B per token per vocabulary entry."""
    tokens = rows * T
    weights = 16 * n_params
    per_layer = 34 * tokens * cfg.n_embd
    acts = 2 * tokens * cfg.n_embd * cfg.n_layer + per_layer if checkpointing else per_layer * cfg.n_layer
    logits = 10 * tokens * cfg.vocab_size
    return weights, acts, logits


for name, width in (("small", dict(n_layer=12, n_head=12, n_embd=768)), ("medium", dict(n_layer=24, n_head=16, n_embd=1024))):
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, **width)
    with torch.device("meta"):
        n = GPT(gpt2).num_params()
    plain, low = (gb(sum(arithmetic(n, gpt2, c, 16, 512))) for c in (False, True))
    print(f"README's arithmetic, GPT-2 {name} ({n / 1e6:.0f} M), 16 x 512 tokens: {plain:.1f} GB, "
          f"{low:.1f} GB with gradient checkpointing")

for checkpointing in (False, True):
    torch.manual_seed(0)
    cfg = GPTConfig(**shape, gelu="tanh", checkpointing=checkpointing)
    model = GPT(cfg).to(device)
    ref = pair_logps(model, encoded, pad, average=False, dtype=dtype)  # cached once, as in a run
    model.train()
    opt = make_optimizer(model, 1e-5)
    dpo = DPOConfig()  # (the model's own config switches checkpointing on)

    def step():
        loss, _, metrics = batch_loss(model, encoded, ref, dpo, pad, dtype)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return metrics

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    first = step()  # (warm-up: kernels chosen, optimizer state allocated)
    assert abs(first["loss"] - 0.6931) < 1e-3, f"DPO's first loss should be ln 2, got {first['loss']}"
    seconds = seconds_per_call(step, 2 if dry else 5, device, warmup=False)
    n = model.num_params()
    weights, acts, logits = arithmetic(n, cfg, checkpointing, B, T)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    flops = 6 * n * B * T / seconds
    name = "with gradient checkpointing" if checkpointing else "without checkpointing"
    print(f"DPO step, {n / 1e6:.1f} M params, {B} x {T} tokens, {name}: {seconds * 1e3:.0f} ms, "
          f"{B * T / seconds / 1e3:.1f}k tokens/s, {flops / 1e12:.1f} TFLOP/s at 6N flops/token")
    print(f"   peak memory {'%.2f GB' % gb(peak) if peak is not None else '(CPU: not measured)'}; README's arithmetic "
          f"{gb(weights + acts + logits):.2f} GB = {gb(weights):.2f} weights+AdamW + {gb(acts):.2f} activations "
          f"+ {gb(logits):.2f} logits")
    del model, opt, ref
PYTHON

if [ "$DRY" != "1" ]; then
    step "3. torchrun on NCCL"
    nproc=$("$PY" -c "import torch; print(min(2, torch.cuda.device_count()))")
    cat > "$OUT/nccl_check.py" <<'PYTHON'
import os, torch, torch.distributed as dist
dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
t = torch.full((4,), float(rank + 1), device="cuda")
dist.all_reduce(t)
expected = sum(range(1, dist.get_world_size() + 1))
assert torch.all(t == expected), t
if rank == 0:
    print(f"NCCL all-reduce over {dist.get_world_size()} process(es): {t[0].item():.0f} = {expected} "
          f"(NCCL {torch.cuda.nccl.version()})")
dist.destroy_process_group()
PYTHON
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$nproc" "$OUT/nccl_check.py"
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$nproc" -m minidpo dpo --fast --quiet --force \
        --device cuda --dtype bf16 --out "$OUT/fast"
    echo "torchrun --nproc-per-node $nproc dpo --fast on cuda: ok (with one process minidpo needs no DDP wrapper)"
fi
echo
echo "gpu_check: done"
