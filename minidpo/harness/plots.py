"""Every figure the project draws. Each function returns its `Figure`, so a notebook shows it inline,
and with a `path` also writes it there as a PNG (atomically). Figures are made with
`matplotlib.figure.Figure`, not pyplot: no backend is chosen and no global state is kept, so
importing minidpo never changes matplotlib's backend (the CLI and a headless script need none to
write PNGs).
"""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from ..checkpoint import atomic_write
from . import headline


def _subplots(*grid, figsize, **kw):
    """(figure, axes) like `pyplot.subplots`, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


def _save(fig: Figure, path=None) -> Figure:
    fig.tight_layout()
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        atomic_write(Path(path), lambda f: f.write(buf.getvalue()))
    return fig


def sft_curve(history: dict, path=None) -> Figure:
    fig, ax = _subplots(figsize=(6, 3.8))
    ax.plot(history["step"], history["train_loss"], lw=0.8, alpha=0.6, label="train (batch)")
    ax.plot(history["val_step"], history["val_loss"], "o:", label="held-out films (measured at the dots)")
    ax.set(xlabel="step", ylabel="cross-entropy on response tokens (nats/token)", yscale="log",
           title="SFT: next-token loss on responses only")
    ax.legend()
    return _save(fig, path)


def gold_histograms(groups: dict[str, list[float]], path=None, title: str = "Gold reward") -> Figure:
    fig, ax = _subplots(figsize=(6, 3.8))
    lo = min(min(v) for v in groups.values())
    hi = max(max(v) for v in groups.values())
    bins = [lo + i * (hi - lo) / 30 for i in range(31)] if hi > lo else 10
    for name, values in groups.items():
        ax.hist(values, bins=bins, histtype="step", lw=1.8, density=True,
                label=f"{name} (mean {sum(values) / len(values):+.2f})")
    ax.set(xlabel="gold reward r*(x, y)", ylabel="density", title=title)
    ax.legend()
    return _save(fig, path)


def reward_model_figure(metrics: dict, path=None) -> Figure:
    h = metrics["history"]
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.8))
    a.plot(h["step"], h["val_accuracy"], "o-", label="reward model, held-out pairs")
    a.axhline(metrics["oracle_accuracy"], color="k", ls="--", label="oracle (gold reward) on same labels")
    a.axhline(0.5, color="grey", ls=":", label="chance")
    a.set(xlabel="step", ylabel="pairwise accuracy", title="Reward model vs the oracle ceiling")
    a.legend(fontsize=8)
    s = metrics["scatter"]
    b.scatter(s["gold"], s["learned"], s=8, alpha=0.5)
    b.set(xlabel="gold reward r*(x, y)", ylabel="learned reward (normalised)",
          title=f"Fresh SFT samples, corr {metrics['gold_correlation_heldout']:.2f}")
    return _save(fig, path)


def rlhf_curves(history: list[dict], path=None) -> Figure:
    steps = [r["step"] for r in history]
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.8))
    a.plot(steps, [r["proxy_reward"] for r in history], label="proxy: learned reward (normalised)")
    a.plot(steps, [r["gold_reward"] for r in history], label="gold reward r*")
    a.set(xlabel="step", ylabel="mean reward of the step's samples", title="REINFORCE: rewards")
    a.legend(fontsize=8)
    b.plot(steps, [r["kl_k1"] for r in history], label="KL (k1 = Σ log π/π_ref)")
    b.plot(steps, [r["kl_k3"] for r in history], label="KL (k3, always ≥ 0)")
    b.set(xlabel="step", ylabel="nats per response", title="REINFORCE: KL to the reference")
    b.legend(fontsize=8)
    return _save(fig, path)


def dpo_metrics_figure(history: list[dict], path=None, title: str = "DPO training") -> Figure:
    """Held-out pairs (fixed, so the curves are smooth) in solid lines; the train batch faint."""
    rows = [r for r in history if "loss" in r]
    ev = [r for r in history if "eval/loss" in r]
    s, es = [r["step"] for r in rows], [r["step"] for r in ev]
    fig, axes = _subplots(1, 3, figsize=(13, 3.8))
    for key, color in (("chosen", "C0"), ("rejected", "C1"), ("margins", "C2")):
        axes[0].plot(es, [r[f"eval/rewards/{key}"] for r in ev], "o-", color=color, label=f"rewards/{key}")
        axes[0].plot(s, [r[f"rewards/{key}"] for r in rows], color=color, alpha=0.25)
    axes[0].set(xlabel="step", ylabel="β·log π/π_ref (nats)", title="implicit rewards (held-out pairs)")
    for key, color in (("chosen", "C0"), ("rejected", "C1")):
        axes[1].plot(es, [r[f"eval/logps/{key}"] for r in ev], "o-", color=color, label=f"logps/{key}")
    axes[1].set(xlabel="step", ylabel="mean log π(y|x) (nats)", title="sequence log-probs: both can fall")
    axes[2].plot(s, [r["rewards/accuracies"] for r in rows], alpha=0.4, label="train batch")
    axes[2].plot(es, [r["eval/rewards/accuracies"] for r in ev], "o-", label="held-out pairs")
    axes[2].set(xlabel="step", ylabel="fraction r̂_w > r̂_l", title="rewards/accuracies")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def beta_saturation_figure(traces: dict, path=None) -> Figure:
    """DPO's per-pair gradient weight σ(−β·h) at several β. `traces`: β -> {"margins": each pair's
    h after some steps, "weights": their σ(−β·h), "mean_weight": the batch mean before each step
    and after the last}. Left: the weight against h, one curve a β, the pairs on it, 1/β marked."""
    import math
    fig, (a, b) = _subplots(1, 2, figsize=(11, 3.8))
    hi = max(max(max(t["margins"]) for t in traces.values()), 4 / min(traces))
    lo = min(min(min(t["margins"]) for t in traces.values()), 0.0)
    lin = 0.02  # the symlog axis is linear within ±lin: the grid is geometric beyond, linear between
    grid = ([-lin * (-lo / lin) ** (1 - i / 100) for i in range(100)] if lo < -lin else [])
    grid += [-lin + 2 * lin * i / 20 for i in range(20)] + [lin * (hi / lin) ** (i / 300) for i in range(301)]
    lo = min(lo, -lin)
    for i, (beta, t) in enumerate(traces.items()):
        color = f"C{i}"
        a.plot(grid, [1 / (1 + math.exp(beta * h)) for h in grid], color=color, label=f"σ(−β·h), β = {beta:g}")
        a.scatter(t["margins"], t["weights"], s=12, color=color, alpha=0.7)
        a.axvline(1 / beta, color=color, ls=":", lw=0.8)
        b.plot(range(len(t["mean_weight"])), t["mean_weight"], "o-", color=color, label=f"β = {beta:g}")
    a.set(xlabel="margin h = log-ratio(y_w) − log-ratio(y_l) (nats); dotted: h = 1/β",
          ylabel="gradient weight", title="The weight saturates once h passes ~1/β")
    a.set_xscale("symlog", linthresh=lin)
    a.set_xlim(lo, hi)
    a.legend(fontsize=8)
    b.set(xlabel="AdamW steps on the same batch", ylabel="mean weight σ(−β·h)", ylim=(0, 0.55),
          title="Large β: the weights shrink fast")
    b.legend(fontsize=8)
    return _save(fig, path)


def implicit_reward_figure(accuracy: dict, fresh: dict, path=None) -> Figure:
    """The implicit reward as a classifier. `accuracy`: name -> held-out pair accuracy (bars, chance
    dotted); `fresh`: "gold", "implicit", "reward model" -> scores of the same fresh samples."""
    fig, (a, b) = _subplots(1, 2, figsize=(11, 3.8))
    names = list(accuracy)
    a.bar(range(len(names)), [accuracy[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    a.set_xticks(range(len(names)), names, fontsize=8)
    a.axhline(0.5, color="grey", ls=":", label="chance")
    a.set(ylabel="held-out pair accuracy (ties ½)", ylim=(0, 1), title="Who agrees with the held-out labels")
    a.legend(fontsize=8)
    gold = fresh["gold"].tolist()
    b.scatter(gold, fresh["implicit"].tolist(), s=8, alpha=0.5, label="implicit reward β·log π/π_ref")
    b.scatter(gold, fresh["reward model"].tolist(), s=8, alpha=0.5, marker="x", label="reward model (normalised)")
    b.set(xlabel="gold reward r*(x, y)", ylabel="score", title="Fresh SFT samples of held-out films")
    b.legend(fontsize=8)
    return _save(fig, path)


def equivalence_figure(res: dict, path=None) -> Figure:
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.8))
    ns, tvs = zip(*res["tv_dpo_vs_optimal_true_by_n"])
    a.loglog(ns, tvs, "o-", label="DPO vs π*(true r), mean over data sets")
    a.loglog(ns, [tvs[0] * (ns[0] / n) ** 0.5 for n in ns], "k--", lw=0.8, label="∝ 1/√n")
    a.set(xlabel="number of preference pairs n", ylabel="total variation (max over prompts)",
          title="DPO approaches the true optimum as data grows")
    a.legend(fontsize=8)
    true = [v for row in res["true_reward_centred"] for v in row]
    imp = [v for row in res["implicit_reward_centred"] for v in row]
    fit = [v for row in res["fitted_reward"] for v in row]
    b.scatter(true, imp, label="β·log π_DPO/π_ref (centred)")
    b.scatter(true, fit, marker="x", label="fitted reward r_φ (centred)")
    lo, hi = min(true + imp), max(true + imp)
    b.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    b.set(xlabel="true reward r(x, y), centred per prompt", ylabel="reward (nats)",
          title=f"DPO's implicit reward = r_φ (max err {res['implicit_reward_max_error']:.1e})")
    b.legend(fontsize=8)
    return _save(fig, path)


def ipo_figure(contrast: dict, path=None) -> Figure:
    fig, ax = _subplots(figsize=(6, 3.8))
    for name, run in contrast.items():
        steps = [t["steps"] for t in run["trace"]]
        style = "-" if name.startswith("dpo") else "--"
        ax.semilogx(steps, [t["gap"] for t in run["trace"]], style + "o",
                    label=f"{name.split('_')[0].upper()} β={run['beta']}")
    ax.set(xlabel="gradient steps", ylabel="log-ratio gap h (nats)",
           title="Always-won pair: DPO's gap grows without bound,\nIPO's stops at 1/(2β)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def policy_bars(responses: list[str], policies: dict[str, list[float]], trace=None, path=None,
                title: str = "Policies over the responses of one prompt") -> Figure:
    """Policies of one prompt as grouped bars (one group per response, one colour per policy), and,
    when `trace` = (steps, distances) is given, a second panel with a distance falling per step
    (log scale; e.g. total variation to π* during gradient descent)."""
    import textwrap
    fig, axes = _subplots(1, 2 if trace else 1, figsize=(13 if trace else 7.5, 4.2), squeeze=False)
    a = axes[0][0]
    width = 0.8 / len(policies)
    for k, (name, probs) in enumerate(policies.items()):
        a.bar([i + (k - (len(policies) - 1) / 2) * width for i in range(len(responses))], probs, width,
              label=name, color=f"C{k}")
    a.set_xticks(range(len(responses)),
                 [textwrap.fill(textwrap.shorten(s, 48, placeholder="…"), 24) for s in responses], fontsize=7)
    a.set(ylabel="probability", title=title)
    a.legend(fontsize=8)
    if trace:
        steps, dist = trace
        b = axes[0][1]
        b.semilogy(steps, [max(d, 1e-17) for d in dist], "o-", ms=3)  # a TV of exactly 0 has no log
        b.set(xlabel="gradient step", ylabel="total variation to π*", title="Gradient descent on the DPO loss")
    return _save(fig, path)


FRONTIER_STYLE = {  # method -> (marker, line style): DPO-family solid, RL dashed, gold dotted
    "dpo": ("o", "-"), "preferred_ft": ("v", "-"), "unlikelihood": ("^", "-"), "reinforce": ("s", "--"),
    "ppo": ("D", "--"), "grpo": ("P", "--"), "ppo_gt": ("*", ":")}


def frontier_figure(result: dict, path=None) -> Figure:
    """One panel per labelling condition: every evaluated point (faint, all seeds), each method's
    frontier (the upper concave hull of its points, per seed), mean over seeds with a ±1 std band,
    and, in the panel of the pipeline's own labels, the pipeline's single runs (one seed each, their
    own budgets) as large labelled markers."""
    conditions = list(result["curves"])
    fig, axes = _subplots(1, len(conditions), figsize=(6.5 * len(conditions), 4.6), squeeze=False)
    for ax, labels in zip(axes[0], conditions):
        ax.plot([0], [result["sft"]["gold_reward"]], "k*", ms=12, label="SFT (the reference)")
        colour = {}
        for i, (method, curve) in enumerate(result["curves"][labels].items()):
            colour[method] = f"C{i}"
            marker, style = FRONTIER_STYLE.get(method, ("o", "-"))
            pts = [p for p in result["points"] if p["method"] == method and p["labels"] in (labels, "gold")]
            ax.scatter([p["kl_to_ref"] for p in pts], [p["gold_reward"] for p in pts], marker=marker, s=14,
                       color=f"C{i}", alpha=0.3)
            if curve["kl"]:
                lo = [m - s for m, s in zip(curve["mean"], curve["std"])]
                hi = [m + s for m, s in zip(curve["mean"], curve["std"])]
                ax.plot(curve["kl"], curve["mean"], style, color=f"C{i}", label=result["methods"][method])
                ax.fill_between(curve["kl"], lo, hi, color=f"C{i}", alpha=0.15)
        for name, p in result.get("pipeline", {}).items():
            if p["labels"] != labels:
                continue
            method = {"rlhf": "reinforce"}.get(name, name)
            spend = headline.run_budget(p)
            ax.plot([p["kl_to_ref"]], [p["gold_reward"]], marker=FRONTIER_STYLE.get(method, ("o",))[0], ms=11,
                    mec="black", mew=1.5, color=colour.get(method, "grey"), ls="none")
            ax.annotate(f"pipeline {p['label']} (β {p['beta']:g}, {spend})", (p["kl_to_ref"], p["gold_reward"]),
                        fontsize=7, xytext=(5, -10), textcoords="offset points")
        ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
               title=f"Reward vs KL, labels: {labels} ({len(result['seeds'])} seeds)")
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def ablation_figure(result: dict, path=None) -> Figure:
    """The ablation at its matched KL: each row's DPO − RL gap, paired by seed (a dot per seed, the
    mean with its 95 % interval), from this project's setting (top) to the paper's (bottom)."""
    rows, kl = result["rows"], result.get("primary_kl")
    fig, ax = _subplots(figsize=(9, 0.6 * len(rows) + 1.6))
    ax.axvline(0, color="grey", lw=1)
    for i, r in enumerate(rows):
        c = r["by_kl"].get(str(kl)) if kl is not None else None
        if not c:
            continue
        y = len(rows) - 1 - i
        ax.scatter(c["gaps"], [y] * len(c["gaps"]), color="C0", s=14, alpha=0.6)
        if c["n"] > 1:
            ax.errorbar([c["gap_mean"]], [y], xerr=[[c["gap_mean"] - c["low"]], [c["high"] - c["gap_mean"]]],
                        fmt="o", color="C3" if c["verdict"] != "no measurable difference" else "black", capsize=4)
    ax.set_yticks(range(len(rows)), [f"{i}: {r['change']}" for i, r in enumerate(rows)][::-1], fontsize=7)
    ax.set(xlabel=f"DPO − RL, gold reward at KL {kl:g} (a dot per seed; the mean and its 95 % interval)"
           if kl is not None else "DPO − RL", title="From this project's setting to the paper's, one factor at a time")
    return _save(fig, path)


def ppo_figure(ppo: list[dict], reinforce: list[dict], path=None) -> Figure:
    """PPO next to REINFORCE: gold reward and KL per step, then PPO's own diagnostics."""
    fig, (a, b, c) = _subplots(1, 3, figsize=(15, 4))
    for name, h, style in (("REINFORCE", reinforce, "--"), ("PPO", ppo, "-")):
        steps = [r["step"] for r in h]
        a.plot(steps, [r["gold_reward"] for r in h], style, label=f"{name}: gold")
        a.plot(steps, [r["proxy_reward"] for r in h], style, alpha=0.4, label=f"{name}: reward model")
        b.plot(steps, [r["kl_k1"] for r in h], style, label=name)
    a.set(xlabel="step (one batch of samples)", ylabel="mean reward of the step's samples", title="Rewards")
    b.set(xlabel="step", ylabel="KL to the reference (k1, nats)", title="KL to the reference")
    steps = [r["step"] for r in ppo]
    for key, label in (("clip_frac", "clip fraction"), ("approx_kl", "approx KL(π_old ‖ π_θ)"),
                       ("value_ev", "value explained variance")):
        c.plot(steps, [r[key] for r in ppo], label=label)
    c.set(xlabel="step", title="PPO's diagnostics", ylim=(-0.5, 1.05))
    for ax in (a, b, c):
        ax.legend(fontsize=7)
    return _save(fig, path)


def ppo_vs_reinforce_figure(result: dict, path=None) -> Figure:
    """Left: each seed's evaluated points and frontier (upper concave hull) for both algorithms.
    Right: the paired difference at each matched KL, mean and 95 % interval over the seeds."""
    fig, (a, b) = _subplots(1, 2, figsize=(13, 4.6))
    a.plot([0], [result["sft"]["gold_reward"]], "k*", ms=12, label="SFT (the reference)")
    for i, (method, label) in enumerate(result["methods"].items()):
        pts = [p for p in result["points"] if p["method"] == method]
        a.scatter([p["kl_to_ref"] for p in pts], [p["gold_reward"] for p in pts], s=14, color=f"C{i}", alpha=0.5)
        for j, hull in enumerate(result["hulls"][method]):
            a.plot([v[0] for v in hull], [v[1] for v in hull], "-" if i == 0 else "--", color=f"C{i}", alpha=0.7,
                   label=f"{label}: each seed's frontier" if j == 0 else None)
    a.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
          title=f"Equal samples ({result['budgets'][result['difference'][0]]['samples_per_unit']} each), "
                f"{len(result['seeds'])} seeds")
    a.legend(fontsize=7)
    first, second = (result["methods"][m] for m in result["difference"])
    kls = [float(kl) for kl in result["paired"]]
    d = list(result["paired"].values())
    b.errorbar(kls, [x["gap_mean"] for x in d], yerr=[[x["gap_mean"] - x["low"] for x in d],
                                                      [x["high"] - x["gap_mean"] for x in d]], fmt="o", capsize=4)
    b.axhline(0, color="grey", lw=1)
    b.set(xlabel="matched KL (nats)", ylabel=f"{first} − {second}, gold", title="Paired by seed: mean and 95 % interval")
    return _save(fig, path)


def loss_bench_figure(result: dict, curves: dict, path=None) -> Figure:
    """Each loss's final policy (mean over seeds, ±1 std bars) on the reward-vs-KL axes, beside the
    frontiers of DPO and the RL methods from the Figure 2 study when it has run."""
    fig, ax = _subplots(figsize=(9, 6))
    ax.plot([0], [result["sft"]["gold_reward"]], "k*", ms=12, label="SFT")
    for i, (method, curve) in enumerate(curves.items()):
        ax.plot(curve["kl"], curve["mean"], FRONTIER_STYLE.get(method, ("o", "-"))[1], color=f"C{i}",
                label=f"{method} frontier (Figure 2 study)")
    for name, r in result["rows"].items():
        x, y = r["kl_to_ref"], r["gold_reward"]
        ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt="o", ms=4, color="grey", alpha=0.8)
        ax.annotate(name, (x["mean"], y["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
           title=f"The loss bench: every registered loss, {result['epochs']} epoch, {len(result['seeds'])} seeds")
    ax.legend(fontsize=7)
    return _save(fig, path)


def overoptimisation_figure(seeds: list[dict], path=None) -> Figure:
    """Gold (solid) and proxy (dashed) reward gains against d = √KL: best-of-n (analytic KL) and RL
    (its training samples, 10-step means), one line per seed and push; `seeds`: one dict per seed
    with "best_of_n" ({RM: rows}) and "rl_curves" ({label: rows})."""
    fig, (a, b, c) = _subplots(1, 3, figsize=(16, 4.2))
    for j, one in enumerate(seeds):
        alpha, tag = (1.0, "") if j == 0 else (0.35, None)
        for i, (name, rows) in enumerate(one["best_of_n"].items()):
            d = [r["kl_bound"] ** 0.5 for r in rows]
            a.plot(d, [r["gold"] - rows[0]["gold"] for r in rows], "o-", color=f"C{i}", alpha=alpha,
                   label=None if tag is None else f"gold, RM {name}")
            a.plot(d, [r["proxy"] - rows[0]["proxy"] for r in rows], "s--", color=f"C{i}", alpha=0.6 * alpha,
                   label=None if tag is None else f"proxy, RM {name}")
        for i, (name, rows) in enumerate(one["rl_curves"].items()):
            d = [max(r["kl"], 0.0) ** 0.5 for r in rows]
            b.plot(d, [r["gold"] - rows[0]["gold"] for r in rows], "-", color=f"C{i}", alpha=alpha,
                   label=None if tag is None else f"gold, {name}")
            b.plot(d, [r["proxy"] - rows[0]["proxy"] for r in rows], "--", color=f"C{i}", alpha=0.6 * alpha,
                   label=None if tag is None else f"proxy, {name}")
            c.plot([r["step"] for r in rows], d, "-", color=f"C{i}", alpha=alpha, label=None if tag is None else name)
    more = f" ({len(seeds)} seeds, the first bold)" if len(seeds) > 1 else ""
    a.set(xlabel="d = √KL (best-of-n, analytic KL)", ylabel="reward gain over n = 1",
          title="Best-of-n against the learned reward" + more)
    b.set(xlabel="d = √KL of the training samples", ylabel="reward gain over step 1",
          title="REINFORCE against the learned reward")
    c.set(xlabel="REINFORCE step", ylabel="d = √KL(π ‖ π_ref) of the step's samples", title="How far the policy moved")
    for ax in (a, b, c):
        ax.legend(fontsize=7)
    return _save(fig, path)


def diversity_figure(table: dict, path=None) -> Figure:
    """Gold reward, entropy and unique responses at the end of training against β, one line per
    method, mean ± std over seeds: `table` = {method: {β: {measure: {"mean", "std"}}}}."""
    fig, axes = _subplots(1, 3, figsize=(13, 3.8))
    for method, marker in (("dpo", "o-"), ("rlhf", "s--")):
        rows = sorted(table.get(method, {}).items(), key=lambda kv: float(kv[0]))
        betas = [float(b) for b, _ in rows]
        for ax, key in zip(axes, ("gold_reward", "entropy", "unique_frac")):
            ax.errorbar(betas, [r[key]["mean"] for _, r in rows], yerr=[r[key]["std"] for _, r in rows],
                        fmt=marker, capsize=3, label=method.upper())
    for ax, label in zip(axes, ("mean gold reward", "per-token entropy (nats)", "fraction of unique responses")):
        ax.set(xlabel="β (symmetric log scale: 0 is drawn at the left)", ylabel=label)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.legend(fontsize=8)
    fig.suptitle("What β buys: reward against diversity, end of training (error bars: std over seeds)")
    return _save(fig, path)


def failure_modes_figure(histories: dict[str, list[dict]], path=None) -> Figure:
    fig, (a, b) = _subplots(1, 2, figsize=(12, 4))
    for i, (name, h) in enumerate(histories.items()):
        ev = [r for r in h if "eval/logps/chosen" in r]
        s = [r["step"] for r in ev]
        a.plot(s, [r["eval/logps/chosen"] for r in ev], "-", color=f"C{i}", label=f"{name}: chosen")
        a.plot(s, [r["eval/logps/rejected"] for r in ev], "--", color=f"C{i}", label=f"{name}: rejected")
        b.plot(s, [r["eval/rewards/margins"] for r in ev], "-", color=f"C{i}", label=name)
    a.set(xlabel="step", ylabel="mean log π(y|x) on held-out pairs (nats)",
          title="logps/chosen and logps/rejected (dashed)")
    b.set(xlabel="step", ylabel="β·(log-ratio chosen − rejected)", title="rewards/margins on held-out pairs")
    a.legend(fontsize=6, ncol=2)
    b.legend(fontsize=7)
    return _save(fig, path)


def _along_training(axes, runs: dict, sft: dict, keys=("gold_reward", "fluency")) -> None:
    """Each run's points along training from the SFT model (KL 0), one colour per name, one line per
    seed: `runs` = {name: [points of seed 0, points of seed 1, ...]}."""
    for i, (name, per_seed) in enumerate(runs.items()):
        for j, points in enumerate(per_seed):
            kl = [0.0] + [p["kl_to_ref"] for p in points]
            for ax, key in zip(axes, keys):
                ax.plot(kl, [sft[key]] + [p[key] for p in points], "o-", ms=3, color=f"C{i}", alpha=0.8,
                        label=name if j == 0 else None)
    for ax, key in zip(axes, keys):
        ax.set(xlabel="KL to the reference (nats)", ylabel=key.replace("_", " "))
        ax.legend(fontsize=7)


def remedies_figure(result: dict, path=None) -> Figure:
    """The failure-modes study: gold reward and fluency against KL along training, each remedy and
    plain DPO, one line per seed. Compare at the same KL, not at the ends."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    _along_training(axes, result["points"], result["sft"])
    fig.suptitle(f"DPO and its remedies along training ({len(result['seeds'])} seeds): read them at the same KL")
    return _save(fig, path)


def online_figure(res: dict, path=None) -> Figure:
    """Online DPO after each round and offline DPO along training: gold reward and fluency against
    KL, one line per seed."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    runs = {**{f"online, {k} labels": v for k, v in res["online"].items()}, "offline DPO": res["offline"]}
    _along_training(axes, runs, res["sft"])
    fig.suptitle(f"Online (iterative) DPO vs offline DPO, {len(res['seeds'])} seeds: read them at the same KL")
    return _save(fig, path)


def run_curves_figure(histories: dict[str, list[dict]], path=None,
                      title: str = "Is my DPO run fine? The held-out curves, healthy and sick") -> Figure:
    """The curves a DPO run logs, from step 0 to the end, one colour per run: the held-out pairs'
    (solid, dots) and the training batch's (faint), so a sick run can be told from a healthy one
    by eye. `histories`: run name -> its logged history (`dpo_metrics.json`'s "history")."""
    import math
    keys = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
    fig, axes = _subplots(2, 3, figsize=(15, 7.5))
    flat = list(axes.flat)
    for i, (name, h) in enumerate(histories.items()):
        ev, tr = [r for r in h if "eval/loss" in r], [r for r in h if "loss" in r]
        color = "k" if i == 0 else f"C{i - 1}"
        for ax, key in zip(flat, keys):
            ax.plot([r["step"] for r in ev], [r[f"eval/{key}"] for r in ev], "o-", ms=3, color=color, label=name)
            ax.plot([r["step"] for r in tr], [r[key] for r in tr], color=color, alpha=0.25, lw=0.8)
        for key, style in (("chosen", "o-"), ("rejected", "s--")):
            flat[5].plot([r["step"] for r in ev], [r[f"eval/logps/{key}"] for r in ev], style, ms=3, color=color,
                         label=f"{name}: {key}")
    flat[0].axhline(math.log(2), color="grey", ls=":", lw=1)
    for ax, key in zip(flat, keys):
        ax.set(xlabel="step", title=key + (" (ln 2 dotted)" if key == "loss" else ""))
    flat[5].set(xlabel="step", title="logps/chosen (solid), logps/rejected (dashed)")
    flat[0].legend(fontsize=7)
    flat[5].legend(fontsize=6, ncol=2)
    fig.suptitle(title + " (held-out pairs: dots; training batch: faint)")
    return _save(fig, path)


def bridge_figure(result: dict, path=None) -> Figure:
    """The bridge rung by rung (`studies.bridge`; every number is bridge.json's): (a) the distance
    between DPO's and RLHF's policies, TV, log scale — rungs 0–4 exact sums (mean ± std over seeds),
    rung 5 the default run's own pair, sampled (± 2 standard errors); (b) the two roads' gold reward
    at matched KL in the enumerable world; (c) the same in the toy world, online DPO beside them.
    (b) and (c) are in different gold units: two worlds, two panels."""
    rungs = result["rungs"]
    exact, toy = [r for r in rungs if r["rung"] < 5], next(r for r in rungs if r["rung"] == 5)
    fig, (a, b, c) = _subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [5, 5, 3]})
    x = [r["rung"] for r in exact]
    a.errorbar(x, [r["tv_dpo_rlhf"] for r in exact], yerr=[r["tv_dpo_rlhf_std"] for r in exact], fmt="o-",
               capsize=3, label="enumerable world: exact (mean ± std over seeds)")
    a.errorbar([5], [toy["tv_dpo_rlhf"]], yerr=[2 * toy["tv_dpo_rlhf_se"]], fmt="s", color="C3", capsize=3,
               label="toy world: the default run's pair (sampled, ± 2 SE)")
    a.set(yscale="log", xlabel="rung", ylabel="TV(π_DPO, π_RLHF)", xticks=range(6),
          title="(a) the distance between the two roads")
    a.legend(fontsize=7)
    for road, style in (("dpo", "o-"), ("rlhf", "s--")):
        b.errorbar(x, [r["matched"][f"gold_{road}"] for r in exact], yerr=[r["matched"][f"gold_{road}_std"] for r in exact],
                   fmt=style, capsize=3, label=road.upper())
    b.set(xlabel="rung (each read at its own matched KL)", ylabel="gold reward of the enumerable world",
          xticks=x, title="(b) gold at matched KL: enumerable world")
    b.legend(fontsize=7)
    m = toy["matched"]
    roads = [road for road in ("dpo", "rlhf", "online_dpo") if road in m["gold"]]
    c.errorbar(range(len(roads)), [m[f"gold_{road}"] for road in roads], yerr=[m[f"gold_{road}_std"] for road in roads],
               fmt="o", color="C3", capsize=3)
    c.set(xticks=range(len(roads)), xticklabels=[r.replace("_", " ").upper() for r in roads],
          ylabel="gold reward of the toy world", title=f"(c) rung 5 at KL {m['kl']:.2f}")
    return _save(fig, path)
