"""DPO's own failure mode: both log-probs fall during training, and the freed probability goes to
text no pair labelled; a table of remedies (larger β, conservative DPO, IPO, RPO).
`python -m minidpo failure-modes`. (The microscope follows the displaced mass pair by pair.)"""
from __future__ import annotations

from collections import Counter

from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig
from ..evaluate import summary_row
from ..harness import plots
from . import sweep


REMEDIES = {  # name -> DPO settings changed from the default (β = 0.5, sigmoid loss)
    "DPO (default)": {},
    "larger β (2.0)": {"beta": 2.0},
    "conservative DPO (ε = 0.2)": {"label_smoothing": 0.2},
    "IPO (β = 0.1)": {"loss_type": "ipo", "beta": 0.1},
    "RPO: + NLL on chosen (α = 1)": {"loss_type": "rpo"},
}


def run_failure_modes(run) -> dict:
    """Both log-probs fall during DPO; where does the freed probability go? And which remedy helps?"""
    return run.study("failure_modes", lambda: _failure_modes(run))


def remedy(run, name: str) -> tuple[dict, list[dict], list[dict]]:
    """One row of the table: DPO trained with REMEDIES[name] (a `sweep` unit, shared with the other
    studies), evaluated on the held-out films. Returns (its row, its training history, its samples)."""
    change = REMEDIES[name]
    overrides = {k: v for k, v in change.items() if k != "beta"}
    final = sweep.trained(run, "dpo", change.get("beta", DPOConfig().beta), **overrides)
    history = read_json(final.with_name(final.stem + "_metrics.json"))["history"]
    ev = run.evaluate(run.load_policy(final))
    first, last = history[0], history[-1]
    row = {**summary_row(ev), "logps_chosen_change": last["eval/logps/chosen"] - first["eval/logps/chosen"],
           "logps_rejected_change": last["eval/logps/rejected"] - first["eval/logps/rejected"],
           "heldout_accuracy": last["eval/rewards/accuracies"]}
    return row, history, ev["samples"]


def failure_reasons(samples: list[dict]) -> Counter:
    """How many samples fail each of the grammar's checks (and reuse a sentiment word)."""
    return Counter(k for s in samples for k, v in world.reward_breakdown(s["prompt"], s["response"]).items()
                   if k in world.GRAMMAR_FAILURES + ("reused_word",) and v)


def _failure_modes(run) -> None:
    table, histories, samples = {}, {}, {}
    for name in REMEDIES:
        table[name], histories[name], samples[name] = remedy(run, name)
        r = table[name]
        print(f"{name:30s} gold {r['gold_reward']:+.3f} | win {r['win_rate_vs_sft']:.3f} | fluency {r['fluency']:.3f} | "
              f"KL {r['kl_to_ref']:.2f} | Δlogp chosen {r['logps_chosen_change']:+.2f}, rejected {r['logps_rejected_change']:+.2f}",
              flush=True)
    # where the freed mass went: what the default DPO policy now writes that the grammar rejects
    reasons = failure_reasons(samples["DPO (default)"])
    broken = [s for s in samples["DPO (default)"] if not world.is_fluent(s["prompt"], s["response"])][:8]
    sft_reasons = failure_reasons(read_json(run.path("eval_sft.json"))["samples"])
    result = {"remedies": table, "failure_reasons_dpo": dict(reasons), "failure_reasons_sft": dict(sft_reasons),
              "examples_not_fluent": broken, "n_samples": len(samples["DPO (default)"])}
    out = run.out / "failure_modes"
    write_json(out / "failure_modes.json", result)
    plots.failure_modes_figure(histories, out / "failure_modes.png")
    print(f"samples with each problem, SFT -> DPO (of {result['n_samples']}): " +
          ", ".join(f"{k} {sft_reasons.get(k, 0)} -> {reasons.get(k, 0)}" for k in
                    world.GRAMMAR_FAILURES + ("reused_word",)))
