"""The default pipeline, stage by stage, in one run folder: SFT -> preferences -> reward model -> RLHF
-> DPO -> the exact lab -> evaluation -> report. Which stage needs which is in `stages.py`.

Each stage function states its configuration and the files it reads, and hands the work to
`run.cached`: the stage is reused when none of that changed since it last ran (see
`runfolder.Run.cached`), and computed otherwise. So an interrupted `run` continues from the last
finished stage, and a changed flag or input file recomputes exactly what depends on it.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from .. import world
from ..checkpoint import read_json, write_json
from ..distributed import world_size
from .runfolder import EVAL_SEED_OFFSET, Run, RunFolderError  # noqa: F401  (Run: the public entry point)
from .stages import OPTIONAL, PIPELINE, STAGES, STUDIES, ensure


def stage_sft(run: Run, **overrides) -> dict:
    from ..sft import SFTConfig, train_sft
    cfg = run.settings(SFTConfig, **overrides)
    run.cached("sft", asdict(cfg), {}, lambda: train_sft(cfg, run.tok, run.out, run.device, run.dtype, run.quiet))
    return read_json(run.path("sft_metrics.json"))


def stage_eval_sft(run: Run) -> dict:
    """SFT samples on the held-out films: the baseline every later win rate is measured against."""
    from ..evaluate import text_stats

    def go():
        stats = run.evaluate(run.load_policy("sft.pt"), baseline=False)
        corpus = world.make_corpus(len(stats["gold"]), run.seed + 2, world.split_titles()[1])
        stats["corpus"] = text_stats([p for p, _ in corpus], [r for _, r in corpus])
        write_json(run.path("eval_sft.json"), stats)
    run.cached("eval_sft", run.eval_config(), run.inputs("eval_sft"), go)
    return read_json(run.path("eval_sft.json"))


def stage_prefs(run: Run) -> dict:
    from ..preferences import PrefsConfig, generate_preference_files
    cfg = run.settings(PrefsConfig)

    def go():
        report = generate_preference_files(run.load_policy("sft.pt"), run.tok, cfg, run.out, run.dtype)
        write_json(run.path("prefs_report.json"), report)
        t, v = report["train"], report["val"]
        print(f"pairs: {t['pairs']} train, {v['pairs']} held-out; refused as identical: {t['refused_identical']} + "
              f"{v['refused_identical']}; refused as empty: {t['refused_empty']} + {v['refused_empty']}; "
              f"oracle accuracy {t['oracle_accuracy']:.3f}")
    run.cached("prefs", asdict(cfg), run.inputs("prefs"), go)
    return read_json(run.path("prefs_report.json"))


def stage_reward_model(run: Run, **overrides) -> dict:
    from ..reward_model import RMConfig, train_reward_model
    cfg = run.settings(RMConfig, **overrides)
    inputs = run.inputs("reward_model")

    def go():
        m = train_reward_model(cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], run.out,
                               run.device, run.dtype, run.quiet)
        print(f"reward model: held-out accuracy {m['val_accuracy']:.3f} vs oracle {m['oracle_accuracy']:.3f} "
              f"({m['accuracy_vs_oracle']:.2f} of the ceiling); corr with gold {m['gold_correlation_heldout']:.2f}")
    run.cached("reward_model", asdict(cfg), inputs, go)
    return read_json(run.path("reward_model_metrics.json"))


def stage_rlhf(run: Run, **overrides) -> dict:
    from ..rlhf import RLHFConfig, train_rlhf
    return _stage_rl(run, "rlhf", RLHFConfig, train_rlhf, **overrides)


def _stage_rl(run: Run, name: str, config_class, train, **overrides) -> dict:
    """An RL stage (REINFORCE, PPO, GRPO) from the SFT checkpoint against the run's reward model
    (or the gold reward itself with reward="gold", which then reads no reward model)."""
    cfg = run.settings(config_class, **overrides)
    inputs = run.inputs(name)
    if cfg.reward == "gold":
        del inputs["reward_model"]
    config = asdict(cfg)
    if world_size() > 1:  # under torchrun each rank samples with its own generator: other samples, other weights
        config["sampling_ranks"] = world_size()
    run.cached(name, config, inputs, lambda: train(
        cfg, run.tok, inputs["sft"], inputs.get("reward_model"), run.out, run.device, run.dtype, run.quiet))
    return read_json(run.path(f"{name}_metrics.json"))


def stage_ppo(run: Run, **overrides) -> dict:
    from ..ppo import PPOConfig, train_ppo
    return _stage_rl(run, "ppo", PPOConfig, train_ppo, **overrides)


def stage_grpo(run: Run, **overrides) -> dict:
    from ..grpo import GRPOConfig, train_grpo
    return _stage_rl(run, "grpo", GRPOConfig, train_grpo, **overrides)


def stage_dpo(run: Run, train_file=None, val_file=None, skip_invalid: bool = False, max_pairs: int | None = None,
              **overrides) -> dict:
    """DPO on OUT/prefs_train.jsonl, or on a file of the user's (`train_file`, or a seeded sample of
    `max_pairs` of its lines); its path and content hash are recorded, and the report names it."""
    from ..dpo import DPOConfig, train_dpo
    cfg = run.settings(DPOConfig, **overrides)
    config = cfg.key()  # an unknown loss, or an argument it does not take, is an error before any work
    inputs = run.inputs("dpo", train_data=train_file, val_data=val_file)
    config = {**config, "skip_invalid": True} if skip_invalid else config
    config = {**config, "max_pairs": max_pairs} if max_pairs is not None else config
    run.cached("dpo", config, inputs, lambda: train_dpo(
        cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], run.out, run.device, run.dtype,
        run.quiet, skip_invalid=skip_invalid, max_pairs=max_pairs))
    return read_json(run.path("dpo_metrics.json"))


PAIRS_SFT = "pairs"  # the mark in an sft record's config of a fine-tune on a file (the model it started from is base.pt)


def stage_sft_on_pairs(run: Run, train_file, val_file=None, skip_invalid: bool = False, **overrides) -> dict:
    """`sft --data PAIRS.jsonl`: the run's model fine-tuned on the file's chosen responses becomes
    sft.pt, which DPO starts from and keeps as its reference. The model it started from (sft.pt as
    `import-gpt2` or the toy's `sft` left it) is kept as base.pt, so the command run again, with
    another file or other settings, starts from that same model and never from its own output."""
    from ..sft import PairsSFTConfig, train_sft_on_pairs
    cfg = run.settings(PairsSFTConfig, **overrides)
    keep_base(run)
    inputs = {"base": run.path("base.pt"), "train_data": Path(train_file)}
    if val_file is not None:
        inputs["val_data"] = Path(val_file)
    config = {"sft_on": PAIRS_SFT, **asdict(cfg), **({"skip_invalid": True} if skip_invalid else {})}
    run.cached("sft", config, inputs, lambda: train_sft_on_pairs(
        cfg, run.tok, inputs["base"], inputs["train_data"], inputs.get("val_data"), run.out, run.device, run.dtype,
        run.quiet, skip_invalid))
    return read_json(run.path("sft_metrics.json"))


def keep_base(run: Run) -> None:
    """base.pt := sft.pt, unless sft.pt is already a fine-tune of base.pt (its record says so)."""
    from ..checkpoint import atomic_write
    rec = run.record("sft")
    if rec is not None and rec["key"]["config"].get("sft_on") == PAIRS_SFT:
        if not run.path("base.pt").is_file():
            raise RunFolderError(f"{run.path('base.pt')} is gone (the model sft.pt was fine-tuned from): "
                                 f"run `{run.command('import-gpt2')} --weights DIR` again")
        return
    if run.why_not_current("sft") is not None:
        raise RunFolderError(f"{run.out}: no model to fine-tune (sft.pt {run.why_not_current('sft')}): run "
                             f"`{run.command('import-gpt2')} --weights DIR` first (or `{run.command('sft')}` for "
                             "the toy's own model)")
    for suffix in (".pt", ".json"):
        with open(run.path("sft" + suffix), "rb") as src:
            atomic_write(run.path("base" + suffix), lambda f: shutil.copyfileobj(src, f))


def stage_equivalence(run: Run) -> dict:
    from ..bandit import run_lab

    def go():
        res = run_lab(seed=run.seed, fast=run.fast)
        write_json(run.path("equivalence.json"), res)
        print(f"exact lab: TV(DPO, π*(r_φ)) = {res['tv_dpo_vs_optimal_fitted']:.1e}, "
              f"TV(exact RL, π*(r_φ)) = {res['tv_rlhf_vs_optimal_fitted']:.1e}, "
              f"TV(REINFORCE, π*(r_φ)) = {res['tv_reinforce_vs_optimal_fitted']:.1e}, "
              f"implicit-reward error {res['implicit_reward_max_error']:.1e}, "
              f"gradient check {res['gradient_max_rel_error']:.1e}")
    run.cached("equivalence", {"fast": run.fast}, {}, go)
    return read_json(run.path("equivalence.json"))


def _stage_eval(run: Run, method: str) -> dict:
    """A tuned policy on the same held-out prompts, seed and metrics as the SFT baseline."""
    out = run.path(f"eval_{method}.json")
    run.cached(f"eval_{method}", run.eval_config(), run.inputs(f"eval_{method}"),
               lambda: write_json(out, run.evaluate(run.load_policy(f"{method}.pt"))))
    return read_json(out)


def stage_eval_rlhf(run: Run) -> dict:
    return _stage_eval(run, "rlhf")


def stage_eval_dpo(run: Run) -> dict:
    return _stage_eval(run, "dpo")


def stage_eval_ppo(run: Run) -> dict:
    return _stage_eval(run, "ppo")


def stage_eval_grpo(run: Run) -> dict:
    return _stage_eval(run, "grpo")


def run_all(run: Run, critics: bool = False) -> dict:
    """The README's main command: every stage of the pipeline, then the report; returns the summary
    (also in summary.json). critics=True (`run --all`) adds every study and its report section."""
    t0 = time.perf_counter()
    run.claim_folder()
    ensure(run, *(s for s in PIPELINE if s != "report"))
    if critics:
        ensure(run, *OPTIONAL, *STUDIES)
    summary = STAGES["report"](run)
    print(f"== all stages done in {time.perf_counter() - t0:.1f}s; see {run.path('report.md')}")
    return summary
