"""Every figure the project draws. matplotlib runs headless (Agg), set here once for all callers."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def sft_curve(history: dict, path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(history["step"], history["train_loss"], lw=0.8, alpha=0.6, label="train (batch)")
    ax.plot(history["val_step"], history["val_loss"], "o-", label="held-out films")
    ax.set(xlabel="step", ylabel="cross-entropy on response tokens (nats/token)", yscale="log",
           title="SFT: next-token loss on responses only")
    ax.legend()
    return _save(fig, path)


def gold_histograms(groups: dict[str, list[float]], path, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    lo = min(min(v) for v in groups.values())
    hi = max(max(v) for v in groups.values())
    bins = [lo + i * (hi - lo) / 30 for i in range(31)] if hi > lo else 10
    for name, values in groups.items():
        ax.hist(values, bins=bins, alpha=0.5, density=True,
                label=f"{name} (mean {sum(values) / len(values):+.2f})")
    ax.set(xlabel="gold reward r*(x, y)", ylabel="density", title=title)
    ax.legend()
    return _save(fig, path)


def reward_model_figure(metrics: dict, path) -> str:
    h = metrics["history"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
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


def rlhf_curves(history: list[dict], path) -> str:
    steps = [r["step"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(steps, [r["proxy_reward"] for r in history], label="proxy: learned reward (normalised)")
    a.plot(steps, [r["gold_reward"] for r in history], label="gold reward r*")
    a.set(xlabel="step", ylabel="mean reward of the step's samples", title="REINFORCE: rewards")
    a.legend(fontsize=8)
    b.plot(steps, [r["kl_k1"] for r in history], label="KL (k1 = Σ log π/π_ref)")
    b.plot(steps, [r["kl_k3"] for r in history], label="KL (k3, always ≥ 0)")
    b.set(xlabel="step", ylabel="nats per response", title="REINFORCE: KL to the reference")
    b.legend(fontsize=8)
    return _save(fig, path)


def dpo_metrics_figure(history: list[dict], path, title: str = "DPO training") -> str:
    """Held-out pairs (fixed, so the curves are smooth) in solid lines; the train batch faint."""
    rows = [r for r in history if "loss" in r]
    ev = [r for r in history if "eval/loss" in r]
    s, es = [r["step"] for r in rows], [r["step"] for r in ev]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
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


def equivalence_figure(res: dict, path) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    ns, tvs = zip(*res["tv_dpo_vs_optimal_true_by_n"])
    a.loglog(ns, tvs, "o-", label="DPO vs π*(true r)")
    a.loglog(ns, [tvs[0] * (ns[0] / n) ** 0.5 for n in ns], "k--", lw=0.8, label="∝ 1/√n")
    a.set(xlabel="number of preference pairs n", ylabel="total variation (max over prompts)",
          title="DPO approaches the true optimum as data grows")
    a.legend(fontsize=8)
    true = [v for row in res["true_reward_centred"] for v in row]
    imp = [v for row in res["implicit_reward_centred"] for v in row]
    fit = [v for row in res["fitted_reward"] for v in row]
    b.scatter(true, imp, label="β·log π_DPO/π_ref (centred)")
    b.scatter(true, fit, marker="x", label="fitted reward r̂ (centred)")
    lo, hi = min(true + imp), max(true + imp)
    b.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    b.set(xlabel="true reward r(x, y), centred per prompt", ylabel="reward (nats)",
          title=f"DPO's implicit reward = r̂ (max err {res['implicit_reward_max_error']:.1e})")
    b.legend(fontsize=8)
    return _save(fig, path)


def ipo_figure(contrast: dict, path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, run in contrast.items():
        steps = [t["steps"] for t in run["trace"]]
        style = "-" if name.startswith("dpo") else "--"
        ax.semilogx(steps, [t["gap"] for t in run["trace"]], style + "o",
                    label=f"{name.split('_')[0].upper()} β={run['beta']}")
    ax.set(xlabel="gradient steps", ylabel="log-ratio gap h (nats)",
           title="Always-won pair: DPO's gap grows without bound, IPO's stops at 1/(2β)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def frontier_figure(points: list[dict], path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {"dpo": "o", "rlhf": "s"}
    for method in ("dpo", "rlhf"):
        for beta in sorted({p["beta"] for p in points if p["method"] == method}):
            pts = sorted((p for p in points if p["method"] == method and p["beta"] == beta),
                         key=lambda p: p["step"])
            ax.plot([p["kl_to_ref"] for p in pts], [p["gold_reward"] for p in pts],
                    marker=markers[method], ls="-" if method == "dpo" else "--",
                    label=f"{method.upper()} β={beta}")
    ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward on held-out films",
           title="Reward vs KL frontier (the paper's Fig. 2, in miniature)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)
