"""The CLI as a user meets it: every case of issue 10's "What was seen" ends in a correct, fully
labelled result or in ONE `error:` line with exit code 2, no traceback, and no output written earlier
in the folder is changed by a failed command.

The cases call the CLI's `main` in this process (one torch import for all of them, not one per
command): what it prints to stdout and stderr is captured, and an exception escaping `main` -- what
a user would see as a traceback -- fails the case. One test runs `python -m minidpo` itself, to
show the entry point ends the same way. The cases run once, in a module fixture, each in its own
copy of the tiny run folder; each test then checks one case's result.
"""
import builtins
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minidpo.checkpoint import input_hash
from minidpo.harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "data" / "example_prefs.jsonl"


@contextlib.contextmanager
def denied(path):
    """Opening `path` raises PermissionError, as a non-root student's chmod would (root ignores chmod)."""
    real_open = builtins.open

    def fake_open(file, *a, **k):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)
    builtins.open = fake_open
    try:
        yield
    finally:
        builtins.open = real_open


def cli(*args, deny=None):
    """`python -m minidpo ARGS` as `main` runs it: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            (denied(Path(deny).resolve()) if deny else contextlib.nullcontext()):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the cases: each gets a fresh copy of the tiny run folder, returns what the test checks -----------
def case_dpo_on_other_data_then_report_then_run(f: Path):
    steps = [cli("dpo", "--fast", "--out", f, "--data", EXAMPLE, "--quiet")]
    steps.append(cli("report", "--fast", "--out", f))
    report_mixed = (f / "report.md").read_text()
    steps.append(cli("run", "--fast", "--out", f, "--quiet"))
    return steps, report_mixed, (f / "report.md").read_text(), json.loads((f / "summary.json").read_text())


def case_other_seed_or_dtype_is_refused(f: Path):
    before = snapshot(f)
    out = [cli("evaluate", "--fast", "--force", "--seed", "1", "--out", f),
           cli("run", "--fast", "--seed", "1", "--out", f),
           cli("run", "--fast", "--dtype", "bf16", "--out", f)]
    return out, before == snapshot(f)


def case_same_shape_sft_from_another_run(f: Path):
    original = input_hash(f / "sft.pt")
    shutil.copy(f / "dpo.pt", f / "sft.pt")  # another model of the same shape
    shutil.copy(f / "dpo.json", f / "sft.json")
    other = input_hash(f / "sft.pt")
    before = snapshot(f)
    refused = cli("evaluate", "--fast", "--out", f)
    unchanged = before == snapshot(f)
    rerun = cli("run", "--fast", "--out", f, "--quiet")
    read = {p.stem: json.loads(p.read_text())["key"].get("inputs", {}).get("sft") for p in (f / "provenance").glob("*.json")}
    return refused, unchanged, rerun, other, input_hash(f / "sft.pt"), read, original


def case_unreadable_preference_file(f: Path):
    data = f.parent / "mine.jsonl"
    shutil.copy(EXAMPLE, data)
    before = snapshot(f)
    return cli("dpo", "--fast", "--out", f, "--data", data, deny=data), before == snapshot(f)


def case_out_is_a_file(f: Path):
    (f.parent / "afile").write_text("x")
    return [cli("sft", "--fast", "--out", f.parent / "afile"), cli("sft", "--fast", "--out", f.parent / "afile" / "sub")]


def case_corrupt_reference_cache(f: Path):
    for p in f.glob("ref_logps-*.pt"):
        p.write_bytes(b"not a tensor at all")
    result = cli("dpo", "--fast", "--out", f, "--quiet", "--force")
    import torch
    return result, [torch.load(p, weights_only=True).shape for p in sorted(f.glob("ref_logps-*.pt"))]


def case_hand_edited_checkpoint_config(f: Path):
    cfg = json.loads((f / "sft.json").read_text())
    cfg["model"]["n_head"] = 3
    (f / "sft.json").write_text(json.dumps(cfg))
    before = snapshot(f)
    return cli("prefs", "--fast", "--out", f), before == snapshot(f)


def case_run_config_holds_a_list(f: Path):
    (f / "run_config.json").write_text("[1, 2]")
    before = snapshot(f)
    return cli("run", "--fast", "--out", f), before == snapshot(f)


def case_impossible_flags(f: Path):
    before = snapshot(f)
    out = {argv: cli(*argv.split(), "--fast", "--out", f, "--quiet") for argv in (
        "rlhf --beta -1", "dpo --beta nan", "dpo --lr -inf", "sft --steps 0")}
    return out, before == snapshot(f)


def case_training_blows_up(f: Path):
    before = snapshot(f)
    out = {argv: cli(*argv.split(), "--fast", "--out", f, "--quiet")
           for argv in ("rlhf --lr 1e9", "dpo --lr 1e6", "rlhf --beta 1e300")}
    kept = {k: v for k, v in snapshot(f).items() if k in before}
    log = f / "dpo_log.partial.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else None
    return out, kept == before, records


def case_random_bytes_as_checkpoint(f: Path):
    (f / "sft.pt").write_bytes(os.urandom(4096))
    (f / "provenance" / "sft.json").unlink()  # as if it were copied in by hand
    return cli("prefs", "--fast", "--out", f)


def case_killed_run_leaves_temporaries(f: Path):
    (f / ".sft.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (f / "sweeps").mkdir(exist_ok=True)
    (f / "sweeps" / ".dpo_beta0.1.pt.x.tmp").write_bytes(b"half")
    return cli("report", "--fast", "--out", f), sorted(str(p.relative_to(f)) for p in f.rglob("*.tmp"))


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


@pytest.fixture(scope="module")
def results(fast_run, tmp_path_factory):
    run, _ = fast_run

    def go(name):
        base = tmp_path_factory.mktemp(name)
        shutil.copytree(run.out, base / "run")
        return CASES[name](base / "run")
    return {name: go(name) for name in CASES}


def one_error(result, *words):
    """Exit code 2, stderr is exactly one line, `error: ...`, naming each of `words`."""
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_dpo_on_other_data_is_labelled_then_recomputed_by_run(results):
    steps, mixed, final, summary = results["dpo_on_other_data_then_report_then_run"]
    assert [s[0] for s in steps] == [0, 0, 0], steps
    assert "24 pairs read" in steps[0][1]
    assert "**DPO and RLHF did not see the same data**" in mixed and "example_prefs.jsonl` (24 pairs" in mixed
    assert "700 pairs" in mixed  # the reward model's file, named beside it
    assert "== dpo: start (recomputing: inputs changed: inputs train_data)" in steps[2][1]
    assert "learned from the same preference file, `prefs_train.jsonl` (700 pairs" in final
    assert "Every number below was computed in this run" not in final
    assert summary["data"]["same_data"] and summary["data"]["dpo"]["pairs"] == 700


def test_another_seed_or_dtype_is_refused_and_nothing_relabelled(results):
    out, unchanged = results["other_seed_or_dtype_is_refused"]
    one_error(out[0], "holds a run with fast=True, seed=0, dtype=fp32", "seed=1")
    one_error(out[1], "seed=1")
    one_error(out[2], "dtype=bf16")
    assert unchanged


def test_a_replaced_checkpoint_is_never_mixed_with_policies_of_the_old_one(results):
    refused, unchanged, rerun, other, now, read, original = results["same_shape_sft_from_another_run"]
    one_error(refused, "sft is out of date", "sft.pt was changed after the sft stage wrote it", "minidpo sft --out")
    assert unchanged
    assert rerun[0] == 0 and "sft: start (recomputing: sft.pt was changed" in rerun[1] and now != other
    # every stage that reads sft.pt now holds outputs made from the recomputed one: recomputed, or
    # reused because the recomputed sft.pt is byte for byte the one they read (same seed, same
    # threads: SFT is bit-identical), never made from the other model
    readers = {stage: h for stage, h in read.items() if h}
    assert {"prefs", "reward_model", "dpo", "rlhf", "eval_sft", "eval_dpo", "eval_rlhf"} <= set(readers)
    assert all(h == now for h in readers.values()), readers
    # and that is what happens here: SFT with the same seed, in this process, is the fixture's, bit for bit
    assert now == original


def test_unreadable_preference_file(results):
    result, unchanged = results["unreadable_preference_file"]
    one_error(result, "mine.jsonl", "Permission denied")
    assert unchanged


def test_out_naming_a_file_or_a_path_under_one(results):
    a, b = results["out_is_a_file"]
    one_error(a, "is a file, not a folder", "choose another --out")
    one_error(b, "is a file, so no folder can be made under it")


def test_a_corrupt_reference_cache_is_a_miss(results):
    result, shapes = results["corrupt_reference_cache"]
    assert result[0] == 0 and result[1].count("not the expected reference log-probs; recomputing it") == 2
    assert sorted(s[1] for s in shapes) == [2, 2] and all(s[0] > 100 for s in shapes)  # rewritten, valid


def test_hand_edited_checkpoint_config(results):
    result, unchanged = results["hand_edited_checkpoint_config"]
    one_error(result, "sft.json was changed after the sft stage wrote it")
    assert unchanged


def test_run_config_holding_a_list(results):
    result, unchanged = results["run_config_holds_a_list"]
    one_error(result, "run_config.json: expected a JSON object, found list", "delete it")
    assert unchanged


def test_impossible_flags_are_one_line_each(results):
    out, unchanged = results["impossible_flags"]
    one_error(out["rlhf --beta -1"], "--beta", "must be ≥ 0")
    one_error(out["dpo --beta nan"], "--beta", "must be finite")
    one_error(out["dpo --lr -inf"], "--lr")
    one_error(out["sft --steps 0"], "--steps", "must be > 0")
    assert unchanged


def test_training_that_blows_up_names_the_flag_at_fault(results):
    out, kept, records = results["training_blows_up"]
    line = one_error(out["rlhf --lr 1e9"], "rlhf: ", "--lr")
    assert "--beta" not in line
    line = one_error(out["dpo --lr 1e6"], "dpo: loss became nan", "--lr")
    assert "--beta" not in line
    line = one_error(out["rlhf --beta 1e300"], "made the loss overflow", "--beta")
    assert "--lr" not in line
    assert kept  # the last good outputs are still there, byte for byte
    assert records is not None and records[0]["step"] == 0  # the failed run's log: valid JSON


def test_random_bytes_as_a_checkpoint(results):
    line = one_error(results["random_bytes_as_checkpoint"], "sft has no provenance record", "minidpo sft --out")
    assert "weights_only" not in line


def test_temporaries_of_a_killed_run_are_removed_at_the_next_start(results):
    result, left = results["killed_run_leaves_temporaries"]
    assert result[0] == 0 and left == []
    assert "removed" in result[1] and ".sft.pt.k1ll3d.tmp" in result[1]


def test_the_entry_point_itself_ends_in_one_line(tmp_path):
    """`python -m minidpo ...` as typed in a shell: a checkpoint that is not one is one `error:`
    line on stderr and exit code 2 from the process, not a traceback."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "sft.pt").write_bytes(os.urandom(4096))
    p = subprocess.run([sys.executable, "-m", "minidpo", "prefs", "--fast", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    one_error((p.returncode, p.stdout, p.stderr), "sft has no provenance record", "minidpo sft --out")
