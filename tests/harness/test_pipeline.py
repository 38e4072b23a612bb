"""End to end on tiny configs: every stage runs, numbers move the right way, reruns are identical,
bad input gets one clear line."""
import json
import shutil

import pytest
import torch

from minidpo.harness import cli
from minidpo.checkpoint import read_json
from minidpo.data import collate, prompt_and_response_rows
from minidpo.dpo import pair_logps
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.training import check_finite


def test_summary_has_every_number(fast_run):
    run, s = fast_run
    for key in ("sft.gold_reward", "sft.fluency", "reward_model.val_accuracy", "reward_model.oracle_accuracy",
                "rlhf.gold_reward", "rlhf.win_rate_vs_sft", "rlhf.kl_to_ref", "dpo.gold_reward",
                "dpo.win_rate_vs_sft", "dpo.kl_to_ref", "equivalence.tv_dpo_vs_optimal_fitted"):
        a, b = key.split(".")
        assert isinstance(s[a][b], float), key
    assert all(s["timings"][k] > 0 for k in ("sft", "prefs", "reward_model", "rlhf", "dpo", "equivalence"))
    assert s["equivalence"]["tv_dpo_vs_optimal_fitted"] < 1e-4
    report = run.path("report.md").read_text()
    assert "| DPO |" in report and "![SFT curve](sft_curve.png)" in report
    for png in ("sft_curve", "gold_hist", "reward_model", "rlhf_curves", "dpo_metrics", "equivalence", "ipo_contrast"):
        assert run.path(f"{png}.png").stat().st_size > 10_000
    assert json.loads(run.path("sft.json").read_text())["model"]["vocab_size"] == run.tok.vocab_size


def test_tuning_raises_gold_reward_over_sft(fast_run):
    _, s = fast_run
    assert s["dpo"]["gold_reward"] > s["sft"]["gold_reward"] + 0.1
    assert s["dpo"]["win_rate_vs_sft"] > 0.5 and s["dpo"]["kl_to_ref"] > 0
    assert s["reward_model"]["val_accuracy"] > 0.55  # beats chance on held-out pairs


def test_rlhf_raises_proxy_and_gold(fast_run):
    run, _ = fast_run
    h = read_json(run.path("rlhf_metrics.json"))["history"]
    third = len(h) // 3
    first, last = h[:third], h[-third:]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)
    assert mean(last, "proxy_reward") > mean(first, "proxy_reward")
    assert mean(last, "gold_reward") > mean(first, "gold_reward")


def test_cached_reference_logps_equal_fresh(fast_run):
    run, _ = fast_run
    cached = [torch.load(p, weights_only=True) for p in run.out.glob("ref_logps-*.pt")]
    ref = run.load_policy("sft.pt")
    pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
    enc, _ = encode_pairs(run.tok, pairs, ref.config.block_size)
    fresh = pair_logps(ref, enc, run.tok.end_id, average=False)
    assert any(c.shape == fresh.shape and torch.equal(c, fresh) for c in cached)


def test_reward_model_reads_last_response_token_and_ignores_padding(fast_run):
    from minidpo.reward_model import load_reward_model
    run, _ = fast_run
    rm = load_reward_model(run.path("reward_model.pt"), vocab_size=run.tok.vocab_size)
    tok = run.tok
    short = tok.encode_response("I loved this film.")
    long = tok.encode_response("The acting was brilliant. The music was superb. I loved this film.")
    rows = prompt_and_response_rows(tok, ["Review: The Silent Harbor"] * 2, [short, long])
    ids, mask = collate(rows, tok.end_id)
    alone = rm(*collate(rows[:1], tok.end_id))
    with torch.no_grad():
        assert torch.allclose(rm(ids, mask)[:1], alone, atol=1e-5)


# what the rerun computes again from the fixture's sft.pt: every stage after SFT but the exact lab
# (SFT's own rerun is bit-identical in test_cli_errors' replaced-checkpoint case; the lab is float64)
RECOMPUTED = ("eval_sft", "prefs", "reward_model", "rlhf", "dpo", "eval_rlhf", "eval_dpo", "report")


def test_rerun_reuses_stages_and_same_seed_is_bit_identical(fast_run, tmp_path, capsys):
    from minidpo.harness.pipeline import Run, run_all
    run, s = fast_run
    shutil.copytree(run.out, tmp_path / "again")
    for stage in RECOMPUTED:  # gone, outputs and record, as if never run
        record = tmp_path / "again" / "provenance" / f"{stage}.json"
        for out in json.loads(record.read_text())["outputs"]:
            (tmp_path / "again" / out).unlink()
        record.unlink()
    again = Run.create(tmp_path / "again", seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    capsys.readouterr()
    s2 = run_all(again)
    log = capsys.readouterr().out
    assert all(f"== {stage}: start" in log for stage in RECOMPUTED) and "== sft: reusing" in log
    strip = lambda d: {k: v for k, v in d.items() if k not in ("timings", "throughput", "config", "figures")}
    assert strip(s) == strip(s2)
    weights_and_data = 0  # byte for byte the fixture's (the JSON beside them names their folder, and times)
    for stage in RECOMPUTED:
        for out, h in json.loads((tmp_path / "again" / "provenance" / f"{stage}.json").read_text())["outputs"].items():
            if out.endswith((".pt", ".jsonl")):
                weights_and_data += 1
                assert h == json.loads((run.out / "provenance" / f"{stage}.json").read_text())["outputs"][out], out
    assert weights_and_data >= 5  # pairs (train, val), reward model, REINFORCE and DPO policies
    assert s["config"]["seed"] == s2["config"]["seed"] and s["config"]["out"] != s2["config"]["out"]
    before = again.path("dpo.pt").stat().st_mtime_ns
    run_all(again)
    assert "dpo: reusing its outputs" in capsys.readouterr().out
    assert again.path("dpo.pt").stat().st_mtime_ns == before


def test_cli_bad_preference_file_is_one_clear_line(fast_run, tmp_path, capsys):
    run, _ = fast_run
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Review: The Silent Harbor", "chosen": "a.", "rejected": "b."}\n{"prompt": 1}\n')
    code = cli.main(["dpo", "--out", str(run.out), "--data", str(bad), "--fast", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "bad.jsonl:2" in err and "Traceback" not in err


def test_cli_missing_and_mismatched_checkpoints(tmp_path, capsys, fast_run):
    code = cli.main(["rlhf", "--out", str(tmp_path / "empty"), "--fast", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "sft has not run" in err and "sft.pt not found" in err
    assert "python -m minidpo sft --out" in err and err.count("\n") == 1
    from minidpo.checkpoint import load_gpt, CheckpointError
    run, _ = fast_run
    folder = tmp_path / "mismatch"
    folder.mkdir()
    (folder / "sft.pt").write_bytes(run.path("sft.pt").read_bytes())
    cfg = json.loads(run.path("sft.json").read_text())
    cfg["model"]["vocab_size"] = 100
    (folder / "sft.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the tokenizer"):
        load_gpt(folder / "sft.pt", vocab_size=run.tok.vocab_size)
    for bad in ({"n_head": 3}, {"n_layer": "4"}, {"dropout": 2.0}):  # hand-edited configs
        (folder / "sft.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "vocab_size": run.tok.vocab_size, **bad}}))
        with pytest.raises(CheckpointError, match="sft.json: no valid 'model' config"):
            load_gpt(folder / "sft.pt")


def test_cli_rejects_bad_flag_values(capsys):
    for argv in (["dpo", "--beta", "-1"], ["dpo", "--loss-type", "nope"], ["run", "--device", "tpu"],
                 ["dpo", "--label-smoothing", "0.7"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    assert "invalid" in capsys.readouterr().err


NAN_INJECTIONS = {  # stage -> (where its loop gets its loss, a replacement that returns NaN)
    "sft": ("torch.nn.functional.cross_entropy", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True)),
    "reward_model": ("minidpo.reward_model.bradley_terry_loss", lambda c, r: (c - r) * float("nan")),
    "rlhf": ("minidpo.rlhf.reinforce_loss", lambda logps, adv: logps.mean() * float("nan")),
    "dpo": ("minidpo.losses.LOSSES", None),
}


@pytest.mark.parametrize("stage", list(NAN_INJECTIONS))
def test_a_non_finite_loss_stops_every_training_loop(stage, fast_run, tmp_path, monkeypatch):
    """A NaN injected into each loop's loss stops it at the first step with one message, and
    nothing the stage wrote before is replaced by a broken result."""
    from minidpo import losses
    from minidpo.harness import pipeline as P
    from minidpo.harness.runfolder import Run
    run, _ = fast_run
    folder = tmp_path / "f"
    shutil.copytree(run.out, folder)
    r = Run.create(folder, seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    target, fake = NAN_INJECTIONS[stage]
    if stage == "dpo":
        nan = losses.Loss("sigmoid", lambda rec, **a: losses.LossOutput(rec.margin * float("nan"), *rec.implicit_rewards()),
                          True, losses.LOSSES["sigmoid"].args)
        fake = {**losses.LOSSES, "sigmoid": nan}
    monkeypatch.setattr(target, fake)
    before = {p.name: p.read_bytes() for p in folder.glob(f"{stage}*")}
    with pytest.raises(FloatingPointError, match=rf"^{stage.replace('_', '-')}: loss became nan at step 1; stopping"):
        getattr(P, f"stage_{stage}")(r, lr=1e-4)  # a changed setting, so the stage recomputes
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert r.record(stage) == run.record(stage)  # its provenance still describes the old outputs


def test_check_finite_blames_the_right_flag():
    m = torch.nn.Linear(2, 2)
    nan = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="β 2 made the loss overflow"):
        check_finite(nan, "dpo", 7, m, (torch.zeros(3),), lr=0.1, beta=2.0)
    with pytest.raises(FloatingPointError, match="log-probs are no longer finite: the learning rate 0.1"):
        check_finite(nan, "dpo", 7, m, (torch.tensor([-float("inf")]),), lr=0.1, beta=2.0)
    with torch.no_grad():
        m.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="dpo: loss became nan at step 7.*weights are no longer finite"):
        check_finite(nan, "dpo", 7, m, (torch.zeros(3),), lr=0.1, beta=2.0)
    check_finite(torch.tensor(1.0), "dpo", 7, m)  # a finite loss passes whatever the weights


def test_interrupted_sft_resumes_bit_identical(fast_run, tmp_path):
    from minidpo.checkpoint import load_checkpoint
    from minidpo.sft import SFTConfig, train_sft
    run, _ = fast_run
    with pytest.raises(KeyboardInterrupt):
        train_sft(SFTConfig.fast(seed=0), run.tok, tmp_path, quiet=True, stop_after_steps=120)
    assert (tmp_path / "sft_resume.pt").is_file() and not (tmp_path / "sft.pt").exists()
    m = train_sft(SFTConfig.fast(seed=0), run.tok, tmp_path, quiet=True)
    resumed, _ = load_checkpoint(tmp_path / "sft.pt")
    straight, _ = load_checkpoint(run.path("sft.pt"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert m["history"]["train_loss"] == read_json(run.path("sft_metrics.json"))["history"]["train_loss"]
    assert not (tmp_path / "sft_resume.pt").exists()


def test_a_run_folder_never_mixes_fast_and_default_outputs(fast_run, capsys):
    run, _ = fast_run
    before = run.path("run_config.json").read_text()
    code = cli.main(["sft", "--out", str(run.out), "--quiet", "--force"])  # default config, fast folder
    err = capsys.readouterr().err
    assert code == 2 and "holds a run with fast=True, seed=0" in err and "use another --out" in err
    code = cli.main(["prefs", "--out", str(run.out), "--fast", "--seed", "3", "--quiet"])
    assert code == 2 and "seed=3" in capsys.readouterr().err
    assert run.path("run_config.json").read_text() == before


def test_cli_dpo_on_a_users_file_reports_what_it_read(fast_run, tmp_path, capsys):
    run, _ = fast_run
    folder = tmp_path / "user"
    folder.mkdir()
    for name in ("sft.pt", "sft.json", "sft_metrics.json", "eval_sft.json", "run_config.json", "provenance/sft.json",
                 "provenance/eval_sft.json"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(run.path(name).read_bytes())
    good = '{"prompt": "Review: The Silent Harbor", "chosen": "I loved this film.", "rejected": "I hated this film."}'
    long = ('{"prompt": "Review: ' + "very " * 60 + '", "chosen": "The plot was good.", "rejected": "The plot was bad."}')
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join([good, "not json", long, good, ""]) + "\n")
    code = cli.main(["dpo", "--out", str(folder), "--data", str(data), "--val-data", str(data), "--fast",
                     "--quiet", "--skip-invalid"])
    out = capsys.readouterr()
    assert code == 2 and "mine.jsonl:2: invalid JSON" in out.err  # the held-out file is read strictly
    clean = tmp_path / "clean.jsonl"
    clean.write_text(good + "\n" + long + "\n")
    code = cli.main(["dpo", "--out", str(folder), "--data", str(data), "--val-data", str(clean), "--fast",
                     "--quiet", "--skip-invalid"])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 pairs read, 1 truncated to the context; refused lines: 1; blank lines: 1" in out
    assert "refused " in out and "mine.jsonl:2" in out


def test_a_relative_run_folder_keeps_every_path_right(tmp_path, monkeypatch):
    """The CLI's default folders are relative (runs/default): outputs given as Paths under a study's
    subfolder, or as names inside the folder, are recorded and reused from the cwd."""
    from pathlib import Path
    from minidpo.harness.runfolder import Run
    monkeypatch.chdir(tmp_path)
    run = Run.create("runs/rel", quiet=True)
    run.claim_folder()
    sub = Path("runs/rel/study")
    write = lambda: (sub.mkdir(parents=True, exist_ok=True), (sub / "a.json").write_text("{}"),
                     (run.out / "b.json").write_text("{}"))
    assert run.cached("unit", {"x": 1}, {}, write, outputs=[sub / "a.json"], code="pipeline", folder=sub, announce=False)
    assert run.cached("named", {"x": 1}, {}, write, outputs=["b.json"], code="pipeline", announce=False)
    again = Run.create("runs/rel", quiet=True)
    assert not again.cached("unit", {"x": 1}, {}, write, outputs=[sub / "a.json"], code="pipeline", folder=sub)
    assert not again.cached("named", {"x": 1}, {}, write, outputs=["b.json"], code="pipeline")
    assert (sub / "provenance" / "unit.json").is_file()
    from minidpo.checkpoint import save_checkpoint
    from minidpo.model import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=run.tok.vocab_size, n_layer=1, n_head=1, n_embd=8)
    save_checkpoint(sub / "p.pt", GPT(cfg).state_dict(), {"model": cfg.to_dict()})
    assert run.load_policy(sub / "p.pt").config.n_embd == 8  # a Path from the cwd, not joined twice
