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
frontier are reused, not retrained. For each seed, each method's gold reward is read off its
frontier at the matched KL; the gap DPO − RL is paired by seed (same pairs, same reward model).
A gap counts as larger than the spread when |mean| > 2 standard errors of the paired gaps.
"""
from __future__ import annotations

from . import frontier as F
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


ONE_BETA = {"dpo": {"beta": 0.5}, "reinforce": {"beta": 0.02}, "ppo": {"beta": 0.02}}  # 4× rows: each
# run traces its frontier along training, so one β per method serves, and keeps the study in budget


def _ablation(run) -> None:
    from dataclasses import replace
    from ..preferences import PrefsConfig
    base = run.settings(PrefsConfig).train_repeats
    methods = {**F.METHODS, **{f"{m}@4x": replace(F.METHODS[m], grid=(b,)) for m, b in ONE_BETA.items()}}
    times_of = lambda times: FAST_MULTIPLIER if run.fast else times
    cells = []
    for _, labels, times, rl in ROWS:
        for m in ("dpo", rl):
            cells.append((f"{m}@4x" if times_of(times) > 1 and m in ONE_BETA else m, labels, base * times_of(times)))
    points = F.collect(run, "ablation", list(dict.fromkeys(cells)), methods)
    sft = read_json(run.path("eval_sft.json"))
    rows = []
    for change, labels, times, rl in ROWS:
        repeats = base * times_of(times)
        table = F.matched_table(points, labels, sft, repeats=repeats, methods=["dpo", rl])
        by_kl = {}
        for kl in F.KL_TARGETS:
            gaps = paired_gaps(points, labels, repeats, rl, kl, sft)
            if not gaps:
                continue
            mean, std = F.mean_std(gaps)
            se = std / len(gaps) ** 0.5
            by_kl[str(kl)] = {"dpo": table["dpo"].get(str(kl)), "rl": table[rl].get(str(kl)),
                              "gap_mean": mean, "gap_std": std, "n": len(gaps),
                              "beyond_spread": len(gaps) > 1 and abs(mean) > 2 * se}
        rows.append({"change": change, "labels": labels, "pairs_multiplier": times_of(times), "rl_method": rl,
                     "rl_label": F.METHODS[rl].label, "by_kl": by_kl})
    result = {"rows": rows, "kl_targets": list(F.KL_TARGETS), "seeds": F.seeds(run),
              "primary_kl": primary_kl(rows), "sft_gold": sft["gold_reward"]}
    write_json(F.study_folder(run) / "ablation.json", result)
    print_ablation(result)


def paired_gaps(points, labels, repeats, rl, kl, sft) -> list[float]:
    """DPO − RL gold reward at `kl`, per seed where both frontiers reach it."""
    gaps = []
    for seed in sorted({p["seed"] for p in points}):
        d = F.at_kl(F.envelope(F.points_of(points, "dpo", labels, seed, repeats), sft), kl)
        r = F.at_kl(F.envelope(F.points_of(points, rl, labels, seed, repeats), sft), kl)
        if d is not None and r is not None:
            gaps.append(d[0] - r[0])
    return gaps


def primary_kl(rows: list[dict]) -> float | None:
    """The largest matched KL at which every row has a gap from every seed (else from most seeds)."""
    for need in (lambda n: n == max(r["by_kl"][k]["n"] for r in rows for k in r["by_kl"]), lambda n: n >= 2):
        ok = [kl for kl in F.KL_TARGETS if all(str(kl) in r["by_kl"] and need(r["by_kl"][str(kl)]["n"]) for r in rows)]
        if ok:
            return max(ok)
    return None


def print_ablation(result: dict) -> None:
    kl = result["primary_kl"]
    if kl is None:
        print("ablation: no matched KL is reached by both methods in every row (run without --fast)")
        return
    print(f"DPO vs the RL method at KL = {kl:g} nats (gold reward, mean ± std over seeds):")
    for r in result["rows"]:
        c = r["by_kl"][str(kl)]
        verdict = "beyond the spread" if c["beyond_spread"] else "within the spread"
        print(f"  {r['change']:60s} DPO {c['dpo']['gold_mean']:+.2f} ± {c['dpo']['gold_std']:.2f} | "
              f"{r['rl_label']} {c['rl']['gold_mean']:+.2f} ± {c['rl']['gold_std']:.2f} | "
              f"DPO − RL {c['gap_mean']:+.2f} ± {c['gap_std']:.2f} ({verdict})")
