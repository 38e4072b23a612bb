"""The whole story in one run folder: SFT -> preferences -> reward model -> RLHF -> DPO -> the exact
lab -> evaluation -> report. Each stage writes its files into the folder and is skipped when they
already exist (unless `force`), so an interrupted run continues from the last finished stage.

Files of a run folder (all small): sft.pt/.json, sft_metrics.json, eval_sft.json, prefs_train.jsonl,
prefs_val.jsonl, prefs_report.json, reward_model.pt/.json, reward_model_metrics.json, rlhf.pt/.json,
rlhf_metrics.json, dpo.pt/.json, dpo_log.jsonl, dpo_metrics.json, ref_logps-*.pt, equivalence.json,
eval.json, timings.json, summary.json, report.md, *.png.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import world
from .checkpoint import load_gpt, read_json, write_json
from .tokenizer import Tokenizer
from .training import PeakMemory, pick_device, resolve_dtype, seed_everything


@dataclass
class Run:
    out: Path
    seed: int = 0
    fast: bool = False
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None
    force: bool = False
    quiet: bool = False
    tok: Tokenizer = field(default_factory=Tokenizer.load)

    @classmethod
    def create(cls, out, seed=0, fast=False, device="auto", dtype="auto", force=False, quiet=False,
               tokenizer=None):
        dev = pick_device(device)
        tok = Tokenizer.load(tokenizer) if tokenizer else Tokenizer.load()
        return cls(Path(out), seed, fast, dev, resolve_dtype(dtype, dev), force, quiet, tok)

    def path(self, name: str) -> Path:
        return self.out / name

    def needs(self, *names: str) -> bool:
        """True when the stage must run: forced, or one of its outputs is missing."""
        return self.force or not all(self.path(n).is_file() for n in names)

    def eval_prompts(self) -> list[str]:
        from .evaluate import eval_prompts
        return eval_prompts(4 if self.fast else 8)

    def claim_folder(self) -> None:
        """A run folder holds one configuration: refuse to mix tiny (--fast) and default outputs,
        or two seeds, in one folder (a reused stage would silently come from the other run)."""
        self.out.mkdir(parents=True, exist_ok=True)
        f = self.path("run_config.json")
        if f.is_file() and not self.force:
            old = read_json(f)
            if (old.get("fast"), old.get("seed")) != (self.fast, self.seed):
                raise ValueError(f"{self.out} holds a run with fast={old.get('fast')}, seed={old.get('seed')}; "
                                 f"this one has fast={self.fast}, seed={self.seed}: use another --out, or --force")
        write_json(f, self.config())

    def config(self) -> dict:
        return {"out": str(self.out), "seed": self.seed, "fast": self.fast, "device": str(self.device),
                "dtype": str(self.dtype) if self.dtype else "fp32"}


def _timed(run: Run, stage: str, fn):
    """Run a stage, print its start and end, record its wall time in timings.json."""
    print(f"== {stage}: start", flush=True)
    seed_everything(run.seed)
    t0 = time.perf_counter()
    with PeakMemory(run.device) as mem:
        result = fn()
    dt = time.perf_counter() - t0
    for name, value in (("timings.json", dt), ("peak_memory_mb.json", mem.mb)):
        table = read_json(run.path(name)) if run.path(name).is_file() else {}
        table[stage] = value
        write_json(run.path(name), table)
    print(f"== {stage}: done in {dt:.1f}s" + (f", peak memory {mem.mb:.0f} MB" if mem.mb else ""), flush=True)
    return result


def _reused(stage: str):
    print(f"== {stage}: reusing existing outputs (use --force to redo)", flush=True)


# --- stages ---------------------------------------------------------------------------------
def stage_sft(run: Run, **overrides) -> dict:
    from .sft import SFTConfig, train_sft
    if run.needs("sft.pt", "sft_metrics.json"):
        cfg = (SFTConfig.fast if run.fast else SFTConfig)(seed=run.seed, **overrides)
        _timed(run, "sft", lambda: train_sft(cfg, run.tok, run.out, run.device, run.dtype, run.quiet))
    else:
        _reused("sft")
    return read_json(run.path("sft_metrics.json"))


def load_policy(run: Run, name: str):
    return load_gpt(run.path(name), run.device, vocab_size=run.tok.vocab_size)[0].eval()


def stage_eval_sft(run: Run) -> dict:
    """SFT samples on the held-out films: the baseline every later win rate is measured against."""
    from .evaluate import evaluate_policy, text_stats
    if run.needs("eval_sft.json"):
        def go():
            sft = load_policy(run, "sft.pt")
            stats = evaluate_policy(sft, sft, run.tok, run.eval_prompts(), seed=run.seed + 100, dtype=run.dtype)
            corpus = world.make_corpus(len(stats["gold"]), run.seed + 2, world.split_titles()[1])
            c = text_stats([p for p, _ in corpus], [r for _, r in corpus])
            stats["corpus"] = c
            write_json(run.path("eval_sft.json"), stats)
        _timed(run, "eval_sft", go)
    else:
        _reused("eval_sft")
    return read_json(run.path("eval_sft.json"))


def stage_prefs(run: Run) -> dict:
    from .preferences import PrefsConfig, generate_preference_files
    if run.needs("prefs_train.jsonl", "prefs_val.jsonl", "prefs_report.json"):
        def go():
            cfg = (PrefsConfig.fast if run.fast else PrefsConfig)(seed=run.seed)
            report = generate_preference_files(load_policy(run, "sft.pt"), run.tok, cfg, run.out, run.dtype)
            write_json(run.path("prefs_report.json"), report)
            print(f"pairs: {report['train']['pairs']} train, {report['val']['pairs']} held-out; "
                  f"refused as identical: {report['train']['refused_identical']} + "
                  f"{report['val']['refused_identical']}; refused as empty: {report['train']['refused_empty']} + "
                  f"{report['val']['refused_empty']}; oracle accuracy {report['train']['oracle_accuracy']:.3f}")
        _timed(run, "prefs", go)
    else:
        _reused("prefs")
    return read_json(run.path("prefs_report.json"))


def stage_reward_model(run: Run, **overrides) -> dict:
    from .reward_model import RMConfig, train_reward_model
    if run.needs("reward_model.pt", "reward_model_metrics.json"):
        cfg = (RMConfig.fast if run.fast else RMConfig)(seed=run.seed, **overrides)
        m = _timed(run, "reward_model", lambda: train_reward_model(
            cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
            run.out, run.device, run.dtype, run.quiet))
        print(f"reward model: held-out accuracy {m['val_accuracy']:.3f} vs oracle {m['oracle_accuracy']:.3f} "
              f"({m['accuracy_vs_oracle']:.2f} of the ceiling); corr with gold {m['gold_correlation_heldout']:.2f}")
    else:
        _reused("reward_model")
    return read_json(run.path("reward_model_metrics.json"))


def stage_rlhf(run: Run, **overrides) -> dict:
    from .rlhf import RLHFConfig, train_rlhf
    if run.needs("rlhf.pt", "rlhf_metrics.json"):
        cfg = (RLHFConfig.fast if run.fast else RLHFConfig)(seed=run.seed, **overrides)
        _timed(run, "rlhf", lambda: train_rlhf(cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"),
                                               run.out, run.device, run.dtype, run.quiet))
    else:
        _reused("rlhf")
    return read_json(run.path("rlhf_metrics.json"))


def stage_dpo(run: Run, train_file=None, val_file=None, skip_invalid: bool = False, **overrides) -> dict:
    from .dpo import DPOConfig, train_dpo
    if run.needs("dpo.pt", "dpo_metrics.json") or train_file is not None:
        cfg = (DPOConfig.fast if run.fast else DPOConfig)(seed=run.seed, **overrides)
        _timed(run, "dpo", lambda: train_dpo(
            cfg, run.tok, run.path("sft.pt"), train_file or run.path("prefs_train.jsonl"),
            val_file or run.path("prefs_val.jsonl"), run.out, run.device, run.dtype, run.quiet,
            skip_invalid=skip_invalid))
    else:
        _reused("dpo")
    return read_json(run.path("dpo_metrics.json"))


def stage_equivalence(run: Run) -> dict:
    from .bandit import run_lab
    if run.needs("equivalence.json"):
        res = _timed(run, "equivalence", lambda: run_lab(seed=run.seed, fast=run.fast))
        write_json(run.path("equivalence.json"), res)
        print(f"exact lab: TV(DPO, π*(r̂)) = {res['tv_dpo_vs_optimal_fitted']:.1e}, "
              f"TV(exact RL, π*(r̂)) = {res['tv_rlhf_vs_optimal_fitted']:.1e}, "
              f"TV(REINFORCE, π*(r̂)) = {res['tv_reinforce_vs_optimal_fitted']:.1e}, "
              f"implicit-reward error {res['implicit_reward_max_error']:.1e}, "
              f"gradient check {res['gradient_max_rel_error']:.1e}")
    else:
        _reused("equivalence")
    return read_json(run.path("equivalence.json"))


def stage_evaluate(run: Run, methods=("rlhf", "dpo")) -> dict:
    """Every tuned policy on the same held-out prompts, seed and metrics as the SFT baseline."""
    from .evaluate import evaluate_policy
    sft_eval = read_json(run.path("eval_sft.json"))
    out = {}
    previous = read_json(run.path("eval.json")) if run.path("eval.json").is_file() else {}

    def go():
        ref = load_policy(run, "sft.pt")
        for m in methods:
            out[m] = evaluate_policy(load_policy(run, f"{m}.pt"), ref, run.tok, run.eval_prompts(),
                                     seed=run.seed + 100, sft_gold=sft_eval["gold"], dtype=run.dtype)
        write_json(run.path("eval.json"), {**previous, **out})  # other methods' results stay
    _timed(run, "evaluate", go)
    return out


def _critics():
    from . import critics, online_dpo, overoptimisation
    return {"overoptimisation": overoptimisation.run_overoptimisation, "diversity": critics.run_diversity,
            "cost": critics.cost_table, "failure-modes": critics.run_failure_modes,
            "online-dpo": online_dpo.run_online_dpo}


CRITICS = ("overoptimisation", "diversity", "cost", "failure-modes", "online-dpo")


def run_critic(run: Run, name: str):
    """One of the critics' studies (issue: what the critics say), timed like a stage."""
    return _timed(run, name, lambda: _critics()[name](run))


def run_all(run: Run, critics: bool = False) -> dict:
    """The README's main command. Returns the summary (also written to summary.json, report.md).
    critics=True (`run --all`) adds the critics' studies and their sections in the report."""
    from .report import write_report
    t0 = time.perf_counter()
    run.claim_folder()
    stage_sft(run)
    stage_eval_sft(run)
    stage_prefs(run)
    stage_reward_model(run)
    stage_rlhf(run)
    stage_dpo(run)
    stage_equivalence(run)
    stage_evaluate(run)
    if critics:
        write_report(run)  # the cost table reads summary.json
        for name in CRITICS:
            run_critic(run, name)
    summary = _timed(run, "report", lambda: write_report(run))
    print(f"== all stages done in {time.perf_counter() - t0:.1f}s; see {run.path('report.md')}")
    return summary
