"""Rung 5 of the bridge: the default toy-world run, on three seeds, its two roads read at matched KL.

Every trained policy of this rung is a unit another study already computes (so the bridge trains
none of its own when those studies have run), each seed on its own pairs and reward model (the
Figure 2 study's data units, `units.data_unit`; seed = the run's seed is the pipeline's own files):
  DPO         the Figure 2 study's DPO unit at the DPO stage's β 0.5 (2 epochs over the offline pairs);
  RLHF        the PPO-vs-REINFORCE study's "reinforce_pipeline" unit: REINFORCE with the RLHF stage's
              settings (β 0.05 on the normalised reward model, 16 prompts × 4 on-policy samples per
              step) for the Figure 2 study's sample budget (2,560 responses; the pipeline spends 9,600);
  online DPO  the online-DPO study's unit labelled by the seed's reward model: as many labelled pairs
              as offline DPO, in rounds, each round's pairs sampled from the current policy — on-policy
              data with no more information than RLHF has (a gold label would be more).
All are evaluated along training on the held-out films (`units.collect`, `online_dpo.online_unit`).

How they are read is the bridge's (`bridge.matched`): each road's hull (its points along training
and the SFT model) at the largest KL both reach in every seed, paired by seed. This module returns
the points. It also measures the default run's own two policies (seed 0, `dpo.pt` and `rlhf.pt`),
because no response set can be enumerated here: their distance TV(π_DPO, π_RLHF) =
E_{y∼π_DPO}[(1 − π_RLHF(y|x)/π_DPO(y|x))₊], estimated from samples of each on the held-out films
(both directions, averaged), with its standard error; and the mass each puts on responses the
training pairs do not hold for that prompt, from samples on the training prompts.
"""
from __future__ import annotations

import math
import random
from dataclasses import replace

import torch

from ..checkpoint import read_json, write_json
from ..evaluate import response_logps
from ..preferences import PrefsConfig, read_preferences
from ..sampling import make_generator, sample
from . import frontier as F, online_dpo, ppo_vs_reinforce as PVR, units as U

DPO_BETA = 0.5               # the DPO stage's β: one of the Figure 2 study's DPO grid points
DISTANCE_SEED_OFFSET = 300   # the samples that estimate the distance between the default run's roads


def folder(run):
    return run.out / "bridge" / "units"


def methods() -> dict:
    """The two roads as the other studies define their units (so their units are these): the Figure
    2 study's DPO at the DPO stage's β, and PPO-vs-REINFORCE's REINFORCE at the pipeline's settings."""
    dpo = F.METHODS["dpo"]
    return {"dpo": replace(dpo, grid=({"beta": DPO_BETA},), fast_grid=({"beta": DPO_BETA},)),
            "reinforce_pipeline": PVR.METHODS["reinforce_pipeline"]}


@torch.no_grad()
def roads_distance(run, dpo, rlhf) -> dict:
    """TV and KL between two policies of the toy world, estimated from samples of each on the
    held-out films (see the module docstring), with standard errors."""
    prompts, tok, out = run.eval_prompts(), run.tok, {}
    g = make_generator(run.seed + DISTANCE_SEED_OFFSET, run.device)
    for name, p, q in (("dpo", dpo, rlhf), ("rlhf", rlhf, dpo)):
        ids = sample(p, tok, prompts, g, dtype=run.dtype)
        log_ratio = (response_logps(q, tok, prompts, ids, dtype=run.dtype).logps
                     - response_logps(p, tok, prompts, ids, dtype=run.dtype).logps)  # log q/p at y ~ p
        excess = (1 - log_ratio.exp()).clamp(min=0)
        out[name] = {"tv": excess.mean().item(), "tv_se": (excess.std() / math.sqrt(len(ids))).item(),
                     "kl": (-log_ratio).mean().item(), "kl_se": (log_ratio.std() / math.sqrt(len(ids))).item()}
    return {"tv_dpo_rlhf": (out["dpo"]["tv"] + out["rlhf"]["tv"]) / 2,
            "tv_dpo_rlhf_se": math.hypot(out["dpo"]["tv_se"], out["rlhf"]["tv_se"]) / 2,
            "kl_dpo_rlhf": out["dpo"]["kl"], "kl_dpo_rlhf_se": out["dpo"]["kl_se"], "samples_each": len(prompts),
            "by_direction": out}


@torch.no_grad()
def unseen_mass(run, policies: dict, n: int) -> dict:
    """For each policy: the fraction of its samples, on n prompts of the training pairs, that no pair
    of that prompt holds (an estimate of the mass on responses no pair mentions), and its standard error."""
    pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
    held: dict[str, set] = {}
    for p in pairs:
        held.setdefault(p["prompt"], set()).update((p["chosen"], p["rejected"]))
    prompts = random.Random(run.seed).choices(sorted(held), k=n)
    out = {}
    for i, (name, policy) in enumerate(policies.items()):
        ids = sample(policy, run.tok, prompts, make_generator(run.seed + DISTANCE_SEED_OFFSET + 1 + i, run.device),
                     dtype=run.dtype)
        unseen = sum(run.tok.decode_response(y) not in held[x] for x, y in zip(prompts, ids)) / n
        out[name] = {"mass": unseen, "se": math.sqrt(unseen * (1 - unseen) / n)}
    return out


def default_run_roads(run) -> dict:
    """The default run's own DPO and RLHF policies (the run's seed): their distance and unseen mass.
    A cached unit (it reads dpo.pt, rlhf.pt, sft.pt and the training pairs)."""
    name, out = "default_run_roads", folder(run) / "default_run_roads.json"
    inputs = {"sft": run.path("sft.pt"), "dpo": run.path("dpo.pt"), "rlhf": run.path("rlhf.pt"),
              "train_data": run.path("prefs_train.jsonl")}

    def go():
        sft, dpo, rlhf = (run.load_policy(f"{m}.pt") for m in ("sft", "dpo", "rlhf"))
        write_json(out, {**roads_distance(run, dpo, rlhf), "seed": run.seed,
                         "unseen_mass": unseen_mass(run, {"dpo": dpo, "rlhf": rlhf, "ref": sft}, len(run.eval_prompts()))})
    run.cached(name, {"offset": DISTANCE_SEED_OFFSET, **run.eval_config()}, inputs, go, outputs=[out],
               code="studies.bridge_toy", folder=folder(run), announce=False)
    return read_json(out)


def rung5_toy_world(run) -> dict:
    """The rung's points: per road, one list of (KL, gold) per seed, the SFT model's gold, and the
    default run's own pair of policies measured (`default_run_roads`)."""
    repeats = run.settings(PrefsConfig).train_repeats
    roads, seeds = methods(), U.seeds(run)
    points = U.collect(run, "bridge", [(name, "bt", repeats) for name in roads], roads, seed_list=seeds)
    path = lambda method, seed: [(p["kl_to_ref"], p["gold_reward"]) for p in points  # noqa: E731
                                 if p["method"] == method and p["seed"] == seed]
    online = [online_dpo.online_unit(run, "reward model", s) for s in seeds]
    sft = read_json(run.path("eval_sft.json"))
    budgets = U.budgets(run, roads)
    return {"seeds": seeds, "start_gold": sft["gold_reward"],
            "paths": {"dpo": [path("dpo", s) for s in seeds], "rlhf": [path("reinforce_pipeline", s) for s in seeds],
                      "online_dpo": [[(p["kl_to_ref"], p["gold_reward"]) for p in o] for o in online]},
            "final": {"dpo": [path("dpo", s)[-1] for s in seeds], "rlhf": [path("reinforce_pipeline", s)[-1] for s in seeds],
                      "online_dpo": [[o[-1]["kl_to_ref"], o[-1]["gold_reward"]] for o in online]},
            "budgets": {"dpo": budgets["dpo"], "rlhf": budgets["reinforce_pipeline"],
                        "online_dpo": {"rounds": online_dpo.rounds(run), "labels": "the seed's reward model"}},
            "default_run": default_run_roads(run)}
