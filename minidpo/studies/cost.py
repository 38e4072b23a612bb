"""Is RL expensive? Every road from the SFT model to a tuned policy, measured in one run folder:
DPO against the RLHF roads (reward model + REINFORCE, PPO or GRPO). `python -m minidpo cost`."""
from __future__ import annotations

from ..checkpoint import load_checkpoint, read_json, write_json
from ..rlhf import first_step_reaching


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
    print_cost(rows)
    return rows


def print_cost(rows: dict) -> None:
    print("road                       | wall (s) | gold   | models held | params  | tokens fwd | tokens bwd | samples")
    for name, r in rows.items():
        print(f"{name:26s} | {r['wall_s']:8.1f} | {r['gold_reward']:+.3f} | {len(r['models']):11d} | "
              f"{r['params'] / 1e6:5.2f} M | {r['tokens_forward']:10.0f} | {r['tokens_backward']:10.0f} | "
              f"{r['samples_generated']}")


def _cost(run) -> None:
    write_json(run.out / "cost.json", road_rows(run))


def road_rows(run, roads=None) -> dict:
    """The cost table's rows for `roads` (names of ROADS; default all), from the stages' metrics and
    provenance records in the run folder (each road's stages must have run). An RL road that reaches
    DPO's gold reward adds the row "<road> to DPO's gold", cut at that step."""
    params = sum(v.numel() for k, v in load_checkpoint(run.path("sft.pt"))[0].items() if k != "lm_head.weight")
    rm_params = sum(v.numel() for k, v in load_checkpoint(run.path("reward_model.pt"))[0].items()
                    if k not in ("backbone.lm_head.weight", "shift", "scale"))
    size = {"policy": params, "reference": params, "reward model": rm_params,
            "value model": rm_params}  # a GPT backbone and a scalar head, like the reward model
    rm, rm_seconds = read_json(run.path("reward_model_metrics.json")), run.record("reward_model")["seconds"]
    dpo_gold = read_json(run.path("eval_dpo.json"))["gold_reward"]
    rows = {}
    for road in roads or ROADS:
        stage, models = ROADS[road]
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
    return rows
