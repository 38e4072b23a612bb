"""Online (iterative) DPO: the answer to "the dataset is fixed".

Offline DPO learns from pairs sampled once from the SFT model; whatever the policy starts to write
later (its new mistakes included) is never labelled. Online DPO works in rounds:

  1. sample two responses per prompt from the CURRENT policy (temperature 1, on-policy);
  2. label each pair by Bradley–Terry, on the gold reward (a human) or on the reward model (no human);
  3. score the new pairs once with the reference (the SFT model, or the round's starting policy
     with `refresh_reference`), and run a DPO pass on them.

It uses as many labelled pairs as offline DPO, in ROUNDS rounds, and the DPO stage's epochs over each
round's pairs. Every seed of `sweep.seeds` runs both label sources (seed s: its prompts, samples and
training order, and seed s's reward model) and offline DPO on seed s's pairs, evaluated along
training (`sweep.along_training`). Online DPO after each round and offline DPO at its checkpoints
are points of one frontier each; the two are compared at the same KL, paired by seed
(`sweep.matched`): at the end of training they sit at different KL, and a policy that moved less
cannot be credited or blamed for it.
"""
from __future__ import annotations

import copy
import random
from dataclasses import replace

from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig, pair_logps, run_dpo
from ..evaluate import summary_row
from ..harness import compare as C, plots
from ..preferences import encode_pairs, make_pairs, read_preferences
from ..reward_model import load_reward_model, score
from . import sweep

LABEL_SOURCES = ("gold", "reward model")
ROUNDS, FAST_ROUNDS = 4, 2
ROUND_SEED_OFFSET = 1000  # round r of seed s samples its pairs with seed s + 1000 + r


def online_round(policy, ref, tok, prompts: list[str], cfg: DPOConfig, val, seed: int, scorer=None,
                 dtype=None, quiet: bool = True) -> tuple[list[dict], dict]:
    """One round: fresh pairs from `policy`, labelled (gold, or `scorer`), then a DPO pass that
    updates `policy` in place. `val` = (encoded held-out pairs, their reference log-probs)."""
    pairs, counts = make_pairs(policy, tok, prompts, 2, seed, dtype, scorer)
    enc, _ = encode_pairs(tok, pairs, policy.config.block_size)
    ref_logps = pair_logps(ref, enc, tok.end_id, cfg.average_logps, dtype=dtype)
    out = run_dpo(policy, cfg, enc, ref_logps, val[0], val[1], tok.end_id, dtype, quiet)
    return pairs, {**counts, "steps": out["steps"], "final": out["history"][-1]}


def rounds(run) -> int:
    return FAST_ROUNDS if run.fast else ROUNDS


def online_unit(run, labels: str, seed: int | None = None, refresh_reference: bool = False) -> list[dict]:
    """Online DPO labelled by `labels` ("gold" or "reward model") on seed `seed` (default the run's):
    `rounds(run)` rounds, as many labelled pairs in all as that seed's offline DPO file holds. A unit
    of RUN/online_dpo/units/ (reused while unchanged). Returns one row per round: the labelled pairs
    so far, how often the round's labels agree with the gold reward, and the policy's evaluation on
    the held-out films."""
    if labels not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_SOURCES)}, not {labels!r}")
    seed = run.seed if seed is None else seed
    d, n_rounds = sweep.data(run, seed), rounds(run)
    cfg = run.settings(DPOConfig, seed=seed)
    inputs = {"sft": run.path("sft.pt"), "train_data": d.train, "val_data": d.val,
              **({"reward_model": d.reward_model} if labels == "reward model" else {})}
    folder = run.out / "online_dpo" / "units"
    name = f"online_{labels.replace(' ', '_')}_s{seed}" + ("_refresh" if refresh_reference else "")

    def go():
        tok, sft = run.tok, run.load_policy("sft.pt")
        n_offline = len(read_preferences(d.train)[0])
        per_round = n_offline // n_rounds
        val_pairs, _ = read_preferences(d.val)
        val_enc, _ = encode_pairs(tok, val_pairs, sft.config.block_size)
        val = (val_enc, pair_logps(sft, val_enc, tok.end_id, cfg.average_logps, dtype=run.dtype))
        scorer = None
        if labels == "reward model":
            rm = load_reward_model(d.reward_model, run.device, tok.vocab_size)
            scorer = lambda prompts, ids: score(rm, tok, prompts, ids, dtype=run.dtype)  # noqa: E731
        titles = world.split_titles()[0]
        policy, ref, rng, rows, used = copy.deepcopy(sft), sft, random.Random(seed), [], 0
        for r in range(n_rounds):
            prompts = [world.make_prompt(rng.choice(titles)) for _ in range(per_round)]
            if refresh_reference:
                ref = copy.deepcopy(policy).eval()
            pairs, info = online_round(policy, ref, tok, prompts, replace(cfg, seed=seed + r), val,
                                       seed + ROUND_SEED_OFFSET + r, scorer, run.dtype, quiet=True)
            used += len(pairs)
            s = summary_row(run.evaluate(policy, sft))
            agree = sum(p["chosen_gold"] > p["rejected_gold"] for p in pairs) / max(1, len(pairs))
            rows.append({"round": r + 1, "labelled_pairs": used, "label_agrees_with_gold": agree,
                         "steps": info["steps"], **{k: s[k] for k in sweep.POINT_KEYS}})
            print(f"online DPO ({labels} labels, seed {seed}) round {r + 1}: {used} pairs so far, gold "
                  f"{s['gold_reward']:+.3f}, fluency {s['fluency']:.3f}, KL {s['kl_to_ref']:.2f}", flush=True)
        write_json(folder / f"{name}.json", {"labels": labels, "seed": seed, "rounds": rows})
    cfg_key = {**cfg.key(), "rounds": n_rounds, "refresh_reference": refresh_reference, **run.eval_config()}
    run.cached(name, cfg_key, inputs, go, outputs=[folder / f"{name}.json"], code="studies.online_dpo",
               folder=folder, announce=False)
    return read_json(folder / f"{name}.json")["rounds"]


def run_online_dpo(run) -> dict:
    return run.study("online_dpo", lambda: _online_dpo(run))


def _online_dpo(run) -> None:
    seeds, sft = sweep.seeds(run), read_json(run.path("eval_sft.json"))
    online = {labels: [online_unit(run, labels, s) for s in seeds] for labels in LABEL_SOURCES}
    offline = [sweep.along_training(run, "dpo", DPOConfig().beta, s) for s in seeds]
    result = {"seeds": seeds, "rounds": rounds(run), "sft": {k: sft[k] for k in ("gold_reward", "fluency")},
              "online": online, "offline": offline,
              "labelled_pairs": [len(read_preferences(sweep.data(run, s).train)[0]) for s in seeds],
              "agreement": {labels: [sum(r["label_agrees_with_gold"] for r in rows) / len(rows) for rows in per_seed]
                            for labels, per_seed in online.items()},
              # at the same KL, paired by seed
              "matched": {**{f"{labels} vs offline": sweep.matched(online[labels], offline, sft)
                             for labels in LABEL_SOURCES},
                          "reward model vs gold": sweep.matched(online["reward model"], online["gold"], sft)},
              # at the end of training, each at its own KL: what a table of final rows would compare
              "final": {**{labels: _final(per_seed) for labels, per_seed in online.items()},
                        "offline": _final(offline)}}
    out = run.out / "online_dpo"
    write_json(out / "online_dpo.json", result)
    plots.online_figure(result, out / "online_dpo.png")
    for what, m in result["matched"].items():
        g = m["gold"]
        print(f"{what}: at KL {', '.join(f'{k:.2f}' for k in m['kl'])} gold difference {g['gap_mean']:+.3f} "
              f"[{g['low']:+.3f}, {g['high']:+.3f}] over {g['n']} seeds: {g['verdict']}")


def _final(per_seed: list[list[dict]]) -> dict:
    """The last point of each seed: gold, fluency and KL, their values, mean and spread."""
    out = {}
    for k in ("gold_reward", "fluency", "kl_to_ref"):
        values = [rows[-1][k] for rows in per_seed]
        m, s = C.mean_std(values)
        out[k] = {"mean": m, "std": s, "values": values}
    return out
