"""Rung 5 of the bridge: the default toy-world run, on three seeds, its two roads read at matched KL.

The roads as the pipeline runs them, each seed on its own pairs and reward model (the Figure 2
study's data units, `frontier.data_unit`; seed = the run's seed is the pipeline's own files):
  DPO     the DPO stage's settings (β 0.5, 2 epochs over the seed's offline pairs);
  RLHF    REINFORCE with the RLHF stage's settings: β 0.05 on the normalised reward model and its
          budget, 150 steps of 16 prompts × 4 on-policy samples (9,600 samples);
trained and evaluated along training by the Figure 2 study's own units (`frontier.collect`), so units
that study already trained are reused (its DPO β = 0.5 units are these). Beside them, online DPO
labelled by the same reward model: as many labelled pairs as offline DPO, in rounds, each round's
pairs sampled from the current policy (`online_dpo.online_round`) — on-policy data with no more
information than RLHF has (a gold label would be more).

How they are read is the bridge's (`bridge.matched`): each road's hull (its points along training
and the SFT model) at the largest KL both reach in every seed, paired by seed. This module returns
the points. It also measures the default run's own two policies (seed 0, `dpo.pt` and `rlhf.pt`),
because no response set can be enumerated here: their distance TV(π_DPO, π_RLHF) =
E_{y∼π_DPO}[(1 − π_RLHF(y|x)/π_DPO(y|x))₊], estimated from samples of each on the held-out films
(both directions, averaged), with its standard error; and the mass each puts on responses the
training pairs do not hold for that prompt, from samples on the training prompts.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import replace

import torch

from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig, pair_logps
from ..evaluate import response_logps, summary_row
from ..preferences import PrefsConfig, encode_pairs, read_preferences
from ..reward_model import load_reward_model, score
from ..rlhf import RLHFConfig
from ..sampling import make_generator, sample
from . import frontier as F
from .online_dpo import online_round

ROUNDS, FAST_ROUNDS = 4, 2
DISTANCE_SEED_OFFSET = 300   # the samples that estimate the distance between the default run's roads
ONLINE_SEED_OFFSET = 1000    # round r of seed s samples its pairs with seed s + 1000 + r (as online_dpo)


def folder(run):
    return run.out / "bridge" / "units"


def pipeline_budget(run) -> int:
    """The RLHF stage's sample budget in this run: steps × prompts per step × samples per prompt."""
    cfg = run.settings(RLHFConfig)
    return cfg.steps * cfg.prompts_per_step * cfg.k


def methods(run) -> dict:
    """The two roads as Figure 2 study methods, at the stages' own β and budgets."""
    dpo_beta, rl_beta = run.settings(DPOConfig).beta, run.settings(RLHFConfig).beta
    return {"dpo": replace(F.METHODS["dpo"], grid=({"beta": dpo_beta},), fast_grid=({"beta": dpo_beta},)),
            "reinforce_pipeline": F.Method("reinforce_pipeline", "REINFORCE (the pipeline's budget)", "rlhf", {},
                                           ({"beta": rl_beta},), ({"beta": rl_beta},), samples=pipeline_budget(run))}


def online_unit(run, data: F.Data) -> list[dict]:
    """Online DPO labelled by the seed's reward model (Bradley–Terry on its score), as many pairs in
    all as the seed's offline file, in ROUNDS rounds; evaluated after each round. A cached unit."""
    rounds = FAST_ROUNDS if run.fast else ROUNDS
    cfg = run.settings(DPOConfig, seed=data.seed)
    name = f"online_dpo_reward_model_{data.tag}"
    out = folder(run) / f"{name}.json"
    inputs = {"sft": run.path("sft.pt"), "train_data": data.train, "val_data": data.val,
              "reward_model": data.reward_model}

    def go():
        tok, sft = run.tok, run.load_policy("sft.pt")
        per_round = len(read_preferences(data.train)[0]) // rounds
        val_enc, _ = encode_pairs(tok, read_preferences(data.val)[0], sft.config.block_size)
        val = (val_enc, pair_logps(sft, val_enc, tok.end_id, cfg.average_logps, dtype=run.dtype))
        rm = load_reward_model(data.reward_model, run.device, tok.vocab_size)
        titles, rng, policy, points = world.split_titles()[0], random.Random(data.seed), copy.deepcopy(sft), []
        for r in range(rounds):
            prompts = [world.make_prompt(rng.choice(titles)) for _ in range(per_round)]
            online_round(policy, sft, tok, prompts, replace(cfg, seed=data.seed + r), val,
                         data.seed + ONLINE_SEED_OFFSET + r,
                         lambda p, ids: score(rm, tok, p, ids, dtype=run.dtype), run.dtype)
            s = summary_row(run.evaluate(policy, sft))
            points.append({"round": r + 1, "labelled_pairs": (r + 1) * per_round, **{k: s[k] for k in F.POINT_KEYS}})
        write_json(out, {"seed": data.seed, "points": points})
    run.cached(name, {**cfg.key(), "rounds": rounds, **run.eval_config()}, inputs, go, outputs=[out],
               code="studies.bridge_toy", folder=folder(run), announce=False)
    return read_json(out)["points"]


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
    roads = methods(run)
    points = F.collect(run, "bridge", [(name, "bt", repeats) for name in roads], roads)
    seeds = F.seeds(run)
    path = lambda method, seed: [(p["kl_to_ref"], p["gold_reward"]) for p in points  # noqa: E731
                                 if p["method"] == method and p["seed"] == seed]
    data = [F.data_unit(run, "bt", repeats, s)[0] for s in seeds]
    online = [online_unit(run, d) for d in data]
    sft = read_json(run.path("eval_sft.json"))
    budgets = F.budgets(run, roads)
    return {"seeds": seeds, "start_gold": sft["gold_reward"],
            "paths": {"dpo": [path("dpo", s) for s in seeds], "rlhf": [path("reinforce_pipeline", s) for s in seeds],
                      "online_dpo": [[(p["kl_to_ref"], p["gold_reward"]) for p in o] for o in online]},
            "final": {"dpo": [path("dpo", s)[-1] for s in seeds], "rlhf": [path("reinforce_pipeline", s)[-1] for s in seeds],
                      "online_dpo": [[o[-1]["kl_to_ref"], o[-1]["gold_reward"]] for o in online]},
            "budgets": {"dpo": budgets["dpo"], "rlhf": budgets["reinforce_pipeline"],
                        "online_dpo": {"rounds": FAST_ROUNDS if run.fast else ROUNDS, "labels": "the seed's reward model"}},
            "default_run": default_run_roads(run)}
