"""Why does DPO against RL come out here as it does, and what separates it from the paper's result?
Move from this project's setting to the paper's one factor at a time, and measure DPO against the
RL method at matched KL in each row:

  row  labels          pairs     RL algorithm   RL samples per unit   RL reward
  0    Bradley–Terry   default   REINFORCE      2,560 (the frontier's)   learned   (this project's setting)
  1    Bradley–Terry   default   REINFORCE      9,600 (the pipeline's)   learned
  2    deterministic   default   REINFORCE      9,600                    learned
  3    deterministic   4× more   REINFORCE      9,600                    learned

The algorithm (REINFORCE → PPO) and the reward (learned → gold, PPO-GT) are not rows of this chain:
at 9,600 samples on 4× the pairs they are six more PPO units, more than the study's budget on two
cores; the frontier itself compares PPO and PPO-GT with DPO at matched KL (2,560 samples each).

Each row changes one thing, for both methods where it has a counterpart:
- the RL budget (row 1): REINFORCE's samples per unit go from the frontier's 2,560 to the
  pipeline's own 9,600 (`rlhf.RLHFConfig`: 150 steps × 16 prompts × 4; the pipeline's PPO draws
  6,400). DPO samples nothing: its budget is its pairs and epochs, and it keeps the pipeline's own
  (2 epochs, as in every row but the data row).
- the data (row 3): 4× the pairs for both roads, at the same number of optimisation steps for every
  learner: DPO and the reward model make one pass over 4× the pairs in batches twice as large
  (`SAME_STEPS`: the steps of two passes over the default pairs), the RL method keeps its 9,600
  samples. (The old ablation gave DPO 4× the steps here while RL kept its budget.)
- the labels (row 2): one switch.

DPO in each row learns from that row's pairs; the RL method from a reward model fitted to them (or
the gold reward). Every unit is a unit of the long studies (`units.collect`), so the rows shared
with the frontier (row 0, and DPO in rows 1–2) are reused, not retrained. Each method runs ONE grid
point in every row (ONE_BETA; --fast: its fast grid): a frontier over more runs is higher, so a row
that gave a method more grid points than another would move the gap by itself. Rows 0 and 2
therefore read only those units of the frontier, and differ from the frontier's table, which takes
the hull over both β.

For each seed, each method's gold reward is read off its hull at the matched KL; the gap DPO − RL
is paired by seed (same pairs, same reward model), with its 95 % Student-t interval over the seeds
(`harness.compare.paired`). And each row's step: its gap minus the row above's, paired by seed,
with its interval — what the one factor that row changes did to the gap, at that place in the
chain. A one-at-a-time ablation is order-dependent: a factor's step is measured given the factors
changed before it (with interactions, another order gives other steps). Each row records the grid
points and samples per unit its points came from ("grids", "samples").
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import frontier as F
from . import units as U
from ..checkpoint import read_json, write_json
from ..harness import compare as C, headline, plots

FAST_MULTIPLIER = 1  # --fast (a smoke run of the table's code) keeps the pairs: its 4× rows reuse row 2's data
FRONTIER_BUDGET, PIPELINE_BUDGET = U.RL_SAMPLES, 9600  # REINFORCE's: the frontier's units, the pipeline's stage
SAME_STEPS = {"epochs": 1, "batch_size": 64}  # 4× pairs in the steps of 2 epochs of 32 over the default pairs


@dataclass(frozen=True)
class Row:
    change: str
    labels: str
    pairs: int                 # multiplier of the default pairs
    rl: str                    # the RL method (a key of frontier.METHODS)
    rl_samples: int            # its sample budget per unit
    same_steps: bool = False   # DPO and the reward model: SAME_STEPS (4× pairs at the steps of the default)


ROWS = (
    Row("this project: Bradley–Terry labels, REINFORCE, the frontier's 2,560 samples", "bt", 1, "reinforce", FRONTIER_BUDGET),
    Row("RL budget → 9,600 samples (the pipeline's REINFORCE)", "bt", 1, "reinforce", PIPELINE_BUDGET),
    Row("labels → deterministic", "deterministic", 1, "reinforce", PIPELINE_BUDGET),
    Row("data → 4× pairs, the same steps", "deterministic", 4, "reinforce", PIPELINE_BUDGET, same_steps=True),
)
ONE_BETA = {"dpo": {"beta": 0.5}, "reinforce": {"beta": 0.02}, "ppo": {"beta": 0.02}, "ppo_gt": {"beta": 0.02}}
# one β per method in every row: each run traces its frontier along training, so one β serves, the
# rows stay comparable (the same grid per method), and the study stays in budget


def run_ablation(run) -> dict:
    return run.study("ablation", lambda: _ablation(run))


def row_methods(row: Row, fast: bool) -> dict:
    """{"dpo": DPO, "rl": the row's RL method}: ONE_BETA's grid point, the row's budget and steps."""
    same = row.same_steps and not fast  # --fast keeps the pairs (FAST_MULTIPLIER): nothing to hold
    dpo = F.METHODS["dpo"]
    dpo = replace(dpo, grid=(ONE_BETA["dpo"],),
                  **({"settings": {**dpo.settings, **SAME_STEPS}, "tag": "_same_steps"} if same else {}))
    rl = replace(F.METHODS[row.rl], grid=(ONE_BETA[row.rl],), samples=row.rl_samples)
    return {"dpo": dpo, "rl": rl}


def row_cells(run, row: Row, base: int) -> list[tuple]:
    """The units of one row for `units.collect`: (method key, labels, repeats, reward model settings)."""
    repeats = base * (FAST_MULTIPLIER if run.fast else row.pairs)
    rm = tuple(sorted(SAME_STEPS.items())) if row.same_steps and not run.fast else ()
    return [(key, row.labels, repeats, rm) for key in ("dpo", "rl")]


def _ablation(run) -> None:
    from ..preferences import PrefsConfig
    base = run.settings(PrefsConfig).train_repeats
    sft = read_json(run.path("eval_sft.json"))
    rows, gaps_by_row = [], []
    for i, row in enumerate(ROWS):
        methods = row_methods(row, run.fast)
        cells = row_cells(run, row, base)
        points = U.collect(run, f"ablation row {i}", cells, methods)
        for p, key in ((p, "dpo" if p["method"] == "dpo" else "rl") for p in points):
            p["method"] = key  # within a row: "dpo" and "rl"
        repeats = cells[0][2]
        table = F.matched_table(points, row.labels, sft, repeats=repeats, methods=["dpo", "rl"])
        by_kl, gaps_at = {}, {}
        for kl in F.KL_TARGETS:
            per_seed = {m: [r[0] if r else None for r in F.readings(points, m, row.labels, kl, sft, repeats, U.seeds(run))]
                        for m in ("dpo", "rl")}
            gaps = [d - r if d is not None and r is not None else None for d, r in zip(per_seed["dpo"], per_seed["rl"])]
            if any(g is not None for g in gaps):
                gaps_at[str(kl)] = gaps
                by_kl[str(kl)] = {"dpo": table["dpo"].get(str(kl)), "rl": table["rl"].get(str(kl)), "per_seed": per_seed,
                                  **F.gap_summary([g for g in gaps if g is not None])}
        gaps_by_row.append(gaps_at)
        rows.append({"change": row.change, "labels": row.labels, "pairs_multiplier": repeats // base,
                     "rl_method": row.rl, "rl_label": F.METHODS[row.rl].label, "rl_samples": U.rl_samples(run, methods["rl"]),
                     "same_steps": bool(row.same_steps and not run.fast), "by_kl": by_kl,
                     "budgets": U.budgets(run, methods),
                     "grids": {m: unique([p["grid"] for p in points if p["method"] == m]) for m in ("dpo", "rl")},
                     "samples": {m: unique([p["of_samples"] for p in points if p["method"] == m]) for m in ("dpo", "rl")},
                     "steps": {m: unique([p["of_steps"] for p in points if p["method"] == m]) for m in ("dpo", "rl")}})
    for i in range(1, len(rows)):  # each row's step: its gap minus the row above's, paired by seed
        rows[i]["step"] = {kl: step_summary(gaps_by_row[i][kl], gaps_by_row[i - 1][kl])
                           for kl in gaps_by_row[i] if kl in gaps_by_row[i - 1]}
    result = {"rows": rows, "kl_targets": list(F.KL_TARGETS), "seeds": U.seeds(run), "one_beta": ONE_BETA,
              "torch_threads": F.torch_threads(),
              "primary_kl": primary_kl(rows), "sft_gold": sft["gold_reward"]}
    write_json(U.study_folder(run) / "ablation.json", result)
    plots.ablation_figure(result, U.study_folder(run) / "ablation.png")
    print_ablation(result)


def step_summary(now: list, before: list) -> dict | None:
    """A row's gap minus the row above's, paired by seed (the seeds both rows reach)."""
    both = [(a, b) for a, b in zip(now, before) if a is not None and b is not None]
    if not both:
        return None
    return C.paired([a for a, _ in both], [b for _, b in both]).as_dict()


def unique(values: list) -> list:
    """The distinct values, in order of first appearance (dicts compared by value)."""
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def primary_kl(rows: list[dict]) -> float | None:
    """The largest matched KL at which every row has a gap from every seed (else from most seeds)."""
    for need in (lambda n: n == max(r["by_kl"][k]["n"] for r in rows for k in r["by_kl"]), lambda n: n >= 2):
        ok = [kl for kl in F.KL_TARGETS if all(str(kl) in r["by_kl"] and need(r["by_kl"][str(kl)]["n"]) for r in rows)]
        if ok:
            return max(ok)
    return None


def print_ablation(result: dict) -> None:
    kl = result["primary_kl"]
    for i, r in enumerate(result["rows"]):
        spend = "; ".join(f"{b['label']} {headline.describe_budget(b)[1]}" for b in r.get("budgets", {}).values())
        print(f"  row {i}: {spend}")
    if kl is None:
        print("ablation: no matched KL is reached by both methods in every row (run without --fast)")
        return
    n_seeds = len(result["seeds"])
    seeds = lambda n: "" if n == n_seeds else f" (n={n})"
    print(f"DPO vs the row's RL method at KL = {kl:g} nats: gold reward, mean ± std over {n_seeds} seeds "
          "((n=) where not every seed reaches it); DPO − RL and each row's step (its gap minus the row above's) "
          "paired by seed, with the 95 % interval of the mean:")
    for i, r in enumerate(result["rows"]):
        c = r["by_kl"][str(kl)]
        step = r.get("step", {}).get(str(kl))
        print(f"  {i} {r['change']:68s} DPO {c['dpo']['gold_mean']:+.2f} ± {c['dpo']['gold_std']:.2f}{seeds(c['dpo']['n'])} | "
              f"{r['rl_label']} {c['rl']['gold_mean']:+.2f} ± {c['rl']['gold_std']:.2f}{seeds(c['rl']['n'])} | "
              f"DPO − RL {describe(c)}"
              + (f" | step {describe(step)}" if step else ""))


def describe(summary: dict) -> str:
    """A paired summary (`gap_summary`, `compare.Difference.as_dict`) in words, with its verdict."""
    d = C.Difference(summary["gaps"], summary["gap_mean"], summary["gap_std"], summary["low"], summary["high"])
    return d.describe() if d.verdict == "one seed" else f"{d.describe()}: {d.verdict}"
