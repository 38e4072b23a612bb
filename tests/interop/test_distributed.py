"""More than one process: torchrun with 2 CPU processes (gloo) trains the same weights as one process
with the same global batch, to float rounding; gradient accumulation does the same in one process."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidpo.checkpoint import load_checkpoint
from minidpo.harness import cli
from minidpo.preferences import read_preferences, write_preferences
from minidpo.training import one_thread

ROOT = Path(__file__).resolve().parents[2]


def small_data(run, folder: Path):
    write_preferences(folder / "train.jsonl", read_preferences(run.path("prefs_train.jsonl"))[0][:48])
    write_preferences(folder / "val.jsonl", read_preferences(run.path("prefs_val.jsonl"))[0][:16])


def max_difference(a: Path, b: Path) -> float:
    sa, sb = load_checkpoint(a)[0], load_checkpoint(b)[0]
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def test_gradient_accumulation_gives_the_weights_of_the_whole_batch(fast_run, tmp_path):
    from minidpo.dpo import DPOConfig, train_dpo
    run, _ = fast_run
    small_data(run, tmp_path)
    for accum in (1, 4):
        train_dpo(DPOConfig.fast(epochs=1, lr=2e-4, grad_accum=accum), run.tok, run.path("sft.pt"), tmp_path / "train.jsonl",
                  tmp_path / "val.jsonl", tmp_path / f"a{accum}", quiet=True)
    # micro-batches pad to their own longest row: the same sums, rounded differently; Adam divides each
    # component by its own running size, so on components with |g| near its eps the rounding grows to
    # ~1e-5 in the weights (1.2e-5 measured here); counting only the first micro-batch moves them by 2.4e-4
    assert max_difference(tmp_path / "a1" / "dpo.pt", tmp_path / "a4" / "dpo.pt") < 5e-5


@pytest.mark.slow
def test_torchrun_two_processes_train_the_weights_of_one(fast_run, tmp_path):
    run, _ = fast_run
    small_data(run, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["dpo", "--fast", "--quiet", "--epochs", "1", "--data", str(tmp_path / "train.jsonl"),
            "--val-data", str(tmp_path / "val.jsonl")]
    for name in ("one", "two"):
        shutil.copytree(run.out, tmp_path / name)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "minidpo", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]
    with one_thread():  # the same command in this process, on one thread as each rank
        assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    # the gradients agree to ~1e-7 (next test); Adam divides each component by its own running size,
    # so on components with |g| near its eps (1e-8) that rounding grows to a few 1e-6 in the weights,
    # once 1.07e-5 (measured); a wrong gradient average moves them by ~1e-4 (the accumulation test's
    # broken case gave 2.4e-4)
    assert max_difference(tmp_path / "one" / "dpo.pt", tmp_path / "two" / "dpo.pt") < 5e-5
    # rank 0 alone wrote the outputs, once: one record, no stray temporary files
    assert not list((tmp_path / "two").rglob("*.tmp"))
    assert "implicit-reward accuracy" in two.stdout and two.stdout.count("implicit-reward accuracy") == 1


def test_the_shards_weighted_shares_give_the_whole_batch_gradient(fast_run):
    """What DDP sums: each rank's loss × global_share, its gradient; their mean is the whole batch's."""
    from minidpo.distributed import global_share
    from minidpo.dpo import DPOConfig, batch_loss, pair_logps
    from minidpo.preferences import encode_pairs
    run, _ = fast_run
    model = run.load_policy("sft.pt").train()
    enc, _ = encode_pairs(run.tok, read_preferences(run.path("prefs_train.jsonl"))[0][:15], 64)
    ref = pair_logps(model, enc, run.tok.end_id, False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    cfg = DPOConfig.fast()
    batch_loss(model, enc, ref, cfg, run.tok.end_id)[0].backward()
    whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    width = max(len(r[0]) for pair in enc for r in pair)
    for shard in (list(range(0, 15, 2)), list(range(1, 15, 2))):  # 8 and 7 pairs: unequal shares
        loss = batch_loss(model, [enc[i] for i in shard], ref[shard], cfg, run.tok.end_id, length=width)[0]
        (loss * global_share(len(shard), 15)).backward()  # (world size 1 here: DDP's ×2 and ÷2 cancel)
    assert max((a - b).abs().max().item() for a, b in zip(whole, (p.grad for p in model.parameters()))) < 1e-6


@pytest.mark.slow
def test_torchrun_rl_samples_on_every_rank_and_gathers(fast_run, tmp_path, monkeypatch, capsys):
    """`torchrun --nproc_per_node=2 -m minidpo rlhf`: rank r samples responses r, r+2, ... with its
    own generator, every rank gets all of them and makes the same update. One process that samples
    the two shards the same way (emulated here) trains the same weights."""
    from minidpo import rollouts
    from minidpo.distributed import gather_shards, shard
    from minidpo.rlhf import RLHFConfig, train_rlhf
    from minidpo.sampling import make_generator
    run, _ = fast_run
    assert shard(list("abcde")) == list("abcde") and gather_shards(list("abc"), 3) == list("abc")  # one process
    shutil.copytree(run.out, tmp_path / "two")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "minidpo", "rlhf", "--fast", "--quiet", "--steps", "3", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]
    with monkeypatch.context() as m:  # what torchrun's environment tells a command that cannot run under it
        m.setenv("WORLD_SIZE", "2")
        assert cli.main(["prefs", "--fast", "--out", str(tmp_path / "two")]) == 2
    assert "error: under torchrun minidpo runs sft" in capsys.readouterr().err

    cfg = run.settings(RLHFConfig, steps=3)
    sample = rollouts.sample_or_explain
    second = make_generator(cfg.seed + rollouts.RANK_SEED_OFFSET, "cpu")  # rank 1's generator

    def two_ranks(policy, tok, prompts, gen, *args):
        parts = [sample(policy, tok, prompts[r::2], g, *args) for r, g in ((0, gen), (1, second))]
        whole = [None] * len(prompts)
        whole[0::2], whole[1::2] = parts
        return whole
    monkeypatch.setattr(rollouts, "sample_or_explain", two_ranks)
    with one_thread():  # as the torchrun ranks (OMP_NUM_THREADS=1): the same rounding, the same samples
        metrics = train_rlhf(cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), tmp_path / "one", quiet=True)
    assert metrics["samples_generated"] == 3 * cfg.prompts_per_step * cfg.k
    assert max_difference(tmp_path / "one" / "rlhf.pt", tmp_path / "two" / "rlhf.pt") < 1e-6
    # and not what one plain process samples: rank 1 drew its responses with its own generator
    monkeypatch.setattr(rollouts, "sample_or_explain", sample)
    train_rlhf(cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), tmp_path / "plain", quiet=True)
    assert max_difference(tmp_path / "plain" / "rlhf.pt", tmp_path / "two" / "rlhf.pt") > 1e-4
