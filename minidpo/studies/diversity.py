"""Does perfect maximisation kill diversity? Gold reward, per-token entropy and the fraction of
unique responses of DPO and RLHF (REINFORCE) policies against β. `python -m minidpo diversity`.

Every method × β is trained on every seed of `sweep.seeds` and evaluated along training
(`sweep.along_training`). What the study gives:
- `table`: each method and β at the end of training, mean and spread over the seeds (gold, entropy,
  unique responses, KL; for RL also the reward model's score of its training samples, the proxy);
- `trends`: within a method, its smallest β against its largest, paired by seed (the same pairs and
  reward model): does the entropy, or the variety of the responses, fall as β shrinks?
- `matched`: DPO against REINFORCE at the same KL: each at its default β, its entropy and unique
  fraction read where its training passes the largest KL both runs reach in that seed
  (`sweep.along`), paired by seed. The ends of two sweeps sit at different KL, so they cannot say
  which method pays more entropy for the distance it travels.
"""
from __future__ import annotations

from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig
from ..harness import compare as C, plots
from ..rlhf import RLHFConfig
from . import sweep

DIVERSITY_BETAS = {"dpo": (0.1, 0.5, 2.0), "rlhf": (0.0, 0.05, 0.2)}
FAST_DIVERSITY_BETAS = {"dpo": (0.1, 2.0), "rlhf": (0.0, 0.2)}
MEASURES = ("gold_reward", "entropy", "unique_frac", "kl_to_ref", "fluency")
RL_MEASURES = ("train_proxy", "train_gold")


def run_diversity(run) -> dict:
    """For several β, both methods, several seeds: gold reward, per-token entropy, unique responses."""
    return run.study("diversity", lambda: _diversity(run))


def _diversity(run) -> None:
    betas = FAST_DIVERSITY_BETAS if run.fast else DIVERSITY_BETAS
    seeds, sft = sweep.seeds(run), read_json(run.path("eval_sft.json"))
    points = {m: {str(b): [sweep.along_training(run, m, b, s) for s in seeds] for b in bs} for m, bs in betas.items()}
    defaults = {"dpo": DPOConfig().beta, "rlhf": RLHFConfig().beta}
    for m, b in defaults.items():  # the default β of each method is read at matched KL
        if str(b) not in points[m]:
            points[m][str(b)] = [sweep.along_training(run, m, b, s) for s in seeds]
    result = {"seeds": seeds, "betas": {m: list(bs) for m, bs in betas.items()}, "defaults": defaults,
              "sft": {k: sft[k] for k in ("gold_reward", "entropy", "unique_frac", "fluency", "distinct_2")},
              "table": {m: {b: summarise([p[-1] for p in per_seed]) for b, per_seed in by_beta.items()}
                        for m, by_beta in points.items()},
              "trends": {m: trend(points[m], min(bs), max(bs)) for m, bs in betas.items()},
              "matched": matched_entropy(points["dpo"][str(defaults["dpo"])], points["rlhf"][str(defaults["rlhf"])], sft),
              "points": points}
    out = run.out / "diversity"
    write_json(out / "diversity.json", result)
    plots.diversity_figure(result, out / "diversity.png")
    print_table(result)


def summarise(finals: list[dict]) -> dict:
    """{measure: {mean, std, values}} over the seeds' end-of-training points."""
    out = {}
    for k in MEASURES + RL_MEASURES:
        if k in finals[0]:
            values = [p[k] for p in finals]
            m, s = C.mean_std(values)
            out[k] = {"mean": m, "std": s, "values": values}
    return out


def trend(by_beta: dict, small: float, large: float) -> dict:
    """Smallest β minus largest β, paired by seed, for each measure at the end of training."""
    a, b = by_beta[str(small)], by_beta[str(large)]
    return {"small_beta": small, "large_beta": large,
            **{k: C.paired([p[-1][k] for p in a], [p[-1][k] for p in b]).as_dict() for k in MEASURES}}


def matched_entropy(dpo: list[list[dict]], rl: list[list[dict]], sft: dict) -> dict:
    """DPO minus REINFORCE in entropy and unique fraction, each read along its training at the
    largest KL both reach in that seed (`sweep.along`), paired by seed."""
    kls = [min(max(p["kl_to_ref"] for p in a), max(p["kl_to_ref"] for p in b)) for a, b in zip(dpo, rl)]
    out = {"kl": kls}
    for k in ("entropy", "unique_frac", "gold_reward"):
        da = [sweep.along(a, sft, kl, k) for a, kl in zip(dpo, kls)]
        ra = [sweep.along(b, sft, kl, k) for b, kl in zip(rl, kls)]
        out[k] = {"dpo": da, "rlhf": ra, **C.paired(da, ra).as_dict()}
    return out


def print_table(result: dict) -> None:
    n = len(result["seeds"])
    print(f"end of training, mean ± std over {n} seeds:")
    for m, by_beta in result["table"].items():
        for b, row in sorted(by_beta.items(), key=lambda kv: float(kv[0])):
            cells = ", ".join(f"{k} {row[k]['mean']:+.3f} ± {row[k]['std']:.3f}" for k in MEASURES + RL_MEASURES if k in row)
            print(f"  {m.upper():4s} β = {b}: {cells}")
    mt = result["matched"]
    print(f"DPO − REINFORCE along training at KL {', '.join(f'{k:.2f}' for k in mt['kl'])}: " + "; ".join(
        f"{k} {mt[k]['gap_mean']:+.3f} [{mt[k]['low']:+.3f}, {mt[k]['high']:+.3f}] ({mt[k]['verdict']})"
        for k in ("entropy", "unique_frac")))


def diversity_points(run, betas: dict) -> list[dict]:
    """The lesson's one-seed sweep: one point per method and β of `betas` ({"dpo": (...), "rlhf":
    (...)}): the final policy trained at that β on the run's own pairs (`sweep.trained`, shared
    with the other lessons), evaluated on the held-out films."""
    points = []
    for method, method_betas in betas.items():
        for beta in method_betas:
            s = sweep.evaluate(run, sweep.trained(run, method, beta))
            points.append({"method": method, "beta": beta, **s})
            print(f"{method} β={beta}: gold {s['gold_reward']:+.3f}, entropy {s['entropy']:.3f} nats/token, "
                  f"unique {s['unique_frac']:.3f}, KL {s['kl_to_ref']:.2f}", flush=True)
    return points
