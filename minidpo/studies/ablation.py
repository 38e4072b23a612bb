"""Why does DPO against RL come out here as it does, and what separates it from the paper's result?
Move from this project's setting to the paper's one factor at a time, and measure DPO against the
RL method at matched KL in each row:

  row  labels          pairs      RL algorithm          RL reward
  0    Bradley–Terry   default    REINFORCE (RLOO)      learned           (this project's setting)
  1    deterministic   default    REINFORCE (RLOO)      learned
  2    deterministic   4× more    REINFORCE (RLOO)      learned
  3    deterministic   4× more    PPO                   learned
  4    deterministic   4× more    PPO                   gold (PPO-GT)     (the paper's comparison)

DPO in each row learns from that row's pairs; the RL method from a reward model fitted to them (or
the gold reward). Every unit is the frontier study's (`frontier.collect`), so rows shared with the
frontier are reused, not retrained, and every RL unit spends the frontier's sample budget
(`frontier.RL_SAMPLES`). Each method runs on ONE grid point in every row (ONE_BETA; --fast: its
fast grid, one point too): a frontier over more runs is higher, so a row that gave a method more
grid points than another row would move the gap by itself. Rows 0–1 therefore read only those
units of the frontier, and may differ from the frontier's table, which takes the hull over both β.
For each seed, each method's gold reward is read off its frontier at the matched KL; the gap
DPO − RL is paired by seed (same pairs, same reward model). A gap counts as larger than the spread
when its 95 % interval (Student t over the seeds, `harness.compare.paired`) excludes 0. Each row records the grid and the samples per
unit that its points actually came from ("grids", "samples").
"""
from __future__ import annotations

from . import frontier as F
from ..harness import headline
from ..checkpoint import read_json, write_json

FAST_MULTIPLIER = 1  # --fast (a smoke run of the table's code) keeps the pairs: its 4× rows reuse row 1's data
ROWS = (  # (what changed, labels, pairs multiplier, RL method)
    ("this project: Bradley–Terry labels, REINFORCE on a learned reward", "bt", 1, "reinforce"),
    ("labels → deterministic", "deterministic", 1, "reinforce"),
    ("data → 4× more pairs", "deterministic", 4, "reinforce"),
    ("algorithm → PPO", "deterministic", 4, "ppo"),
    ("reward → gold (PPO-GT)", "deterministic", 4, "ppo_gt"),
)


def run_ablation(run) -> dict:
    return run.study("ablation", lambda: _ablation(run))


ONE_BETA = {"dpo": {"beta": 0.5}, "reinforce": {"beta": 0.02}, "ppo": {"beta": 0.02}, "ppo_gt": {"beta": 0.02}}
# one β per method in every row: each run traces its frontier along training, so one β serves, the
# rows stay comparable (the same grid per method), and the 4× rows stay in budget


def _ablation(run) -> None:
    from dataclasses import replace
    from ..preferences import PrefsConfig
    base = run.settings(PrefsConfig).train_repeats
    methods = {m: replace(F.METHODS[m], grid=(b,)) for m, b in ONE_BETA.items()}  # --fast: fast_grid
    times_of = lambda times: FAST_MULTIPLIER if run.fast else times
    cells = [(m, labels, base * times_of(times)) for _, labels, times, rl in ROWS for m in ("dpo", rl)]
    points = F.collect(run, "ablation", list(dict.fromkeys(cells)), methods)
    sft = read_json(run.path("eval_sft.json"))
    rows = []
    for change, labels, times, rl in ROWS:
        repeats = base * times_of(times)
        table = F.matched_table(points, labels, sft, repeats=repeats, methods=["dpo", rl])
        by_kl = {}
        for kl in F.KL_TARGETS:
            gaps = F.paired_gaps(points, "dpo", rl, labels, kl, sft, repeats)
            if gaps:
                by_kl[str(kl)] = {"dpo": table["dpo"].get(str(kl)), "rl": table[rl].get(str(kl)), **F.gap_summary(gaps)}
        used = {m: [p for s in F.seeds(run) for p in F.points_of(points, m, labels, s, repeats)] for m in ("dpo", rl)}
        rows.append({"change": change, "labels": labels, "pairs_multiplier": times_of(times), "rl_method": rl,
                     "rl_label": F.METHODS[rl].label, "by_kl": by_kl,
                     "grids": {m: unique([p["grid"] for p in ps]) for m, ps in used.items()},
                     "samples": {m: unique([p["of_samples"] for p in ps]) for m, ps in used.items()}})
    result = {"rows": rows, "kl_targets": list(F.KL_TARGETS), "seeds": F.seeds(run),
              "budgets": F.budgets(run, methods), "primary_kl": primary_kl(rows), "sft_gold": sft["gold_reward"]}
    write_json(F.study_folder(run) / "ablation.json", result)
    print_ablation(result)


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
    for b in result.get("budgets", {}).values():
        grid, spend = headline.describe_budget(b)
        print(f"  every row: {b['label']:9s} {grid:12s} {spend}")
    if kl is None:
        print("ablation: no matched KL is reached by both methods in every row (run without --fast)")
        return
    n_seeds = len(result["seeds"])
    seeds = lambda n: "" if n == n_seeds else f" (n={n})"
    print(f"DPO vs the RL method at KL = {kl:g} nats (gold reward, mean ± std over seeds; (n=) where not every "
          "seed reaches it; the gap paired by seed):")
    for r in result["rows"]:
        c = r["by_kl"][str(kl)]
        verdict = "beyond the spread" if c["beyond_spread"] else "within the spread"
        print(f"  {r['change']:60s} DPO {c['dpo']['gold_mean']:+.2f} ± {c['dpo']['gold_std']:.2f}{seeds(c['dpo']['n'])} | "
              f"{r['rl_label']} {c['rl']['gold_mean']:+.2f} ± {c['rl']['gold_std']:.2f}{seeds(c['rl']['n'])} | "
              f"DPO − RL {c['gap_mean']:+.2f} ± {c['gap_std']:.2f}{seeds(c['n'])} ({verdict})")
