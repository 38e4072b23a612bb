"""Benchmark (not a test): `python -m minidpo.tools.bench [--run runs/default] [--gpt2-small]`.

Prints, measured now on this machine: the fp32 matmul peak; SFT training throughput and its
fraction of that peak; the time of one DPO step over one SFT step on the same sequences; the KV
cache's generation speed-up; the split of one RLHF step; and, from a finished run folder, the wall
time each road needed. `--gpt2-small` only times a DPO step and the reference's forward pass of a
GPT-2-small-shaped model, 5 times each (what a real GPT-2 costs here: min, median, max). Run it on an idle machine: another process on the cores skews everything.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from .. import world
from ..checkpoint import read_json
from ..data import collate, prompt_and_response_rows, render, sft_targets
from ..losses import dpo_loss
from ..model import GPT, GPTConfig, sequence_logps
from ..reward_model import RewardModel
from ..rlhf import first_step_reaching
from ..sampling import make_generator, sample
from ..tokenizer import Tokenizer
from ..training import make_optimizer, measure_matmul_peak, pick_device, train_flops_per_token


def seconds_per_call(fn, reps: int, device, warmup: bool = True) -> float:
    """Mean wall time of `fn()` over `reps` calls (after one warm-up call unless warmup=False),
    the GPU synchronised before and after so queued kernels are counted."""
    if warmup:
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


GPT2_SMALL = dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)  # 124 M parameters


def timed(fn, reps: int, device) -> list[float]:
    """The wall time of each of `reps` calls of `fn()`, the GPU synchronised around each call so its
    queued kernels are counted in it."""
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def spread(times: list[float]) -> dict:
    """min, median and max of repeated timings (one number hides a machine's slow spells)."""
    return {"min": min(times), "median": statistics.median(times), "max": max(times), "n": len(times)}


def dpo_step_cost(shape: dict, pairs: int, tokens: int, prompt_tokens: int, device=torch.device("cpu"),
                  dtype=None, checkpointing: bool = False, reps: int = 5, seed: int = 0,
                  shortest: int | None = None) -> dict:
    """What DPO costs on a random GPT of `shape` and `pairs` random pairs: each row is a shared
    prompt of `prompt_tokens` and a reply; rows are `tokens` long, or (with `shortest`) of random
    lengths in [shortest, tokens] with the first at `tokens`, padded to the batch's longest row as
    minidpo pads them (`data.collate`), so the step computes on padding as training does.
    Timed, each `reps` times, interleaved (after one warm-up step): the reference's forward pass over the batch
    (`dpo.pair_logps`, no gradient: what caching the reference costs, once per pair of a run) and one
    training step as `dpo.batch_loss` takes it (chosen and rejected rows in one forward pass,
    backward, AdamW). Returns both spreads ("step", "reference"), "seconds" (the step's median), the
    real and padded tokens, the parameters, the warm-up step's loss (ln 2: the policy is its
    reference) and, on CUDA, the peak memory."""
    from ..data import row
    from ..dpo import DPOConfig, batch_loss, pair_logps
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(0, shape["vocab_size"] - 1, (n,), generator=g).tolist()
    length = lambda first: tokens if shortest is None or first else int(torch.randint(shortest, tokens + 1, (1,), generator=g))
    encoded = []
    for i in range(pairs):
        prompt = rand(prompt_tokens)
        encoded.append(tuple(row(prompt, rand(length(i == 0 and k == 0) - prompt_tokens)) for k in range(2)))
    real = sum(len(ids) for pair in encoded for ids, _ in pair)
    padded = 2 * pairs * max(len(ids) for pair in encoded for ids, _ in pair)
    pad = shape["vocab_size"] - 1
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**shape, gelu="tanh", checkpointing=checkpointing)).to(device)
    ref = pair_logps(model, encoded, pad, average=False, dtype=dtype)  # cached once, as in a run
    model.train()
    opt = make_optimizer(model, 1e-5)

    def step():
        loss, _, metrics = batch_loss(model, encoded, ref, DPOConfig(), pad, dtype)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return metrics

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    first = step()  # (warm-up: kernels chosen, optimizer state allocated)
    reference, steps = [], []
    for _ in range(reps):  # interleaved: a slow spell of the machine hits both the same way
        reference += timed(lambda: pair_logps(model, encoded, pad, average=False, dtype=dtype), 1, device)
        steps += timed(step, 1, device)
    seconds = statistics.median(steps)
    return {"step": spread(steps), "reference": spread(reference), "seconds": seconds,
            "tokens_per_s": real / seconds, "params": model.num_params(), "first_loss": first["loss"],
            "rows": 2 * pairs, "tokens": tokens, "real_tokens": real, "padded_tokens": padded,
            "peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}


def describe_spread(s: dict, unit: str = "s") -> str:
    return f"median {s['median']:.2f} {unit} (min {s['min']:.2f}, max {s['max']:.2f}, {s['n']} runs)"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20; 5 with --gpt2-small)")
    p.add_argument("--run", default="runs/default", help="a finished run folder for the wall-time comparison")
    p.add_argument("--gpt2-small", action="store_true",
                   help="only: a DPO step and the reference's pass of a GPT-2-small-shaped model (random weights), "
                        "one pair of rows padded to 256 tokens, timed --reps times")
    args = p.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        raise SystemExit(f"error: --reps {args.reps}: expected a whole number ≥ 1")
    args.reps = args.reps or (5 if args.gpt2_small else 20)
    device = pick_device(args.device)
    if args.gpt2_small:
        cost = dpo_step_cost(GPT2_SMALL, pairs=1, tokens=256, prompt_tokens=64, device=device, reps=args.reps,
                             shortest=128)
        print(f"GPT-2 small ({cost['params'] / 1e6:.1f} M), one pair: rows of {cost['real_tokens']} tokens padded to "
              f"{cost['padded_tokens']}, on {device.type} ({torch.get_num_threads()} threads, load average "
              f"{os.getloadavg()[0]:.2f})")
        print(f"  DPO step (forward, backward, AdamW): {describe_spread(cost['step'])}")
        print(f"  the reference's forward pass (cached once a run): {describe_spread(cost['reference'])}")
        return cost
    torch.manual_seed(0)
    tok = Tokenizer.load()
    cfg = GPTConfig(vocab_size=tok.vocab_size)
    out = {}

    peak = measure_matmul_peak(device, seconds=1.0)
    out["matmul_peak_gflops"] = peak / 1e9
    print(f"fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s")

    # the same 64 sequences feed an SFT step and a DPO step (as 32 chosen + 32 rejected)
    corpus = world.make_corpus(64, seed=1)
    rows = [render(tok, p_, r) for p_, r in corpus]
    ids, mask = collate(rows, tok.end_id, device)
    model = GPT(cfg).to(device)
    opt = make_optimizer(model, 1e-4)
    x, y = sft_targets(ids, mask)

    def sft_step():
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ref_logps = torch.randn(64, device=device) - 20  # cached: the reference never runs in the loop

    def dpo_step():
        seq = sequence_logps(model, ids, mask).logps
        losses, _, _ = dpo_loss(seq[:32], seq[32:], ref_logps[:32], ref_logps[32:], beta=0.5)
        opt.zero_grad(set_to_none=True)
        losses.mean().backward()
        opt.step()

    sft_step(), dpo_step()  # warm-up
    # interleaved, medians: a slow spell of the machine hits both the same way
    sft_times, dpo_times = [], []
    for _ in range(args.reps):
        sft_times.append(seconds_per_call(sft_step, 1, device, warmup=False))
        dpo_times.append(seconds_per_call(dpo_step, 1, device, warmup=False))
    t_sft, t_dpo = statistics.median(sft_times), statistics.median(dpo_times)
    tokens = x.numel()
    tps = tokens / t_sft
    mfu = tps * train_flops_per_token(cfg, x.size(1)) / peak
    out.update(sft_tokens_per_s=tps, sft_mfu=mfu, sft_step_s=t_sft, dpo_step_s=t_dpo, dpo_over_sft=t_dpo / t_sft)
    print(f"SFT: {tps / 1e3:.1f}k tokens/s = {100 * mfu:.0f}% of the matmul peak ({t_sft * 1e3:.1f} ms/step, 64 sequences)")
    print(f"DPO step / SFT step on the same 64 sequences: {t_dpo * 1e3:.1f} / {t_sft * 1e3:.1f} ms = {t_dpo / t_sft:.2f}")

    # generation: KV cache vs recomputing the whole prefix for every new token
    model.eval()
    prompts = [tok.encode_prompt(p_) for p_, _ in corpus]
    n_new = 16  # about the mean response length of the world, <|end|> included
    t_cache = seconds_per_call(lambda: model.generate(prompts, n_new, temperature=0), 3, device)
    t_full = seconds_per_call(lambda: model.generate(prompts, n_new, temperature=0, use_cache=False), 3, device)
    out.update(kv_cache_speedup=t_full / t_cache)
    print(f"generation of {n_new} tokens x 64 prompts: {t_cache * 1e3:.0f} ms with KV cache, "
          f"{t_full * 1e3:.0f} ms without: {t_full / t_cache:.1f}x")

    # one RLHF step's parts (random weights; 16 prompts x 4 samples, as the default config)
    rm, ref = RewardModel(cfg).to(device).eval(), GPT(cfg).to(device).eval()
    model.train()
    flat = [world.make_prompt(t) for t in world.split_titles()[0][:16] for _ in range(4)]
    gen = make_generator(0, device)
    times = {"sampling": 0.0, "scoring": 0.0, "update": 0.0}
    for _ in range(3):
        t0 = time.perf_counter()
        resp = sample(model, tok, flat, gen, max_new_tokens=n_new)
        ids_r, mask_r = collate(prompt_and_response_rows(tok, flat, resp), tok.end_id, device)
        t1 = time.perf_counter()
        with torch.no_grad():
            sequence_logps(ref, ids_r, mask_r)
            rm(ids_r, mask_r)
        t2 = time.perf_counter()
        lp = sequence_logps(model, ids_r, mask_r).logps
        opt.zero_grad(set_to_none=True)
        (-lp.mean()).backward()
        opt.step()
        t3 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[k] += v / 3
    total = sum(times.values())
    out["rlhf_step_split_s"] = times
    print("one RLHF step (64 samples): " + ", ".join(f"{k} {v * 1e3:.0f} ms ({v / total:.0%})" for k, v in times.items()))

    run = Path(args.run)
    if (run / "summary.json").is_file():
        s = read_json(run / "summary.json")
        t = s["timings"]
        print(f"from {run}: RLHF road (reward model + REINFORCE) {t['rlhf_road']:.0f}s -> gold {s['rlhf']['gold_reward']:+.3f}; "
              f"DPO road {t['dpo_road']:.0f}s -> gold {s['dpo']['gold_reward']:+.3f} (SFT {s['sft']['gold_reward']:+.3f})")
        h = read_json(run / "rlhf_metrics.json")["history"]
        target = s["dpo"]["gold_reward"]
        i = first_step_reaching(h, target)
        if i is not None:
            secs = h[i - 1]["seconds"] + t["reward_model"]
            print(f"RLHF's training samples first reach DPO's final gold ({target:+.3f}, 10-step mean) at "
                  f"step {i}: {secs:.0f}s of the RLHF road vs {t['dpo_road']:.0f}s for DPO")
            out["rlhf_seconds_to_dpo_gold"] = secs
        else:
            print(f"RLHF's training samples never reached DPO's final gold ({target:+.3f}) in this run")
    else:
        print(f"(no finished run at {run}: run `python -m minidpo run` for the wall-time comparison)")
    return out


if __name__ == "__main__":
    main()
