"""PPO against REINFORCE on equal terms (lesson 18): the same SFT model, reward model, β and number
of sampled responses, on 3 seeds, read at the same KL. `python -m minidpo ppo-vs-reinforce`.

Each algorithm runs at the pipeline's own settings (`rlhf.RLHFConfig`, `ppo.PPOConfig`: PPO makes
epochs × minibatches updates per batch of samples, REINFORCE one) with β = BETA, for the Figure 2
study's sample budget (`frontier.RL_SAMPLES` responses), and is evaluated on the held-out films at
`frontier.CHECKPOINTS` fractions of training and at the end. The units are the frontier
machinery's (`frontier.collect`): they live in RUN/frontier/units/, and a seed is its own pairs and
reward model with its own RL randomness (seed = the run's seed: the pipeline's pairs and reward
model).

Per seed, each algorithm's frontier is the upper concave hull of its evaluated points and the SFT
point (`harness.compare.frontier`). At each of the frontier study's matched KLs, PPO − REINFORCE is
paired over the seeds where both frontiers reach it (`frontier.paired_table`: mean, 95 % interval,
verdict; a KL that some seed does not reach counts fewer seeds, and says so).
The cost side, per seed: the KL each reached at the end of its budget, the tokens through backward
passes (exact; PPO's count its value model's too) and the training seconds (wall time: noisy on a
loaded machine). And each seed's reward model: how well it ranks held-out pairs and follows the
gold reward, the proxy both algorithms climb.
"""
from __future__ import annotations

from . import frontier as F, units as U
from ..checkpoint import read_json, write_json
from ..harness import compare as C, plots

BETA = 0.05
METHODS = {m.name: m for m in (
    F.Method("reinforce_pipeline", "REINFORCE", "rlhf", {}, ({"beta": BETA},), ({"beta": BETA},)),
    F.Method("ppo_pipeline", "PPO", "ppo", {}, ({"beta": BETA},), ({"beta": BETA},)),
)}  # the pipeline's own settings (PPO: 4 epochs × 2 minibatches), apart from the frontier's grids
A, B = "ppo_pipeline", "reinforce_pipeline"  # the difference read: A − B


def folder(run):
    return run.out / "ppo_vs_reinforce"


def train(run, seeds: list[int]) -> list[dict]:
    """Train and evaluate both algorithms on each of `seeds` (finished units are reused); their points."""
    from ..preferences import PrefsConfig
    repeats = run.settings(PrefsConfig).train_repeats
    return F.collect(run, "ppo_vs_reinforce", [(m, "bt", repeats) for m in METHODS], METHODS, seed_list=seeds)


def unit_metrics(run, method: str, seed: int) -> dict:
    """The training metrics (history, seconds, tokens) of one unit."""
    from ..preferences import PrefsConfig
    data = U.Data("bt", run.settings(PrefsConfig).train_repeats, seed)
    name = U.unit_name(METHODS[method], METHODS[method].grid[0], data)
    return read_json(U.study_folder(run) / "units" / f"{name}_metrics.json")


def reward_model_quality(run, seed: int) -> dict:
    """How well seed `seed`'s reward model ranks held-out pairs (against the labels' own ceiling) and
    follows the gold reward on fresh samples: the proxy both algorithms climb in that seed."""
    from ..preferences import PrefsConfig
    data, _ = U.data_unit(run, "bt", run.settings(PrefsConfig).train_repeats, seed)
    m = read_json(data.reward_model.with_name("reward_model_metrics.json"))
    return {k: m[k] for k in ("val_accuracy", "oracle_accuracy", "gold_correlation_heldout")}


def summarise(run, points: list[dict], seeds: list[int]) -> dict:
    """Each seed's frontiers read at the frontier study's matched KLs (`frontier.matched_table`),
    PPO − REINFORCE paired by seed where both reach a KL (`frontier.paired_table`), and the costs."""
    sft = read_json(run.path("eval_sft.json"))
    metrics = {m: [unit_metrics(run, m, s) for s in seeds] for m in METHODS}
    finals = {m: [max(F.points_of(points, m, "bt", s), key=lambda p: p["step"]) for s in seeds] for m in METHODS}
    return {"methods": {m: x.label for m, x in METHODS.items()}, "seeds": seeds, "beta": BETA,
            "difference": [A, B], "kl_targets": list(F.KL_TARGETS),
            "sft": {k: sft[k] for k in ("gold_reward", "fluency")},
            "budgets": F.budgets(run, METHODS),
            "hulls": {m: [[list(v) for v in F.hull(F.points_of(points, m, "bt", s), sft)] for s in seeds] for m in METHODS},
            "matched": F.matched_table(points, "bt", sft, methods=list(METHODS)),
            "paired": F.paired_table(points, "bt", sft, base=A)[B],
            "final": {m: [{k: p[k] for k in ("kl_to_ref", "gold_reward", "fluency", "samples")} for p in finals[m]]
                      for m in METHODS},
            "reward_models": [reward_model_quality(run, s) for s in seeds],
            "seconds": {m: [x["seconds"] for x in metrics[m]] for m in METHODS},
            "tokens_backward": {m: [x["tokens_backward"] for x in metrics[m]] for m in METHODS},
            "points": [{k: p[k] for k in ("method", "seed", "step", "samples", "kl_to_ref", "gold_reward", "fluency")}
                       for p in points]}


def run_ppo_vs_reinforce(run) -> dict:
    result = run.study("ppo_vs_reinforce", lambda: _study(run))
    print_result(result)
    return result


def _study(run) -> None:
    seeds = F.seeds(run)
    points = train(run, seeds)
    result = summarise(run, points, seeds)
    write_json(folder(run) / "ppo_vs_reinforce.json", result)
    plots.ppo_vs_reinforce_figure(result, folder(run) / "ppo_vs_reinforce.png")


def print_result(result: dict) -> None:
    labels, (a, b) = result["methods"], result["difference"]
    n = len(result["seeds"])
    print(f"{labels[a]} and {labels[b]} at β {result['beta']}, {n} seeds, each unit "
          f"{result['budgets'][a]['samples_per_unit']} sampled responses; gold reward on each seed's frontier "
          "(mean ± std over the seeds that reach the KL; (n=) where not all do):")
    for kl in result["kl_targets"]:
        cells = []
        for m in (a, b):
            c = result["matched"][m].get(str(kl))
            cells.append(f"{labels[m]} " + (f"{c['gold_mean']:+.3f} ± {c['gold_std']:.3f}" + ("" if c["n"] == n else f" (n={c['n']})")
                                            if c else "-"))
        d = difference(result, kl)
        diff = f"{d.describe()}: {d.verdict}" if d else "reached by both in no seed"
        print(f"  KL {kl:<4g} | " + " | ".join(cells) + f" | {labels[a]} − {labels[b]} = {diff}")
    for m in (a, b):
        f = result["final"][m]
        print(f"  {labels[m]:9s} at the end, per seed: KL " + ", ".join(f"{x['kl_to_ref']:.2f}" for x in f)
              + " | tokens through backward passes " + ", ".join(f"{t:,}" for t in result["tokens_backward"][m])
              + " | seconds " + ", ".join(f"{s:.0f}" for s in result["seconds"][m]) + " (on a shared machine)")
    print("  each seed's reward model (the proxy both climb): held-out accuracy "
          + ", ".join(f"{q['val_accuracy']:.3f} of {q['oracle_accuracy']:.3f}" for q in result["reward_models"])
          + " (the labels' ceiling); correlation with gold " + ", ".join(f"{q['gold_correlation_heldout']:+.2f}"
                                                                         for q in result["reward_models"]))


def difference(result: dict, kl) -> C.Difference | None:
    """The study's PPO − REINFORCE at `kl`, paired by seed (None where both reach it in no seed)."""
    d = result["paired"].get(str(kl))
    return None if d is None else C.paired(d["gaps"], [0.0] * len(d["gaps"]))
