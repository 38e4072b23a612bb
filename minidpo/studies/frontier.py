"""The DPO paper's Figure 2 (left), in this world: gold reward against KL to the reference, for
every method, over its own grid, along training, on several seeds, under two labelling conditions.

Methods (the paper's, plus the RL algorithms learners meet today):
  DPO, Preferred-FT (SFT on the chosen responses), Unlikelihood    learn from the preference pairs
  REINFORCE (leave-one-out; rlhf.py), PPO (ppo.py), GRPO (grpo.py)  RL on a reward model fitted to them
  PPO-GT                                                            PPO on the gold reward itself

Conditions: the labels of the pairs, `bt` (noisy Bradley–Terry on the gold reward: this project's
default) or `deterministic` (the better response by gold always wins: the paper's IMDb setting).
Seeds: each seed draws its own preference pairs and labels from the shared SFT model, fits its own
reward model, and trains every method with its own randomness; the held-out films, the SFT model and
the evaluation samples' seed are the same for all. (Seed = the run's seed is the pipeline's own
pairs and reward model.)

Each method × grid point × condition × seed is one unit (`studies.units`): trained from the SFT
model, evaluated at points along training and at the end; a finished unit is reused, so an
interrupted study resumes and the ablation and the loss bench share the units they have in common.

Budgets: the cost of RL is its samples, and a frontier traced along training reaches the further in
KL the more a run samples. So every RL unit here (REINFORCE, PPO, PPO-GT, GRPO) draws the same
RL_SAMPLES = 2,560 responses (--fast: 256), whatever its batch shape; the methods that learn from
pairs spend theirs in epochs over the pairs (DPO 2, the pipeline's; Preferred-FT and Unlikelihood
1). The pipeline's own RL stages draw more (REINFORCE 9,600, PPO 6,400): they are marked on the
figure as single runs ("pipeline"), and the ablation (`studies.ablation`) measures what REINFORCE's
budget does to the comparison. Each method's grid and budget are in `frontier.json` ("budgets").

Summaries: a method's frontier in one seed is the upper concave hull of its points and the SFT point
(KL 0), non-decreasing (`harness.compare.frontier`: a policy that answers with one run's policy or
another's, chosen once per response, earns the mix of their gold and pays at most the mix of their
KL, so every point of the chord between two runs is reachable, and adding a run can raise the
frontier, never lower it). `frontier.json` gives, per condition and method, the gold reward (and
fluency) of that hull at matched KL ∈ {0.5, 1, 2, 3} nats, mean and standard deviation over the
seeds that reach that KL ("matched"; a KL beyond a seed's last point is not extrapolated, and n
says how many seeds count); and DPO against every other method paired by seed: the difference of
the two hulls in each seed where both reach the KL (same pairs, same reward model), its mean, spread
and 95 % Student-t interval, and the verdict ("paired"). Compare methods with "paired": two
"matched" means may come from different seeds.
"""
from __future__ import annotations

from . import units as U
from ..harness import compare as C, headline, plots
from ..checkpoint import read_json, write_json
from ..harness.stages import ensure
from .units import (CHECKPOINTS, FAST_SEEDS, N_SEEDS, RL_SAMPLES, Data, Method, budgets, in_run,  # noqa: F401
                    seeds, study_folder, unit_config, unit_name)

KL_TARGETS = (0.5, 1.0, 2.0, 3.0)
LABELS = ("bt", "deterministic")
FAST_RL_SAMPLES = RL_SAMPLES // U.FAST_DIVISOR  # --fast: 8 steps of 32

METHODS = {m.name: m for m in (
    Method("dpo", "DPO", "dpo", {}, ({"beta": 0.1}, {"beta": 0.5}), ({"beta": 0.5},)),
    Method("preferred_ft", "Preferred-FT", "dpo", {"loss_type": "sft", "epochs": 1}, ({},), ()),
    Method("unlikelihood", "Unlikelihood", "dpo", {"loss_type": "unlikelihood", "epochs": 1,
                                                    "loss_args": {"alpha": 0.1}}, ({},), ()),
    Method("reinforce", "REINFORCE", "rlhf", {}, ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},)),
    Method("ppo", "PPO", "ppo", {"epochs": 2}, ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},)),
    Method("ppo_gt", "PPO-GT", "ppo", {"epochs": 2, "reward": "gold"},
           ({"beta": 0.02}, {"beta": 0.1}), ({"beta": 0.05},), uses_labels=False),
    Method("grpo", "GRPO", "grpo", {}, ({"beta": 0.1}, {"beta": 0.4}), ({"beta": 0.1},)),
)}  # every RL unit samples RL_SAMPLES responses, the same for all of them (units.unit_config)
PIPELINE = {"rlhf": "REINFORCE", "ppo": "PPO", "dpo": "DPO"}  # the pipeline's own runs, marked in the figure


def collect(run, study: str, cells: list[tuple], methods: dict | None = None,
            seed_list: list[int] | None = None) -> list[dict]:
    """`units.collect` over `methods`, by default this study's METHODS."""
    return U.collect(run, study, cells, methods or METHODS, seed_list)


def run_frontier(run) -> dict:
    """The study's stage: reused as a whole while every unit is; see the module docstring."""
    return run.study("frontier", lambda: _frontier(run))


def _frontier(run) -> None:
    from ..preferences import PrefsConfig
    repeats = run.settings(PrefsConfig).train_repeats
    methods = in_run(run, METHODS)
    if len(methods) < len(METHODS):
        print("frontier --fast leaves out " + ", ".join(m.label for k, m in METHODS.items() if k not in methods)
              + " (DPO units with another loss; the full study has them)")
    points = collect(run, "frontier", [(m, labels, repeats) for labels in LABELS for m in methods])
    sft = read_json(run.path("eval_sft.json"))
    result = {"methods": {m.name: m.label for m in methods.values()}, "labels": list(LABELS), "seeds": seeds(run),
              "kl_targets": list(KL_TARGETS), "sft": {k: sft[k] for k in ("gold_reward", "fluency")},
              "budgets": budgets(run, methods), "pipeline": pipeline_points(run), "torch_threads": torch_threads(),
              "matched": {labels: matched_table(points, labels, sft) for labels in LABELS},
              "paired": {labels: paired_table(points, labels, sft) for labels in LABELS},
              "curves": {labels: seed_curves(points, labels, sft) for labels in LABELS},
              "points": points}
    out = study_folder(run)
    write_json(out / "frontier.json", result)
    plots.frontier_figure(result, out / "frontier.png")
    print_matched(result)


def torch_threads() -> int:
    """The threads torch ran on: a reduction split over another number rounds differently, so a study
    run on another thread count gives numbers that differ in their last digits (and, through the
    samples drawn, a little more)."""
    import torch
    return torch.get_num_threads()


def pipeline_points(run) -> dict:
    """{stage: one point} of the pipeline's own single runs (REINFORCE, PPO, DPO of `run --all`, made
    here if missing), for the figure: seed = the run's, Bradley–Terry labels, each trainer's default
    settings and budget (an RL stage's samples: steps × prompts per step × k)."""
    ensure(run, *(f"eval_{name}" for name in PIPELINE))
    out = {}
    for name, label in PIPELINE.items():
        ev, cfg = read_json(run.path(f"eval_{name}.json")), read_json(run.path(f"{name}_metrics.json"))["config"]
        spend = ({"samples": cfg["steps"] * cfg["prompts_per_step"] * cfg["k"]} if "k" in cfg
                 else {"epochs": cfg["epochs"], "samples": 0})
        out[name] = {"label": label, "beta": cfg["beta"], "seed": run.seed, "labels": "bt", **spend,
                     **{k: ev[k] for k in ("kl_to_ref", "gold_reward", "fluency")}}
    return out


def points_of(points: list[dict], method: str, labels: str, seed: int, repeats: int | None = None) -> list[dict]:
    """One method's points in one condition and seed (PPO-GT's gold-reward points count in every
    condition: its training never sees a label)."""
    return [p for p in points if p["method"] == method and p["seed"] == seed and (p["labels"] == "gold" or (
            p["labels"] == labels and (repeats is None or p["repeats"] == repeats)))]


def hull(points: list[dict], sft: dict) -> list[tuple[float, float, float]]:
    """A method's frontier in one seed: the upper concave hull of its points and the SFT point (KL 0),
    non-decreasing, as (kl, gold, fluency) vertices (`harness.compare.frontier`: why a hull)."""
    return C.frontier(points, (0.0, sft["gold_reward"], sft["fluency"]))


at_kl = C.at_kl
mean_std = C.mean_std


def readings(points: list[dict], method: str, labels: str, kl: float, sft: dict, repeats: int | None = None,
             seed_list: list[int] | None = None) -> list:
    """`method`'s hull read at `kl` in each seed (of `seed_list`, default every seed of `points`):
    (gold, fluency), or None where that seed's hull does not reach `kl`."""
    return [at_kl(hull(points_of(points, method, labels, s, repeats), sft), kl)
            for s in (seed_list if seed_list is not None else sorted({p["seed"] for p in points}))]


def matched_table(points: list[dict], labels: str, sft: dict, repeats: int | None = None,
                  methods=None) -> dict:
    """{method: {kl: {gold_mean, gold_std, fluency_mean, n, values}}}: each seed's hull read at
    each matched KL, then mean and spread over the seeds that reach that KL."""
    table = {}
    for method in methods or sorted({p["method"] for p in points}):
        row = {}
        for kl in KL_TARGETS:
            found = [f for f in readings(points, method, labels, kl, sft, repeats) if f is not None]
            if found:
                (g, gs), (f, _) = mean_std([x[0] for x in found]), mean_std([x[1] for x in found])
                row[str(kl)] = {"gold_mean": g, "gold_std": gs, "fluency_mean": f, "n": len(found),
                                "values": [x[0] for x in found]}
        table[method] = row
    return table


def paired_gaps(points: list[dict], a: str, b: str, labels: str, kl: float, sft: dict,
                repeats: int | None = None) -> list[float]:
    """Gold reward of method `a` minus method `b` at `kl`, one per seed where both hulls reach
    it: the same seed means the same pairs and reward model, so seed-to-seed noise cancels."""
    return [x[0] - y[0] for x, y in zip(readings(points, a, labels, kl, sft, repeats),
                                        readings(points, b, labels, kl, sft, repeats)) if x and y]


def gap_summary(gaps: list[float]) -> dict:
    """Mean and spread of paired differences, their 95 % interval and verdict (`compare.paired`);
    beyond the spread when the interval excludes 0."""
    return C.paired(gaps, [0.0] * len(gaps)).as_dict()


def paired_table(points: list[dict], labels: str, sft: dict, base: str = "dpo", repeats: int | None = None) -> dict:
    """{method: {kl: gap_summary of base − method}} for every other method, paired by seed."""
    table = {}
    for method in sorted({p["method"] for p in points} - {base}):
        row = {}
        for kl in KL_TARGETS:
            gaps = paired_gaps(points, base, method, labels, kl, sft, repeats)
            if gaps:
                row[str(kl)] = gap_summary(gaps)
        table[method] = row
    return table


def seed_curves(points: list[dict], labels: str, sft: dict, repeats: int | None = None, step: float = 0.1,
                max_kl: float = 10.0) -> dict:
    """{method: {"kl", "mean", "std"}}: each seed's hull on a KL grid, mean and spread over the
    seeds, where at least two seeds reach that KL (for the figure's band)."""
    out = {}
    for method in sorted({p["method"] for p in points}):
        envs = [hull(points_of(points, method, labels, s, repeats), sft) for s in sorted({p["seed"] for p in points})]
        curve = {"kl": [], "mean": [], "std": []}
        for i in range(int(max_kl / step) + 1):
            found = [g for g in (at_kl(e, i * step) for e in envs) if g is not None]
            if len(found) >= min(2, len(envs)):
                m, sd = mean_std([g for g, _ in found])
                curve["kl"].append(round(i * step, 6))
                curve["mean"].append(m)
                curve["std"].append(sd)
        out[method] = curve
    return out


def print_matched(result: dict) -> None:
    n_seeds = len(result.get("seeds", [])) or None
    for b in result.get("budgets", {}).values():
        grid, spend = headline.describe_budget(b)
        print(f"  {b['label']:14s}{grid:18s} {spend}")
    for labels, table in result["matched"].items():
        print(f"gold reward on each method's hull at matched KL, labels {labels} (mean ± std over the seeds "
              "reaching that KL; (n=) where not all do):")
        print("  method        " + "".join(f"{f'| KL {kl:g}':21s}" for kl in result["kl_targets"]))
        for method, row in table.items():
            print(f"  {result['methods'][method]:14s}" + "".join(
                f"| {headline.cell(row.get(str(kl)), n_seeds):19s}" for kl in result["kl_targets"]))
        paired = result.get("paired", {}).get(labels)
        if paired:
            print("  DPO − method, paired by seed: mean (95 % interval over the seeds); * = the interval excludes 0:")
            for method, row in paired.items():
                cells = [headline.diff_cell(row.get(str(kl)), n_seeds) for kl in result["kl_targets"]]
                print(f"  {result['methods'][method]:14s}" + "".join(
                    f"| {c.replace('**', '') + ('*' if c.startswith('**') else ''):27s}" for c in cells))
