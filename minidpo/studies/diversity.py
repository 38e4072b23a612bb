"""Does perfect maximisation kill diversity? Gold reward, per-token entropy and the fraction of
unique responses of DPO and RLHF policies against β. `python -m minidpo diversity`."""
from __future__ import annotations

from ..checkpoint import read_json, write_json
from ..harness import plots
from . import sweep


DIVERSITY_BETAS = {"dpo": (0.1, 0.5, 2.0), "rlhf": (0.0, 0.05, 0.2)}
FAST_DIVERSITY_BETAS = {"dpo": (0.1, 2.0), "rlhf": (0.0, 0.2)}


def run_diversity(run) -> list[dict]:
    """For several β, both methods: gold reward, per-token entropy, fraction of unique responses."""
    return run.study("diversity", lambda: _diversity(run))["points"]


def _diversity(run) -> None:
    points = diversity_points(run, FAST_DIVERSITY_BETAS if run.fast else DIVERSITY_BETAS)
    sft = read_json(run.path("eval_sft.json"))
    out = run.out / "diversity"
    write_json(out / "diversity.json", {"points": points, "sft": {k: sft[k] for k in ("gold_reward", "unique_frac",
                                                                                      "distinct_2")}})
    plots.diversity_figure(points, out / "diversity.png")


def diversity_points(run, betas: dict) -> list[dict]:
    """One point per method and β of `betas` ({"dpo": (...), "rlhf": (...)}): the policy trained at
    that β (`sweep.trained`, shared with the other studies) evaluated on the held-out films."""
    points = []
    for method, method_betas in betas.items():
        for beta in method_betas:
            s = sweep.evaluate(run, sweep.trained(run, method, beta))
            points.append({"method": method, "beta": beta, **s})
            print(f"{method} β={beta}: gold {s['gold_reward']:+.3f}, entropy {s['entropy']:.3f} nats/token, "
                  f"unique {s['unique_frac']:.3f}, distinct-2 {s['distinct_2']:.3f}, KL {s['kl_to_ref']:.2f}", flush=True)
    return points
