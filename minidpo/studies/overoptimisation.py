"""Reward over-optimisation, after Gao, Schulman & Hilton (2022), in our world.

The learned reward model is only a proxy for the gold reward, trained on SFT samples. Optimise it
hard and the policy drifts to text the reward model never saw: the proxy keeps rising while the gold
reward peaks and falls. Two ways to push, each measured against d = √KL(π ‖ π_ref):

  best-of-n   sample n responses from the SFT model, keep the one the reward model likes best.
              KL(π_bon ‖ π_ref) ≤ log n − (n−1)/n (equality for a continuous reward; the analytic
              value Gao et al. use), and a sampled estimate: the selected sample y of a prompt has
              density ratio π_bon(y)/π(y) = n·F(y)^(n−1), F = the CDF of the proxy under π,
              estimated from the prompt's samples (so it is only trustworthy for n well below
              their number: at n = all samples the estimate is log n, above the bound).
              Fitted form: gold(d) − gold(0) = d·(α − β·d).
  RL          REINFORCE on the proxy with β = 0 (no KL leash) and a small β, tracked step by step.
              Fitted form: gold(d) − gold(0) = d·(α − β·log d).

Repeated with a reward model trained on a fraction of the pairs: a worse proxy, an earlier peak.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, replace

import torch

from ..harness import plots
from .. import world
from ..checkpoint import read_json, write_json
from ..preferences import read_preferences
from ..reward_model import RMConfig, load_reward_model, score, train_reward_model
from ..rlhf import RLHFConfig, train_rlhf
from ..sampling import make_generator, sample


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
    """Least squares for gain = α·d − β·d² ("bon") or gain = α·d − β·d·log d ("rl"); (α, β)."""
    d, gain = torch.as_tensor(d, dtype=torch.float64), torch.as_tensor(gain, dtype=torch.float64)
    second = d ** 2 if form == "bon" else d * torch.log(d.clamp(min=1e-12))
    A = torch.stack([d, -second], 1)
    sol = torch.linalg.lstsq(A, gain.unsqueeze(1)).solution.squeeze(1)
    return sol[0].item(), sol[1].item()


def fitted_peak(alpha: float, beta: float, form: str) -> float | None:
    """d at which the fitted gold curve peaks (None when it never turns down)."""
    if beta <= 0:
        return None
    return alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)


def best_of_n(sft, reward_models: dict, tok, prompts: list[str], n_max: int, seed: int, dtype=None) -> dict:
    """Best-of-n curves for each reward model in `reward_models` (name -> model), from ONE set of
    n_max SFT samples per prompt. For n < n_max the samples are split into n_max/n groups and
    every group counts (an average over groups lowers the noise)."""
    device = next(sft.parameters()).device
    flat = [p for p in prompts for _ in range(n_max)]
    ids = sample(sft, tok, flat, make_generator(seed, device), dtype=dtype)
    gold = torch.tensor([world.gold_reward(p, tok.decode_response(r)) for p, r in zip(flat, ids)]).view(-1, n_max)
    out = {}
    for name, rm in reward_models.items():
        proxy = score(rm, tok, flat, ids, dtype=dtype).view(-1, n_max)
        # empirical CDF of each sample's proxy within its prompt's n_max samples
        cdf = (proxy.unsqueeze(2) >= proxy.unsqueeze(1)).float().mean(2)
        rows, n = [], 1
        while n <= n_max:
            g = proxy.view(len(prompts), n_max // n, n)
            best = g.argmax(2, keepdim=True)
            pick = lambda t: t.view(len(prompts), n_max // n, n).gather(2, best).squeeze(2)
            sampled_kl = (math.log(n) + (n - 1) * pick(cdf).log()).mean().item()
            rows.append({"n": n, "proxy": pick(proxy).mean().item(), "gold": pick(gold).mean().item(),
                         "kl_bound": bon_kl_bound(n), "kl_sampled": sampled_kl})
            n *= 2
        out[name] = rows
    return out


def rl_curve(history: list[dict], window: int = 10) -> list[dict]:
    """Moving averages of a REINFORCE history: proxy, gold and KL per step."""
    out = []
    for i in range(len(history)):
        w = history[max(0, i - window + 1):i + 1]
        mean = lambda k: sum(r[k] for r in w) / len(w)
        out.append({"step": history[i]["step"], "proxy": mean("proxy_reward"), "gold": mean("gold_reward"),
                    "kl": mean("kl_k1"), "fluency": mean("fluency"), "length": mean("length")})
    return out


def summarise(curve: list[dict], kl_key: str, form: str) -> dict:
    """Empirical peak of the gold curve and the fitted functional form."""
    base = curve[0]["gold"]
    d = [math.sqrt(max(r[kl_key], 0.0)) for r in curve]
    gain = [r["gold"] - base for r in curve]
    peak = max(range(len(curve)), key=lambda i: curve[i]["gold"])
    alpha, beta = fit_form(d, gain, form)
    return {"peak_index": peak, "peak_gold": curve[peak]["gold"], "peak_d": d[peak],
            "final_gold": curve[-1]["gold"], "final_proxy": curve[-1]["proxy"], "final_d": d[-1],
            "fit_alpha": alpha, "fit_beta": beta, "fit_peak_d": fitted_peak(alpha, beta, form)}


def _unit_files(folder, name) -> list:
    return [folder / f"{name}{suffix}" for suffix in (".pt", ".json", "_metrics.json")]


BON_SEED_OFFSET = 5  # best-of-n samples its candidates with the run's seed + 5


def bon_prompts(run, n: int) -> list[str]:
    """The first `n` prompts best-of-n is measured on: training films, drawn with the run's seed."""
    return [world.make_prompt(t) for t in random.Random(run.seed).sample(world.split_titles()[0], n)]


def rl_unit(run, label: str, beta: float, rm_path) -> list[dict]:
    """REINFORCE against the reward model at `rm_path` with KL coefficient `beta` (the run's other
    settings: its steps are enough, without a leash the proxy is hacked well within them); a
    provenance unit of RUN/overoptimisation/ named after `label`, reused while unchanged. Returns
    its curve (`rl_curve`)."""
    out_dir = run.out / "overoptimisation"
    name = f"rl_{label.replace(' ', '').replace(',', '_').replace('=', '').replace('β', 'beta')}"
    cfg = replace(run.settings(RLHFConfig), beta=beta)
    run.cached(name, asdict(cfg), {"sft": run.path("sft.pt"), "reward_model": rm_path},
               lambda: train_rlhf(cfg, run.tok, run.path("sft.pt"), rm_path, out_dir, run.device, run.dtype,
                                  quiet=True, out_name=name),
               outputs=_unit_files(out_dir, name), code="rlhf", folder=out_dir)
    return rl_curve(read_json(out_dir / f"{name}_metrics.json")["history"])


def run_overoptimisation(run) -> dict:
    return run.study("overoptimisation", lambda: _overoptimisation(run))


def _overoptimisation(run, fraction: float = 0.5) -> None:
    out_dir = run.out / "overoptimisation"
    # a second, weaker proxy: the same recipe on the first `fraction` of the pairs
    small_name = f"reward_model_frac{fraction:g}"
    small = out_dir / f"{small_name}.pt"
    cfg = run.settings(RMConfig)
    inputs = run.inputs("reward_model")
    n = int(fraction * len(read_preferences(inputs["train_data"])[0]))
    # each training inside the study is a provenance unit of its own: a killed study resumes
    run.cached(small_name, {**asdict(cfg), "max_train_pairs": n}, inputs, lambda: train_reward_model(
        cfg, run.tok, inputs["sft"], inputs["train_data"], inputs["val_data"], out_dir, run.device, run.dtype,
        quiet=True, max_train_pairs=n, out_name=small_name), outputs=_unit_files(out_dir, small_name),
        code="reward_model", folder=out_dir)
    rms = {"full": load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size),
           f"{fraction:g} of pairs": load_reward_model(small, run.device, run.tok.vocab_size)}
    accuracy = {"full": read_json(run.path("reward_model_metrics.json"))["val_accuracy"],
                f"{fraction:g} of pairs": read_json(out_dir / f"{small_name}_metrics.json")["val_accuracy"]}
    sft = run.load_policy("sft.pt")
    n_prompts, n_max = (8, 64) if run.fast else (32, 256)
    bon = best_of_n(sft, rms, run.tok, bon_prompts(run, n_prompts), n_max, run.seed + BON_SEED_OFFSET, run.dtype)

    rl = {}
    for label, beta, rm_path in (("β=0, full RM", 0.0, run.path("reward_model.pt")),
                                 ("β=0.01, full RM", 0.01, run.path("reward_model.pt")),
                                 (f"β=0, RM on {fraction:g} of pairs", 0.0, small)):
        rl[label] = rl_unit(run, label, beta, rm_path)
    result = {"reward_model_accuracy": accuracy, "best_of_n": bon,
              "best_of_n_summary": {k: summarise([{**r, "kl": r["kl_bound"]} for r in v], "kl", "bon")
                                    for k, v in bon.items()},
              "rl": rl, "rl_summary": {k: summarise(v, "kl", "rl") for k, v in rl.items()}}
    write_json(out_dir / "overoptimisation.json", result)
    plots.overoptimisation_figure(result, out_dir / "overoptimisation.png")
    for k, s in result["best_of_n_summary"].items():
        print(f"best-of-n, RM {k}: gold peaks at {s['peak_gold']:+.3f} (d = {s['peak_d']:.2f}); at n = {n_max} "
              f"gold {s['final_gold']:+.3f}, proxy {s['final_proxy']:+.3f}; fit α={s['fit_alpha']:.3f} β={s['fit_beta']:.3f}")
    for k, s in result["rl_summary"].items():
        print(f"RL {k}: gold peaks at {s['peak_gold']:+.3f} (d = {s['peak_d']:.2f}), ends at {s['final_gold']:+.3f} "
              f"(d = {s['final_d']:.2f}) while the proxy ends at {s['final_proxy']:+.3f}")
