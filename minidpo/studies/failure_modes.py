"""DPO's own failure mode: both log-probs fall during training, and the freed probability goes to
text no pair labelled; remedies (larger β, conservative DPO, IPO, RPO) read against DPO at the same
KL. `python -m minidpo failure-modes`. (The microscope follows the displaced mass pair by pair.)

Each remedy and plain DPO are trained on every seed of `sweep.seeds` (each seed its own pairs) and
evaluated along training (`sweep.along_training`). A remedy that ends nearer the reference than DPO
keeps more fluency simply by moving less, so each remedy is compared with DPO at the same KL: both
read on their frontiers (hulls of the checkpoints, from the SFT model) at the largest KL both reach
in that seed, gold reward and fluency paired by seed (`sweep.matched`).
"""
from __future__ import annotations

from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig
from ..evaluate import summary_row
from ..harness import compare as C, plots
from . import sweep
from .sweep import failure_reasons  # noqa: F401  (the lesson reads it from here)

BASE = "DPO (default)"
REMEDIES = {  # name -> DPO settings changed from the default (β = 0.5, sigmoid loss)
    BASE: {},
    "larger β (2.0)": {"beta": 2.0},
    "conservative DPO (ε = 0.2)": {"label_smoothing": 0.2},
    "IPO (β = 0.1)": {"loss_type": "ipo", "beta": 0.1},
    "RPO: + NLL on chosen (α = 1)": {"loss_type": "rpo"},
}
FAILURES = world.GRAMMAR_FAILURES + ("reused_word",)


def _beta_and_overrides(name: str) -> tuple[float, dict]:
    change = REMEDIES[name]
    return change.get("beta", DPOConfig().beta), {k: v for k, v in change.items() if k != "beta"}


def run_failure_modes(run) -> dict:
    """Both log-probs fall during DPO; where does the freed probability go? And which remedy helps,
    at the same KL as DPO?"""
    return run.study("failure_modes", lambda: _failure_modes(run))


def remedy(run, name: str) -> tuple[dict, list[dict], list[dict]]:
    """One row of the lesson's one-seed table: DPO trained with REMEDIES[name] on the run's own pairs
    (a `sweep` unit, shared with the other lessons), evaluated on the held-out films. Returns (its
    row, its training history, its samples)."""
    beta, overrides = _beta_and_overrides(name)
    final = sweep.trained(run, "dpo", beta, **overrides)
    history = read_json(final.with_name(final.stem + "_metrics.json"))["history"]
    ev = run.evaluate(run.load_policy(final))
    return {**summary_row(ev), **logps_change(history)}, history, ev["samples"]


def logps_change(history: list[dict]) -> dict:
    """How far the held-out pairs' log-probs moved from step 0 to the end of a DPO run, and its
    held-out accuracy at the end."""
    first, last = history[0], history[-1]
    return {"logps_chosen_change": last["eval/logps/chosen"] - first["eval/logps/chosen"],
            "logps_rejected_change": last["eval/logps/rejected"] - first["eval/logps/rejected"],
            "heldout_accuracy": last["eval/rewards/accuracies"]}


def remedy_points(run, name: str, seed: int) -> list[dict]:
    """REMEDIES[name] on seed `seed`, evaluated along training (`sweep.along_training`)."""
    beta, overrides = _beta_and_overrides(name)
    return sweep.along_training(run, "dpo", beta, seed, **overrides)


def final_rows(run, points: dict, seeds: list[int]) -> dict:
    """{remedy: its end-of-training row per seed}: the last point and the held-out log-prob changes."""
    rows = {}
    for name, per_seed in points.items():
        beta, overrides = _beta_and_overrides(name)
        rows[name] = [{**pts[-1], **logps_change(sweep.history(run, "dpo", beta, s, **overrides))}
                      for pts, s in zip(per_seed, seeds)]
    return rows


ROW_KEYS = ("gold_reward", "win_rate_vs_sft", "fluency", "kl_to_ref", "logps_chosen_change", "logps_rejected_change")


def summary(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each of ROW_KEYS, and the values themselves."""
    out = {}
    for k in ROW_KEYS:
        values = [r[k] for r in rows]
        m, s = C.mean_std(values)
        out[k] = {"mean": m, "std": s, "values": values}
    return out


def _failure_modes(run) -> None:
    seeds = sweep.seeds(run)
    sft = read_json(run.path("eval_sft.json"))
    points = {}
    for name in REMEDIES:
        points[name] = [remedy_points(run, name, s) for s in seeds]
        last = [p[-1] for p in points[name]]
        print(f"{name:30s} " + " | ".join(f"seed {s}: gold {p['gold_reward']:+.3f}, fluency {p['fluency']:.3f}, "
                                        f"KL {p['kl_to_ref']:.2f}" for s, p in zip(seeds, last)), flush=True)
    finals = final_rows(run, points, seeds)
    matched = {name: sweep.matched(points[name], points[BASE], sft) for name in REMEDIES if name != BASE}
    reasons = {"sft": failure_reasons(sft["samples"]),
               "dpo": [p[-1]["failure_reasons"] for p in points[BASE]]}
    result = {"seeds": seeds, "remedies": {k: summary(v) for k, v in finals.items()}, "matched": matched,
              "points": points, "failure_reasons": reasons, "n_samples": len(sft["samples"]),
              "sft": {k: sft[k] for k in ("gold_reward", "fluency", "entropy", "unique_frac")}}
    out = run.out / "failure_modes"
    write_json(out / "failure_modes.json", result)
    plots.remedies_figure(result, out / "failure_modes.png")
    print_matched(result)


def print_matched(result: dict) -> None:
    """Each remedy against DPO at the same KL, seed by seed and paired."""
    print(f"each remedy against DPO at the largest KL both reach, on their frontiers ({len(result['seeds'])} seeds):")
    for name, m in result["matched"].items():
        g, f = m["gold"], m["fluency"]
        print(f"  {name:30s} at KL {', '.join(f'{k:.2f}' for k in m['kl'])}: gold − DPO's {g['gap_mean']:+.3f} "
              f"[{g['low']:+.3f}, {g['high']:+.3f}] ({g['verdict']}), fluency − DPO's {f['gap_mean']:+.3f} "
              f"[{f['low']:+.3f}, {f['high']:+.3f}] ({f['verdict']})")
