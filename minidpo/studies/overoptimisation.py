"""Reward over-optimisation, after Gao, Schulman & Hilton (2022), in our world.

The learned reward model is only a proxy for the gold reward, trained on SFT samples. Optimise it
and the policy drifts to text the reward model never saw. Two ways to push, each measured against
d = √KL(π ‖ π_ref):

  best-of-n   sample n responses from the SFT model, keep the one the reward model likes best.
              KL(π_bon ‖ π_ref) ≤ log n − (n−1)/n for any reward (equality when no two responses
              tie; the analytic value Gao et al. plot against). Beside it, `kl_pool`: the exact KL
              of best-of-n for the SFT policy restricted to each prompt's pool of candidates (their
              SFT probabilities renormalised), averaged over prompts: below the bound, and defined.
              Fitted form: gold(d) − gold(0) = d·(a − b·d).
  RL          REINFORCE on the proxy with β = 0 (no KL leash) and a small β, tracked step by step
              (the training samples' rewards, 10-step means). Fitted form: gold(d) − gold(0) =
              d·(a − b·log d).

Each fit is least squares on the measured points. Where it holds is said by its residuals, before
and after the observed peak; a fitted peak beyond the largest d measured is an extrapolation, not
an observation (`summarise`: `fit_peak_in_data`), and a curve whose largest value is its last one
has no observed peak.

Every seed of `sweep.seeds` repeats it all with its own pairs and reward model (and a weaker proxy:
the same recipe on the first half of that seed's pairs), its own candidates and RL samples, so
the comparisons (β = 0.01 against β = 0 at the same KL; the weaker proxy against the full one) are
paired by seed.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, replace

import torch

from .. import world
from ..checkpoint import read_json, write_json
from ..evaluate import response_logps
from ..harness import compare as C, plots
from ..preferences import read_preferences
from ..reward_model import RMConfig, load_reward_model, score, train_reward_model
from ..rlhf import RLHFConfig, train_rlhf
from ..sampling import make_generator, sample
from . import sweep

FRACTION = 0.5        # the weaker proxy sees this fraction of its seed's pairs
WEAK = f"RM on {FRACTION:g} of pairs"
RL_UNITS = (("β=0, full RM", 0.0, "full"), ("β=0.01, full RM", 0.01, "full"), (f"β=0, {WEAK}", 0.0, "weak"))
BON_SEED_OFFSET = 5   # best-of-n samples its candidates with the seed + 5
BON_SIZE, FAST_BON_SIZE = (32, 256), (8, 64)   # (prompts, candidates per prompt) of the study
RL_POINT_EVERY = 10   # an RL curve is read as a frontier at every 10th step


def bon_kl_bound(n: int) -> float:
    """The analytic KL of best-of-n to its base policy: log n − (n−1)/n."""
    return math.log(n) - (n - 1) / n


def bon_exact_kl(probs: torch.Tensor, scores: torch.Tensor, n: int) -> float:
    """Exact KL(π_bon ‖ π) for a discrete policy over responses with distinct scores:
    π_bon(y_i) = F_i^n − F_{i−1}^n with F the cumulative probability in order of score."""
    order = torch.argsort(scores)
    p = probs[order].double()
    F = torch.cumsum(p, 0).clamp(max=1.0)
    F_prev = torch.cat([torch.zeros(1, dtype=F.dtype), F[:-1]])
    bon = F ** n - F_prev ** n
    keep = bon > 0
    return (bon[keep] * (bon[keep].log() - p[keep].log())).sum().item()


def fit_form(d, gain, form: str) -> tuple[float, float]:
    """Least squares for gain = a·d − b·d² ("bon") or gain = a·d − b·d·log d ("rl"); (a, b)."""
    d, gain = torch.as_tensor(d, dtype=torch.float64), torch.as_tensor(gain, dtype=torch.float64)
    A = torch.stack([d, -_second(d, form)], 1)
    sol = torch.linalg.lstsq(A, gain.unsqueeze(1)).solution.squeeze(1)
    return sol[0].item(), sol[1].item()


def _second(d: torch.Tensor, form: str) -> torch.Tensor:
    return d ** 2 if form == "bon" else d * torch.log(d.clamp(min=1e-12))


def fitted(d, a: float, b: float, form: str) -> list[float]:
    """The fitted form's gain at each d."""
    d = torch.as_tensor(d, dtype=torch.float64)
    return (a * d - b * _second(d, form)).tolist()


def fitted_peak(a: float, b: float, form: str) -> float | None:
    """d at which the fitted gold curve peaks (None when it never turns down)."""
    if b <= 0:
        return None
    return a / (2 * b) if form == "bon" else math.exp(a / b - 1)


def _rms(values: list[float]) -> float | None:
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else None


def summarise(curve: list[dict], kl_key: str, form: str) -> dict:
    """The observed peak of a gold curve and the fitted functional form: its coefficients, its peak
    and whether that peak lies inside the measured range (`fit_peak_in_data`; beyond it the peak is
    an extrapolation), R², and the RMS residual up to the observed peak and after it (where the fit
    holds, and where not). `peaked`: the largest gold value is not the last point."""
    base = curve[0]["gold"]
    d = [math.sqrt(max(r[kl_key], 0.0)) for r in curve]
    gain = [r["gold"] - base for r in curve]
    peak = max(range(len(curve)), key=lambda i: curve[i]["gold"])
    a, b = fit_form(d, gain, form)
    pred = fitted(d, a, b, form)
    resid = [g - p for g, p in zip(gain, pred)]
    mean = sum(gain) / len(gain)
    total = sum((g - mean) ** 2 for g in gain)
    fit_peak = fitted_peak(a, b, form)
    return {"peak_index": peak, "peak_gold": curve[peak]["gold"], "peak_d": d[peak], "peaked": peak < len(curve) - 1,
            "final_gold": curve[-1]["gold"], "final_proxy": curve[-1]["proxy"], "final_d": d[-1], "d_max": max(d),
            "fit_a": a, "fit_b": b, "fit_peak_d": fit_peak,
            "fit_peak_in_data": fit_peak is not None and fit_peak <= max(d),
            "fit_r2": 1 - sum(r * r for r in resid) / total if total > 0 else None,
            "fit_rms_to_peak": _rms(resid[:peak + 1]), "fit_rms_after_peak": _rms(resid[peak + 1:])}


def best_of_n(sft, reward_models: dict, tok, prompts: list[str], n_max: int, seed: int, dtype=None) -> dict:
    """Best-of-n curves for each reward model in `reward_models` (name -> model), from ONE set of
    n_max SFT samples per prompt. For n < n_max the samples are split into n_max/n groups and
    every group counts (an average over groups lowers the noise). Each row: n, the picks' proxy and
    gold reward, the fraction of groups whose pick has the group's best gold (`pick_best_gold`), the
    analytic KL (`kl_bound`) and the exact KL over each prompt's pool (`kl_pool`)."""
    device = next(sft.parameters()).device
    flat = [p for p in prompts for _ in range(n_max)]
    ids = sample(sft, tok, flat, make_generator(seed, device), dtype=dtype)
    texts = [tok.decode_response(r) for r in ids]
    gold = torch.tensor([world.gold_reward(p, t) for p, t in zip(flat, texts)]).view(-1, n_max)
    logp = response_logps(sft, tok, flat, ids, dtype=dtype).logps.view(-1, n_max)
    out = {}
    for name, rm in reward_models.items():
        proxy = score(rm, tok, flat, ids, dtype=dtype).float().cpu().view(-1, n_max)
        rows, n = [], 1
        while n <= n_max:
            best = proxy.view(len(prompts), n_max // n, n).argmax(2, keepdim=True)
            pick = lambda t: t.view(len(prompts), n_max // n, n).gather(2, best).squeeze(2)  # noqa: E731
            best_gold = gold.view(len(prompts), n_max // n, n).max(2).values
            rows.append({"n": n, "proxy": pick(proxy).mean().item(), "gold": pick(gold).mean().item(),
                         "pick_best_gold": (pick(gold) >= best_gold).float().mean().item(),
                         "kl_bound": bon_kl_bound(n),
                         "kl_pool": sum(pool_kl(texts[i * n_max:(i + 1) * n_max], logp[i], proxy[i], n)
                                        for i in range(len(prompts))) / len(prompts)})
            n *= 2
        out[name] = rows
    return out


def pool_kl(texts: list[str], logp: torch.Tensor, proxy: torch.Tensor, n: int) -> float:
    """Exact KL(π_bon ‖ π) for π = the SFT policy restricted to one prompt's distinct candidates
    (their probabilities renormalised), best-of-n by the proxy."""
    first = [texts.index(t) for t in dict.fromkeys(texts)]
    return bon_exact_kl(torch.softmax(logp[first].double(), 0), proxy[first], n)


def rl_curve(history: list[dict], window: int = 10) -> list[dict]:
    """Moving averages of a REINFORCE history: proxy, gold and KL per step."""
    out = []
    for i in range(len(history)):
        w = history[max(0, i - window + 1):i + 1]
        mean = lambda k: sum(r[k] for r in w) / len(w)  # noqa: E731
        out.append({"step": history[i]["step"], "proxy": mean("proxy_reward"), "gold": mean("gold_reward"),
                    "kl": mean("kl_k1"), "fluency": mean("fluency"), "length": mean("length")})
    return out


def curve_points(curve: list[dict]) -> list[dict]:
    """An RL curve as points of a frontier (every RL_POINT_EVERY-th step and the last)."""
    keep = [r for r in curve if r["step"] % RL_POINT_EVERY == 0 or r is curve[-1]]
    return [{"kl_to_ref": r["kl"], "gold_reward": r["gold"], "fluency": r["fluency"]} for r in keep]


def _unit_files(folder, name) -> list:
    return [folder / f"{name}{suffix}" for suffix in (".pt", ".json", "_metrics.json")]


def bon_prompts(run, n: int) -> list[str]:
    """The first `n` prompts best-of-n is measured on: training films, drawn with the run's seed."""
    return [world.make_prompt(t) for t in random.Random(run.seed).sample(world.split_titles()[0], n)]


def _label_name(label: str) -> str:
    return f"rl_{label.replace(' ', '').replace(',', '_').replace('=', '').replace('β', 'beta')}"


def rl_unit(run, label: str, beta: float, rm_path, seed: int | None = None) -> list[dict]:
    """REINFORCE against the reward model at `rm_path` with KL coefficient `beta` and seed `seed`
    (default the run's; the run's other settings: without a leash the proxy is hacked well within
    its steps); a provenance unit of RUN/overoptimisation/ named after `label` and the seed, reused
    while unchanged. Returns its curve (`rl_curve`)."""
    seed = run.seed if seed is None else seed
    out_dir = run.out / "overoptimisation"
    name = _label_name(label) + ("" if seed == run.seed else f"_s{seed}")
    cfg = replace(run.settings(RLHFConfig, seed=seed), beta=beta)

    def go():
        train_rlhf(cfg, run.tok, run.path("sft.pt"), rm_path, out_dir, run.device, run.dtype, quiet=True,
                   out_name=name)
        (out_dir / f"{name}.pt").unlink()  # only its curve is read again
    run.cached(name, asdict(cfg), {"sft": run.path("sft.pt"), "reward_model": rm_path}, go,
               outputs=_unit_files(out_dir, name)[1:], code="rlhf", folder=out_dir)
    return rl_curve(read_json(out_dir / f"{name}_metrics.json")["history"])


def weak_reward_model(run, seed: int):
    """The weaker proxy of seed `seed`: the reward model's recipe on the first FRACTION of that
    seed's pairs, with that seed (a unit of RUN/overoptimisation/). Returns (its path, its held-out
    accuracy)."""
    out_dir, d = run.out / "overoptimisation", sweep.data(run, seed)
    name = f"reward_model_frac{FRACTION:g}" + ("" if seed == run.seed else f"_s{seed}")
    cfg = run.settings(RMConfig, seed=seed)
    inputs = {"sft": run.path("sft.pt"), "train_data": d.train, "val_data": d.val}
    n = int(FRACTION * len(read_preferences(d.train)[0]))
    run.cached(name, {**asdict(cfg), "max_train_pairs": n}, inputs, lambda: train_reward_model(
        cfg, run.tok, inputs["sft"], d.train, d.val, out_dir, run.device, run.dtype, quiet=True,
        max_train_pairs=n, out_name=name), outputs=_unit_files(out_dir, name), code="reward_model", folder=out_dir)
    return out_dir / f"{name}.pt", read_json(out_dir / f"{name}_metrics.json")["val_accuracy"]


def run_overoptimisation(run) -> dict:
    return run.study("overoptimisation", lambda: _overoptimisation(run))


def one_seed(run, seed: int) -> dict:
    """Best-of-n with both proxies and the three RL runs of one seed, with their summaries."""
    d = sweep.data(run, seed)
    weak_path, weak_acc = weak_reward_model(run, seed)
    full_acc = read_json(d.reward_model.with_name(d.reward_model.stem + "_metrics.json"))["val_accuracy"]
    rms = {"full": load_reward_model(d.reward_model, run.device, run.tok.vocab_size),
           WEAK: load_reward_model(weak_path, run.device, run.tok.vocab_size)}
    n_prompts, n_max = FAST_BON_SIZE if run.fast else BON_SIZE
    bon = best_of_n(run.load_policy("sft.pt"), rms, run.tok, bon_prompts(run, n_prompts), n_max,
                    seed + BON_SEED_OFFSET, run.dtype)
    rl = {label: rl_unit(run, label, beta, d.reward_model if which == "full" else weak_path, seed)
          for label, beta, which in RL_UNITS}
    return {"seed": seed, "reward_model_accuracy": {"full": full_acc, WEAK: weak_acc}, "best_of_n": bon,
            "best_of_n_summary": {k: summarise(v, "kl_bound", "bon") for k, v in bon.items()},
            "rl": {k: curve_points(v) for k, v in rl.items()}, "rl_curves": {k: v[::5] for k, v in rl.items()},
            "rl_start": {"gold_reward": rl["β=0, full RM"][0]["gold"], "fluency": rl["β=0, full RM"][0]["fluency"]},
            "rl_summary": {k: summarise(v, "kl", "rl") for k, v in rl.items()}}


def _overoptimisation(run) -> None:
    per_seed = []
    for seed in sweep.seeds(run):
        per_seed.append(one_seed(run, seed))
        s = per_seed[-1]
        for k, v in s["best_of_n_summary"].items():
            print(f"seed {seed} best-of-n, RM {k}: gold {s['best_of_n'][k][0]['gold']:+.3f} at n = 1 -> "
                  f"{v['final_gold']:+.3f} at n = {s['best_of_n'][k][-1]['n']} (largest at d = {v['peak_d']:.2f} of "
                  f"{v['d_max']:.2f}); fitted peak " + (f"d = {v['fit_peak_d']:.2f}" if v["fit_peak_d"] else "none"), flush=True)
        for k, v in s["rl_summary"].items():
            print(f"seed {seed} RL {k}: gold peaks at {v['peak_gold']:+.3f} (d = {v['peak_d']:.2f}), ends at "
                  f"{v['final_gold']:+.3f} (d = {v['final_d']:.2f}) while the proxy ends at {v['final_proxy']:+.3f}", flush=True)
    result = {"seeds": [s["seed"] for s in per_seed], "per_seed": per_seed, **compare_seeds(per_seed)}
    out_dir = run.out / "overoptimisation"
    write_json(out_dir / "overoptimisation.json", result)
    plots.overoptimisation_figure(result["per_seed"], out_dir / "overoptimisation.png")
    p = result["penalty"]
    print(f"β = 0.01 − β = 0 at KL {', '.join(f'{k:.2f}' for k in p['kl'])} on their frontiers: gold "
          f"{p['gold']['gap_mean']:+.3f} [{p['gold']['low']:+.3f}, {p['gold']['high']:+.3f}] ({p['gold']['verdict']})")


def compare_seeds(per_seed: list[dict]) -> dict:
    """The comparisons the lesson concludes from, paired by seed: the penalty (β = 0.01 against β = 0,
    on their frontiers at the largest KL both reach; each frontier starts at its own step-1 samples);
    the weaker proxy against the full one (best-of-n's gold at the largest n, RL's peak gold and d);
    best-of-n's gold at the largest n against n = 1 and against half that n."""
    by = lambda f: [f(s) for s in per_seed]  # noqa: E731
    # a seed's RL runs start from the SFT model: the frontiers start at their (shared) step-1 samples
    penalty = sweep.matched(by(lambda s: s["rl"]["β=0.01, full RM"]), by(lambda s: s["rl"]["β=0, full RM"]),
                            by(lambda s: s["rl_start"]))
    bon = lambda s, rm, i: s["best_of_n"][rm][i]["gold"]  # noqa: E731
    rl = lambda s, k, key: s["rl_summary"][k][key]  # noqa: E731
    weak_rl = f"β=0, {WEAK}"
    return {
        "penalty": penalty,
        "bon_last_vs_first": {"last": by(lambda s: bon(s, "full", -1)), "first": by(lambda s: bon(s, "full", 0))},
        "bon_last_vs_previous": {"last": by(lambda s: bon(s, "full", -1)), "previous": by(lambda s: bon(s, "full", -2))},
        "weak_vs_full": {
            "bon_gold": {"weak": by(lambda s: bon(s, WEAK, -1)), "full": by(lambda s: bon(s, "full", -1))},
            "rl_peak_gold": {"weak": by(lambda s: rl(s, weak_rl, "peak_gold")), "full": by(lambda s: rl(s, "β=0, full RM", "peak_gold"))},
            "rl_peak_d": {"weak": by(lambda s: rl(s, weak_rl, "peak_d")), "full": by(lambda s: rl(s, "β=0, full RM", "peak_d"))},
            "accuracy": {"weak": by(lambda s: s["reward_model_accuracy"][WEAK]), "full": by(lambda s: s["reward_model_accuracy"]["full"])}},
        "rl_final_vs_peak": {k: {"final": by(lambda s, k=k: rl(s, k, "final_gold")), "peak": by(lambda s, k=k: rl(s, k, "peak_gold"))}
                             for k, _, _ in RL_UNITS},
        "paired": {name: C.paired(*pair).as_dict() for name, pair in (
            ("bon_last_vs_first", (by(lambda s: bon(s, "full", -1)), by(lambda s: bon(s, "full", 0)))),
            ("bon_last_vs_previous", (by(lambda s: bon(s, "full", -1)), by(lambda s: bon(s, "full", -2)))))}}
