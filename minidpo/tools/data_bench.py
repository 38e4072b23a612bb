"""Benchmark (not a test): reading and tokenizing a preference file of real size.

    python -m minidpo.tools.data_bench [--pairs 160000] [--tokenizer GPT2_FOLDER] [--threads N]

Writes N HH-shaped pairs (HH-RLHF's size: 160,000 in its training split) to a temporary file:
dialogues of 3 to 8 human turns from tools/own_data.py, about 760 bytes of text a pair once the
prompt is split off (the size of the file issue 28 measured: 120 MB for 160,000 pairs), written in
HH's layout, where chosen and rejected each repeat the prompt. Then, in
a fresh process, reads them (`preferences.read_preferences`: every line checked, the prompt split off)
and tokenizes them (`preferences.encode_pairs`), and prints pairs per second and that process's peak
memory (its maxrss, torch and all), beside the peak of a process that only imports minidpo. Run it
on an idle machine: another process on the cores slows it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(path: str, tokenizer: str | None, block_size: int, threads: int | None) -> dict:
    """In this process: read and tokenize `path`; seconds of each, peak memory."""
    from ..preferences import encode_pairs, read_preferences
    tok = _tokenizer(tokenizer)
    t0 = time.perf_counter()
    pairs, _ = read_preferences(path)
    t1 = time.perf_counter()
    encoded, report = encode_pairs(tok, pairs, block_size, threads)
    t2 = time.perf_counter()
    tokens = int(encoded.lengths().sum())
    return {"pairs": len(pairs), "read_s": t1 - t0, "encode_s": t2 - t1, "tokens_in_rows": tokens,
            "tokens_held": sum(t.size for t, _ in encoded.blocks), "truncated": report["truncated"],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokenizer": tok.kind,
            "threads": threads or min(4, os.cpu_count() or 1)}


def _tokenizer(folder):
    from ..tokenizer import Tokenizer
    if folder is None:
        return Tokenizer.load()
    from ..interop.hf_tokenizer import read_hf_tokenizer
    ranks, kind = read_hf_tokenizer(folder)
    return Tokenizer(ranks, kind=kind)


def _in_fresh_process(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "minidpo.tools.data_bench", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=160_000)
    p.add_argument("--tokenizer", help="a GPT-2 folder whose vocab.json + merges.txt to use (default: minidpo's)")
    p.add_argument("--block-size", type=int, default=1024, help="the context pairs are cut to (GPT-2's: 1024)")
    p.add_argument("--threads", type=int, help="tokenizer threads (default: min(4, cores))")
    p.add_argument("--measure", help=argparse.SUPPRESS)   # (the fresh process's own job)
    p.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline:
        from .. import preferences  # noqa: F401  (what every reader of a file imports anyway)
        print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return {}
    if args.measure:
        print(json.dumps(measure(args.measure, args.tokenizer, args.block_size, args.threads)))
        return {}
    from .own_data import hh_pairs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hh_bench.jsonl"
        t0 = time.perf_counter()
        with open(path, "w", encoding="utf-8") as f:
            for i in range(0, args.pairs, 10_000):
                f.writelines(json.dumps(r) + "\n" for r in hh_pairs(min(10_000, args.pairs - i), seed=i, turns=(3, 8)))
        size = path.stat().st_size
        print(f"wrote {args.pairs} HH-shaped pairs, {size / 1e6:.0f} MB, in {time.perf_counter() - t0:.1f}s")
        extra = [a for k, v in (("--tokenizer", args.tokenizer), ("--threads", args.threads)) if v for a in (k, str(v))]
        m = _in_fresh_process("--measure", str(path), "--block-size", str(args.block_size), *extra)
        base = _in_fresh_process("--baseline")
    n, total = m["pairs"], m["read_s"] + m["encode_s"]
    out = {**m, "file_mb": size / 1e6, "pairs_per_s": n / total, "read_pairs_per_s": n / m["read_s"],
           "encode_pairs_per_s": n / m["encode_s"], "baseline_peak_mb": base["peak_mb"], "cores": os.cpu_count(),
           "load_average": os.getloadavg()[0]}
    print(f"read + check + split: {out['read_pairs_per_s']:,.0f} pairs/s; tokenize ({m['tokenizer']} tokenizer, "
          f"{m['threads']} threads): {out['encode_pairs_per_s']:,.0f} pairs/s; together {out['pairs_per_s']:,.0f} "
          f"pairs/s ({total:.1f}s for {n:,} pairs, {m['tokens_in_rows'] / n:.0f} tokens per pair's two rows, "
          f"{m['truncated']} cut to {args.block_size})")
    print(f"peak memory {m['peak_mb']:.0f} MB (a process that only imports minidpo: {base['peak_mb']:.0f} MB); "
          f"token ids held: {4 * m['tokens_held'] / 1e6:.0f} MB as int32")
    print(f"({os.cpu_count()} cores, load average {out['load_average']:.2f} when it finished)")
    return out


if __name__ == "__main__":
    main()
