"""`sft --data`: the run's imported model fine-tuned on a file's chosen replies becomes sft.pt, which
DPO starts from and keeps as its reference; the imported model is kept as base.pt, so the command
run again is reused, or recomputed from base.pt, never from its own output."""
import hashlib
import math

import pytest

from minidpo.checkpoint import read_json
from minidpo.harness.cli import main
from minidpo.tokenizer import shipped_file

TRAIN, VAL = shipped_file("hh_train.jsonl"), shipped_file("hh_val.jsonl")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sft_on_a_file_then_dpo_from_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "import-gpt2", "--weights", shipped_file("tiny_gpt2"), "--out", run, "--fast", "--quiet")[0] == 0
    imported = digest(run / "sft.pt")
    sft = ["sft", "--data", TRAIN, "--val-data", VAL, "--out", run, "--fast", "--quiet", "--max-pairs", 64, "--steps", 4,
           "--lr", 1e-3]
    code, out, err = cli(capsys, *sft)
    assert code == 0 and err == "", err
    m = read_json(run / "sft_metrics.json")
    assert m["steps"] == 4 and m["train_data"]["read"] == 64 and m["val_data"]["pairs"] == 200
    assert f"held-out loss {m['val_loss_init']:.3f} -> {m['val_loss']:.3f} in 4 steps" in out
    assert digest(run / "base.pt") == imported != digest(run / "sft.pt")
    tuned = digest(run / "sft.pt")
    code, out, _ = cli(capsys, *sft)  # the same command again: reused, not a second fine-tune
    assert code == 0 and "== sft: reusing its outputs" in out and digest(run / "sft.pt") == tuned
    code, out, _ = cli(capsys, *sft[:-1], 2e-3)  # another lr: from base.pt again
    assert code == 0 and "recomputing" in out and digest(run / "base.pt") == imported
    assert read_json(run / "sft_metrics.json")["base"].endswith("base.pt") and digest(run / "sft.pt") != tuned
    code, out, err = cli(capsys, "dpo", "--data", TRAIN, "--val-data", VAL, "--out", run, "--fast", "--quiet",
                         "--max-pairs", 32, "--beta", 0.1)
    assert code == 0, err
    d = read_json(run / "dpo_metrics.json")
    assert abs(d["history"][0]["eval/loss"] - math.log(2)) < 1e-6  # it starts at its reference: sft.pt
    assert d["train_data"]["sampled"] == "32 of 400 (seed 0)" and "a seeded sample: 32 of 400" in out


@pytest.mark.parametrize("args, message", [
    (["sft", "--data", TRAIN], "no model to fine-tune (sft.pt has not run"),
    (["sft", "--epochs", "2"], "sft: --epochs goes with --data"),
    (["dpo", "--max-pairs", "5"], "dpo: --max-pairs goes with --data"),
])
def test_misuse_is_one_error_line(tmp_path, capsys, args, message):
    code, _, err = cli(capsys, *args, "--out", tmp_path / "empty", "--fast")
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
