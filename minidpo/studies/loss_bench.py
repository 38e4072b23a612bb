"""The loss bench: every registered preference loss trained the same way on the same pairs from the
same SFT model, scored by the gold reward. `python -m minidpo losses`.

Each loss is a unit of the frontier study (`frontier.method_unit`): one epoch over this run's
Bradley–Terry pairs (the same budget for every loss), evaluated at two points along training and
at the end on the held-out films, on 3 seeds (each seed its own pairs; seed = the run's seed is the
pipeline's pairs). A new loss registered anywhere (`losses.register_loss`, or a notebook cell) is
on the bench at its next run: its source code is part of its key.

Hyperparameters, as each paper recommends, translated to this world. The papers' β are for
responses of hundreds of tokens and summed log-probs; ours are ~14 tokens, and DPO's β = 0.5 is
this project's tuned default, so the DPO family uses β = 0.5 unless its paper sets a scale of its own:
  sigmoid (DPO)   β 0.5                       ipo      β 0.1 (target gap 1/(2β) = 5 nats)
  hinge (SLiC)    β 0.5 (margin 1/β = 2 nats) robust   β 0.5, ε 0.25 ≈ 1 − the oracle accuracy of
                                                       our Bradley–Terry labels (the flip rate it assumes)
  exo_pair        β 0.5, ε 1e-3 (TRL)         discopop β 0.25 = the paper's 0.05 scaled like DPO's β
                                              (0.1 -> 0.5), τ 0.05. Near a margin of 0 its loss falls
                                              toward NEGATIVE margins (derivative +0.78 at h = 0):
                                              gradient descent can settle ranking pairs the wrong way
  rpo             β 0.5, α 1 (Pang et al.)    dpop     β 0.5, λ 50 (Pal et al.)
  bco_pair, sppo_hard, nca_pair, apo_zero, apo_down, aot, aot_pair    β 0.5
  simpo           β 2.0, γ/β 0.5 (Meng et al. on the per-token mean, which our responses share)
  orpo            λ = β = 0.1 (Hong et al.)   sft (Preferred-FT), unlikelihood (α 1): no β
  kto             β 0.5, λ_D = λ_U = 1 (each pair split into a desirable and an undesirable example;
                  z0 from completions of other films, `preferences.mismatched_completions`)
"""
from __future__ import annotations

from . import frontier as F, units as U
from ..harness import compare as C, plots
from ..checkpoint import read_json, write_json
from ..losses import LOSSES

SETTINGS = {"ipo": {"beta": 0.1}, "robust": {"label_smoothing": 0.25}, "simpo": {"beta": 2.0},
            "orpo": {"beta": 0.1}, "discopop": {"beta": 0.25}}  # every other loss: β 0.5 and the loss's own defaults
EPOCHS = 1


def bench_methods() -> dict[str, F.Method]:
    """Every registered loss as a method of the frontier machinery (registered now: a loss added
    in a notebook cell is on the bench)."""
    return {name: F.Method(name, name, "dpo", {"loss_type": name, "epochs": EPOCHS, "beta": 0.5,
                                                **SETTINGS.get(name, {})}, ({},), ({},))
            for name in sorted(LOSSES)}


def run_loss_bench(run) -> dict:
    # the losses registered now are part of its key: a loss added in class puts the bench out of date
    registered = {name: loss.fingerprint() for name, loss in sorted(LOSSES.items())}
    return run.study("losses", lambda: _bench(run), config={"losses": registered})


def _bench(run) -> None:
    from ..preferences import PrefsConfig
    methods = bench_methods()
    repeats = run.settings(PrefsConfig).train_repeats
    seeds = F.seeds(run)[:1] if run.fast else F.seeds(run)  # --fast: a smoke run on one seed
    points = F.collect(run, "losses", [(name, "bt", repeats) for name in methods], methods, seed_list=seeds)
    sft = read_json(run.path("eval_sft.json"))
    matched = F.matched_table(points, "bt", sft)
    rows = {}
    for name in methods:
        finals = [max((p for p in points if p["method"] == name and p["seed"] == s), key=lambda p: p["step"])
                  for s in seeds]
        histories = [read_json(U.study_folder(run) / "units" / f"{U.unit_name(methods[name], {}, U.Data('bt', repeats, s))}_metrics.json")
                     for s in seeds]
        row = {key: F.mean_std([f[key] for f in finals]) for key in
               ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "fluency", "unique_frac")}
        row["logps_chosen_change"] = F.mean_std([h["history"][-1]["eval/logps/chosen"] - h["history"][0]["eval/logps/chosen"]
                                                 for h in histories])
        row["train_seconds"] = F.mean_std([h["seconds"] for h in histories])
        rows[name] = {k: {"mean": m, "std": sd} for k, (m, sd) in row.items()}
        rows[name]["matched"] = matched.get(name, {})
        rows[name]["settings"] = methods[name].settings
        rows[name]["reference"] = LOSSES[name].reference
    kl = bench_kl(rows, len(seeds))
    order = sorted(rows, key=lambda name: bench_rank(rows[name], kl, len(seeds)))
    result = {"rows": rows, "order": order, "matched_kl": kl, "seeds": seeds, "epochs": EPOCHS,
              "kl_targets": list(F.KL_TARGETS), "base": BASE, "paired": F.paired_table(points, "bt", sft, base=BASE),
              "sft": {k: sft[k] for k in ("gold_reward", "fluency")},
              "points": [{k: p[k] for k in POINT_KEYS} for p in points]}
    frontier_file = U.study_folder(run) / "frontier.json"
    curves = read_json(frontier_file)["curves"]["bt"] if frontier_file.is_file() else {}
    out = U.study_folder(run)
    write_json(out / "losses.json", result)
    plots.loss_bench_figure(result, {m: curves[m] for m in ("dpo", "reinforce", "ppo") if m in curves},
                            out / "losses.png")
    print_bench(result)


BASE = "sigmoid"  # DPO: every loss is read against it, paired by seed
POINT_KEYS = ("method", "seed", "step", "kl_to_ref", "gold_reward", "fluency")  # what losses.json keeps of a point


def difference(result: dict, name: str, kl) -> C.Difference | None:
    """The bench's DPO − `name` at `kl`, paired by seed, as a `compare.Difference` (None where no
    seed's two frontiers both reach it)."""
    d = result["paired"].get(name, {}).get(str(kl))
    return None if d is None else C.paired(d["gaps"], [0.0] * len(d["gaps"]))


def bench_kl(rows: dict, n_seeds: int) -> float | None:
    """The matched KL the table is sorted by: the largest target reached, in every seed, by DPO (the
    losses are paired with it there) and by at least half of the losses (the others are listed after
    them)."""
    for kl in reversed(F.KL_TARGETS):
        reached = sum(1 for r in rows.values() if r["matched"].get(str(kl), {}).get("n", 0) == n_seeds)
        base = rows.get(BASE, {}).get("matched", {}).get(str(kl), {}).get("n", 0) == n_seeds if BASE in rows else True
        if base and reached >= len(rows) / 2:
            return kl
    return None


def bench_rank(row: dict, kl: float | None, n_seeds: int) -> tuple:
    """The table's order: first the losses every seed of which reaches the matched KL, by their gold
    there; then the others, by their final gold (a mean over only the seeds that got there would
    rank a loss by its luckiest seeds)."""
    at = row["matched"].get(str(kl), {})
    if at.get("n", 0) == n_seeds:
        return (0, -at["gold_mean"])
    return (1, -row["gold_reward"]["mean"])


def matched_cell(m: dict | None, n_seeds: int) -> str:
    """Gold at the matched KL: mean ± std, with (n=) when not every seed reaches it."""
    if not m:
        return "-"
    return f"{m['gold_mean']:+.2f} ± {m['gold_std']:.2f}" + ("" if m["n"] == n_seeds else f" (n={m['n']})")


def print_bench(result: dict) -> None:
    kl = result["matched_kl"] if result["matched_kl"] is not None else "-"
    n = len(result["seeds"])
    spread = "mean ± std over seeds" if n > 1 else "one seed: no spread, a smoke run only"
    print(f"{len(result['rows'])} losses, {n} seed{'s' if n > 1 else ''}, {result['epochs']} epoch; ranked by gold "
          f"reward on each seed's frontier at KL {kl} ({spread}); then, unranked, the losses not every seed of which "
          "reaches it ('-': no seed does, (n=): only n do); s = seconds of training")
    print(f"{'loss':14s} | gold at KL {kl:<10} | DPO − loss at KL {kl}, paired by seed (95 % interval) | final gold      | "
          f"KL    | fluency | Δlog π(y_w) | s")
    for name in result["order"]:
        r = result["rows"][name]
        at = matched_cell(r["matched"].get(str(kl)), n)
        gold = r["gold_reward"]
        final = f"{gold['mean']:+.3f} ± {gold['std']:.3f}" if n > 1 else f"{gold['mean']:+.3f}"
        d = difference(result, name, kl) if kl != "-" else None
        versus = "(DPO itself)" if name == result["base"] else (
            f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] {d.verdict}" if d is not None and d.n > 1
            else f"{d.mean:+.2f} (one seed)" if d is not None else "-")
        print(f"{name:14s} | {at:21s} | {versus:48s} | {final:15s} | "
              f"{r['kl_to_ref']['mean']:5.2f} | {r['fluency']['mean']:.3f}   | {r['logps_chosen_change']['mean']:+.2f}       | "
              f"{r['train_seconds']['mean']:.0f}")


def measurable(result: dict, kl) -> dict[str, str]:
    """{loss: "above" | "below"}: the losses whose difference from DPO at `kl` the seeds can tell
    from zero (DPO − loss's 95 % interval excludes it: "above" = DPO above the loss)."""
    return {name: d["verdict"] for name, row in result["paired"].items() if (d := row.get(str(kl)))
            and d["verdict"] in ("above", "below")}

