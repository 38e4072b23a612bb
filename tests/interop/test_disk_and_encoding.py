"""Other people's machines: a disk that fills up during a save, and files written by Windows tools.

Every save goes through `checkpoint.atomic_write`; a failed write (Python's own, or the RuntimeError
torch.save raises from C++ when a write inside it fails) is one WriteError naming the file, the file
as it was, no temporary left, and at the CLI one `error:` line with exit code 2."""
import errno
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from minidpo import checkpoint
from minidpo.checkpoint import WriteError, save_checkpoint, write_json
from minidpo.preferences import read_preferences, read_unpaired
from minidpo.tokenizer import EXAMPLE_PREFS, save_ranks, train_bpe


class FullDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: the write that does not fit fails with ENOSPC."""

    def __init__(self, fd, room):
        self.f, self.room = io.FileIO(fd, "wb"), room

    def writable(self):
        return True

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()
        super().close()


def save_cache(path):
    """The DPO stage's reference-log-prob cache, written as dpo.cached_reference_logps does."""
    checkpoint.atomic_write(path, lambda f: torch.save(torch.zeros(500, 2), f))


def save_figure(path):
    from minidpo.harness.plots import gold_histograms
    gold_histograms({"SFT": [0.1, -0.3, 0.5, 1.2]}, path)


SAVES = {
    "checkpoint (torch.save)": (lambda p: save_checkpoint(p, {"w": torch.zeros(2000)}, {"model": {}}), "sft.pt"),
    "JSON": (lambda p: write_json(p, {"numbers": list(range(2000))}), "summary.json"),
    "figure": (save_figure, "sft_curve.png"),
    "cache": (save_cache, "ref_logps-0123.pt"),
    "safetensors": (lambda p: __import__("minidpo.interop.safetensors", fromlist=["x"]).write_safetensors(
        p, {"w": torch.zeros(2000)}), "model.safetensors"),
    "tokenizer ranks": (lambda p: save_ranks(train_bpe("a b c ab abc " * 50, 5), p), "tokenizer.tiktoken"),
}


@pytest.mark.parametrize("kind", SAVES)
def test_a_full_disk_during_any_save_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, kind):
    save, name = SAVES[kind]
    path = tmp_path / name
    path.write_bytes(b"the previous output")
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: FullDisk(fd, room=100))
    with pytest.raises(WriteError) as e:
        save(path)
    assert e.value.filename == str(path) and e.value.strerror == os.strerror(errno.ENOSPC)
    assert str(e.value) == f"cannot write {path}: {os.strerror(errno.ENOSPC)}; the file as it was is untouched"
    assert path.read_bytes() == b"the previous output" and sorted(p.name for p in tmp_path.iterdir()) == [name]


FSIZE = """import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit then fails with EFBIG
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from minidpo.harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_cli_says_one_line_when_a_checkpoint_does_not_fit(tmp_path):
    """A real write failure inside torch.save (the process may write files of 32 kB at most), at the CLI:
    import-gpt2 --force over a finished import; every file in the folder is as it was."""
    from minidpo.harness import cli
    from minidpo.interop.gpt2 import export_gpt2
    from minidpo.model import GPT, GPTConfig
    ranks = train_bpe("Human: good or bad? Assistant: good. bad. fine.\n" * 50, 20)
    save_ranks(ranks, tmp_path / "gpt2.tiktoken")
    export_gpt2(GPT(GPTConfig(vocab_size=len(ranks) + 1, block_size=16, n_layer=1, n_head=2, n_embd=64, gelu="tanh")),
                tmp_path / "hf")
    args = ["import-gpt2", "--weights", tmp_path / "hf", "--tokenizer", tmp_path / "gpt2.tiktoken",
            "--out", tmp_path / "run", "--fast", "--quiet"]
    assert cli.main([str(a) for a in args]) == 0
    hashes = lambda: {p.relative_to(tmp_path): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted((tmp_path / "run").rglob("*")) if p.is_file()}
    before = hashes()
    assert (tmp_path / "run" / "sft.pt").stat().st_size > 32_000 > max(
        p.stat().st_size for p in (tmp_path / "run").rglob("*.json"))
    p = subprocess.run([sys.executable, "-c", FSIZE, "32000", *map(str, args), "--force"], capture_output=True,
                       text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"error: cannot write {tmp_path / 'run' / 'sft.pt'}: {os.strerror(errno.EFBIG)}; the file as it was is untouched\n"
    assert hashes() == before


def test_a_preference_file_with_a_byte_order_mark_reads_like_the_same_file_without(tmp_path):
    plain = EXAMPLE_PREFS.read_bytes()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + plain)
    (tmp_path / "plain.jsonl").write_bytes(plain)
    (bom, bom_report), (pairs, report) = (read_preferences(tmp_path / f) for f in ("bom.jsonl", "plain.jsonl"))
    assert bom == pairs and len(pairs) == 24 and {k: v for k, v in bom_report.items() if k != "file"} == \
        {k: v for k, v in report.items() if k != "file"}
    lines = [json.dumps({"prompt": "Review: X", "completion": c, "label": l}) for c, l in (("Good.", True), ("Bad.", False))]
    (tmp_path / "kto.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    examples, _ = read_unpaired(tmp_path / "kto.jsonl")
    assert [e["label"] for e in examples] == [True, False]
