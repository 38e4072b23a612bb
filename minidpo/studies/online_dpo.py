"""Online (iterative) DPO: the answer to "the dataset is fixed".

Offline DPO learns from pairs sampled once from the SFT model; whatever the policy starts to write
later (its new mistakes included) is never labelled. Online DPO works in rounds:

  1. sample two responses per prompt from the CURRENT policy (temperature 1, on-policy);
  2. label each pair by Bradley–Terry, on the gold reward (a human) or on the reward model (no human);
  3. score the new pairs once with the reference (the SFT model, or the round's starting policy
     with `refresh_reference`), and run a DPO pass on them.

Compared with offline DPO at the same number of labelled pairs and the same number of gradient steps.
"""
from __future__ import annotations

import copy
import random
from dataclasses import replace


from ..harness import plots
from .. import world
from ..checkpoint import read_json, write_json
from ..dpo import DPOConfig, pair_logps, run_dpo
from ..evaluate import summary_row
from ..preferences import encode_pairs, make_pairs, read_preferences
from ..reward_model import load_reward_model, score


def online_round(policy, ref, tok, prompts: list[str], cfg: DPOConfig, val, seed: int, scorer=None,
                 dtype=None, quiet: bool = True) -> tuple[list[dict], dict]:
    """One round: fresh pairs from `policy`, labelled (gold, or `scorer`), then a DPO pass that
    updates `policy` in place. `val` = (encoded held-out pairs, their reference log-probs)."""
    pairs, counts = make_pairs(policy, tok, prompts, 2, seed, dtype, scorer)
    enc, _ = encode_pairs(tok, pairs, policy.config.block_size)
    ref_logps = pair_logps(ref, enc, tok.end_id, cfg.average_logps, dtype=dtype)
    out = run_dpo(policy, cfg, enc, ref_logps, val[0], val[1], tok.end_id, dtype, quiet)
    return pairs, {**counts, "steps": out["steps"], "final": out["history"][-1]}


def run_online_dpo(run) -> dict:
    return run.study("online_dpo", lambda: _online_dpo(run))


def _online_dpo(run, rounds: int | None = None, refresh_reference: bool = False) -> None:
    rounds = rounds or (2 if run.fast else 4)
    tok = run.tok
    n_offline = len(read_preferences(run.path("prefs_train.jsonl"))[0])
    per_round = n_offline // rounds
    cfg = run.settings(DPOConfig)
    sft = run.load_policy("sft.pt")
    val_pairs, _ = read_preferences(run.path("prefs_val.jsonl"))
    val_enc, _ = encode_pairs(tok, val_pairs, sft.config.block_size)
    val = (val_enc, pair_logps(sft, val_enc, tok.end_id, cfg.average_logps, dtype=run.dtype))
    rm = load_reward_model(run.path("reward_model.pt"), run.device, tok.vocab_size)
    scorers = {"gold": None, "reward model": lambda prompts, ids: score(rm, tok, prompts, ids, dtype=run.dtype)}
    titles = world.split_titles()[0]
    result = {"rounds": rounds, "pairs_per_round": per_round, "refresh_reference": refresh_reference,
              "sft": summary_row(run.evaluate(sft, sft)),
              "online": {}}
    for name, scorer in scorers.items():
        policy, ref = copy.deepcopy(sft), sft
        rng = random.Random(run.seed)
        rows, used = [], 0
        for r in range(rounds):
            prompts = [world.make_prompt(rng.choice(titles)) for _ in range(per_round)]
            if refresh_reference:
                ref = copy.deepcopy(policy).eval()
            cfg_r = replace(cfg, seed=run.seed + r)
            pairs, info = online_round(policy, ref, tok, prompts, cfg_r, val, run.seed + 1000 + r, scorer,
                                       run.dtype, quiet=run.quiet)
            used += len(pairs)
            s = summary_row(run.evaluate(policy, sft))
            label_acc = sum(p["chosen_gold"] > p["rejected_gold"] for p in pairs) / max(1, len(pairs))
            rows.append({"round": r + 1, "labelled_pairs": used, "label_agrees_with_gold": label_acc, **info, **s})
            print(f"online DPO ({name} labels) round {r + 1}: {used} pairs so far, gold {s['gold_reward']:+.3f}, "
                  f"win rate {s['win_rate_vs_sft']:.3f}, fluency {s['fluency']:.3f}, KL {s['kl_to_ref']:.2f}", flush=True)
        result["online"][name] = rows
    offline = read_json(run.path("eval_dpo.json"))
    result["offline"] = {**summary_row(offline), "labelled_pairs": n_offline}
    out = run.out / "online_dpo"
    write_json(out / "online_dpo.json", result)
    plots.online_figure(result, out / "online_dpo.png")
    o = result["offline"]
    print(f"offline DPO, {n_offline} pairs: gold {o['gold_reward']:+.3f}, win rate {o['win_rate_vs_sft']:.3f}, "
          f"fluency {o['fluency']:.3f}, KL {o['kl_to_ref']:.2f}")
