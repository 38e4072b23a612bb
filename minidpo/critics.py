"""What the critics say, measured: diversity against β, the cost of RL, and DPO's own failure modes.
(Reward over-optimisation and online DPO have modules of their own.)"""
from __future__ import annotations

from collections import Counter

from . import plots, sweep, world
from .checkpoint import read_json, write_json
from .dpo import DPOConfig
from .evaluate import summary_row
from .rlhf import first_step_reaching

DIVERSITY_BETAS = {"dpo": (0.1, 0.5, 2.0), "rlhf": (0.0, 0.05, 0.2)}
FAST_DIVERSITY_BETAS = {"dpo": (0.1, 2.0), "rlhf": (0.0, 0.2)}


def run_diversity(run) -> list[dict]:
    """For several β, both methods: gold reward, per-token entropy, fraction of unique responses."""
    return run.study("diversity", lambda: _diversity(run))["points"]


def _diversity(run) -> None:
    points = []
    for method, betas in (FAST_DIVERSITY_BETAS if run.fast else DIVERSITY_BETAS).items():
        for beta in betas:
            s = sweep.evaluate(run, sweep.trained(run, method, beta))
            points.append({"method": method, "beta": beta, **s})
            print(f"{method} β={beta}: gold {s['gold_reward']:+.3f}, entropy {s['entropy']:.3f} nats/token, "
                  f"unique {s['unique_frac']:.3f}, distinct-2 {s['distinct_2']:.3f}, KL {s['kl_to_ref']:.2f}", flush=True)
    sft = read_json(run.path("eval_sft.json"))
    out = run.out / "diversity"
    write_json(out / "diversity.json", {"points": points, "sft": {k: sft[k] for k in ("gold_reward", "unique_frac",
                                                                                      "distinct_2")}})
    plots.diversity_figure(points, out / "diversity.png")


ROADS = {  # road -> (its training stage, the models it holds in memory while it trains)
    "dpo": ("dpo", ("policy",)),  # the reference runs once, before training, and is dropped
    "rlhf (REINFORCE)": ("rlhf", ("policy", "reference", "reward model")),
    "ppo": ("ppo", ("policy", "reference", "reward model", "value model")),
    "grpo": ("grpo", ("policy", "reference", "reward model")),
}


def cost_table(run) -> dict:
    """Every road from the SFT model to a tuned policy, measured in one run folder: DPO (reference
    pass + training) against the three RLHF roads (reward model + REINFORCE, PPO or GRPO): wall
    time, the models held in memory while training and their parameters, tokens through forward
    and backward passes, samples generated, and, for each RL road, the point where its training
    samples first reach DPO's final gold reward (10-step mean). Wall times and peak memory come
    from the stages' provenance records (when they were computed)."""
    rows = run.study("cost", lambda: _cost(run))
    print("road                       | wall (s) | gold   | models held | params  | tokens fwd | tokens bwd | samples")
    for name, r in rows.items():
        print(f"{name:26s} | {r['wall_s']:8.1f} | {r['gold_reward']:+.3f} | {len(r['models']):11d} | "
              f"{r['params'] / 1e6:5.2f} M | {r['tokens_forward']:10.0f} | {r['tokens_backward']:10.0f} | "
              f"{r['samples_generated']}")
    return rows


def _cost(run) -> None:
    from .checkpoint import load_checkpoint
    params = sum(v.numel() for k, v in load_checkpoint(run.path("sft.pt"))[0].items() if k != "lm_head.weight")
    rm_params = sum(v.numel() for k, v in load_checkpoint(run.path("reward_model.pt"))[0].items()
                    if k not in ("backbone.lm_head.weight", "shift", "scale"))
    size = {"policy": params, "reference": params, "reward model": rm_params,
            "value model": rm_params}  # a GPT backbone and a scalar head, like the reward model
    rm, rm_seconds = read_json(run.path("reward_model_metrics.json")), run.record("reward_model")["seconds"]
    dpo_gold = read_json(run.path("eval_dpo.json"))["gold_reward"]
    rows = {}
    for road, (stage, models) in ROADS.items():
        m, rec = read_json(run.path(f"{stage}_metrics.json")), run.record(stage)
        rl = stage != "dpo"
        row = {"wall_s": rec["seconds"] + (rm_seconds if rl else 0.0),
               "gold_reward": read_json(run.path(f"eval_{stage}.json"))["gold_reward"],
               "models": list(models), "params": sum(size[x] for x in models),
               "tokens_forward": m["tokens_forward"] + m.get("tokens_generated", 0) + (rm["tokens_forward"] if rl else 0),
               "tokens_backward": m["tokens_backward"] + (rm["tokens_backward"] if rl else 0),
               "samples_generated": m.get("samples_generated", 0) + (rm["samples_generated"] if rl else 0),
               "peak_memory_mb": rec.get("peak_memory_mb")}
        rows[road] = row
        i = first_step_reaching(m["history"], dpo_gold) if rl else None
        if i is not None:  # this road, cut where its own samples first reach DPO's gold reward
            frac, h = i / len(m["history"]), m["history"]
            rows[f"{road} to DPO's gold"] = {
                **row, "wall_s": rm_seconds + h[i - 1]["seconds"], "gold_reward": dpo_gold, "step": i,
                "tokens_forward": rm["tokens_forward"] + frac * (m["tokens_forward"] + m["tokens_generated"]),
                "tokens_backward": rm["tokens_backward"] + frac * m["tokens_backward"],
                "samples_generated": int(frac * m["samples_generated"]) + rm["samples_generated"]}
    write_json(run.out / "cost.json", rows)


REMEDIES = {  # name -> DPO settings changed from the default (β = 0.5, sigmoid loss)
    "DPO (default)": {},
    "larger β (2.0)": {"beta": 2.0},
    "conservative DPO (ε = 0.2)": {"label_smoothing": 0.2},
    "IPO (β = 0.1)": {"loss_type": "ipo", "beta": 0.1},
    "RPO: + NLL on chosen (α = 1)": {"loss_type": "rpo"},
}


def run_failure_modes(run) -> dict:
    """Both log-probs fall during DPO; where does the freed probability go? And which remedy helps?"""
    return run.study("failure_modes", lambda: _failure_modes(run))


def _failure_modes(run) -> None:
    base_beta = DPOConfig().beta
    table, histories, samples = {}, {}, {}
    for name, change in REMEDIES.items():
        beta = change.get("beta", base_beta)
        overrides = {k: v for k, v in change.items() if k != "beta"}
        final = sweep.trained(run, "dpo", beta, **overrides)
        metrics = read_json(final.with_name(final.stem + "_metrics.json"))
        histories[name] = metrics["history"]
        ev = run.evaluate(run.load_policy(final))
        first, last = metrics["history"][0], metrics["history"][-1]
        table[name] = {**summary_row(ev), "logps_chosen_change": last["eval/logps/chosen"] - first["eval/logps/chosen"],
                       "logps_rejected_change": last["eval/logps/rejected"] - first["eval/logps/rejected"],
                       "heldout_accuracy": last["eval/rewards/accuracies"]}
        samples[name] = ev["samples"]
        r = table[name]
        print(f"{name:30s} gold {r['gold_reward']:+.3f} | win {r['win_rate_vs_sft']:.3f} | fluency {r['fluency']:.3f} | "
              f"KL {r['kl_to_ref']:.2f} | Δlogp chosen {r['logps_chosen_change']:+.2f}, rejected {r['logps_rejected_change']:+.2f}",
              flush=True)
    # where the freed mass went: what the default DPO policy now writes that the grammar rejects
    reasons = Counter()
    broken = []
    for s in samples["DPO (default)"]:
        b = world.reward_breakdown(s["prompt"], s["response"])
        for k in world.GRAMMAR_FAILURES + ("reused_word",):
            if b[k]:
                reasons[k] += 1
        if not world.is_fluent(s["prompt"], s["response"]) and len(broken) < 8:
            broken.append(s)
    sft = read_json(run.path("eval_sft.json"))
    sft_reasons = Counter(k for s in sft["samples"] for k, v in world.reward_breakdown(s["prompt"], s["response"]).items()
                          if k in world.GRAMMAR_FAILURES + ("reused_word",) and v)
    result = {"remedies": table, "failure_reasons_dpo": dict(reasons), "failure_reasons_sft": dict(sft_reasons),
              "examples_not_fluent": broken, "n_samples": len(samples["DPO (default)"])}
    out = run.out / "failure_modes"
    write_json(out / "failure_modes.json", result)
    plots.failure_modes_figure(histories, out / "failure_modes.png")
    print(f"samples with each problem, SFT -> DPO (of {result['n_samples']}): " +
          ", ".join(f"{k} {sft_reasons.get(k, 0)} -> {reasons.get(k, 0)}" for k in
                    world.GRAMMAR_FAILURES + ("reused_word",)))
