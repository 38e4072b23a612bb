"""The reward-vs-KL frontier: the DPO paper's Figure 2 in miniature.

For several β, DPO and RLHF (REINFORCE on the learned reward) start from the same SFT model and
the same preference pairs; checkpoints along training are evaluated on held-out films for mean gold
reward and sequence KL to the reference. A method whose points lie higher at the same KL makes the
better reward-vs-KL trade-off. Writes OUT/frontier/frontier.json and frontier.png.
"""
from __future__ import annotations

from dataclasses import replace

from . import pipeline as P
from . import plots
from .checkpoint import write_json
from .dpo import DPOConfig, train_dpo
from .evaluate import evaluate_policy
from .rlhf import RLHFConfig, train_rlhf

DPO_BETAS, RLHF_BETAS = (0.1, 0.25, 0.5, 1.0), (0.01, 0.05, 0.2)
FAST_DPO_BETAS, FAST_RLHF_BETAS = (0.1, 0.5), (0.02, 0.2)


def run_frontier(run: P.Run) -> list[dict]:
    P.stage_sft(run)
    P.stage_eval_sft(run)
    P.stage_prefs(run)
    P.stage_reward_model(run)
    sft_gold = P.read_json(run.path("eval_sft.json"))["gold"]
    folder = run.out / "frontier"
    ref = P.load_policy(run, "sft.pt")
    points = []

    def evaluate(method, beta, step, ckpt):
        policy = P.load_gpt(ckpt, run.device, vocab_size=run.tok.vocab_size)[0].eval()
        s = evaluate_policy(policy, ref, run.tok, run.eval_prompts(), seed=run.seed + 100,
                            sft_gold=sft_gold, dtype=run.dtype)
        points.append({"method": method, "beta": beta, "step": step, "gold_reward": s["gold_reward"],
                       "kl_to_ref": s["kl_to_ref"], "fluency": s["fluency"], "win_rate_vs_sft": s["win_rate_vs_sft"]})
        print(f"frontier {method} β={beta} step {step}: gold {s['gold_reward']:+.3f}, KL {s['kl_to_ref']:.2f}, "
              f"fluency {s['fluency']:.3f}", flush=True)

    dpo_base = (DPOConfig.fast if run.fast else DPOConfig)(seed=run.seed)
    for beta in FAST_DPO_BETAS if run.fast else DPO_BETAS:
        cfg = replace(dpo_base, beta=beta)
        name = f"dpo_beta{beta}"
        m = train_dpo(cfg, run.tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
                      folder, run.device, run.dtype, quiet=True, out_name=name,
                      checkpoint_every=max(1, m_steps(run, cfg) // 3))
        for step in sorted(_ckpt_steps(folder, name)) + [m["steps"]]:
            evaluate("dpo", beta, step, folder / (f"{name}_step{step}.pt" if step < m["steps"] else f"{name}.pt"))
    rl_base = (RLHFConfig.fast if run.fast else RLHFConfig)(seed=run.seed)
    for beta in FAST_RLHF_BETAS if run.fast else RLHF_BETAS:
        cfg = replace(rl_base, beta=beta)
        name = f"rlhf_beta{beta}"
        train_rlhf(cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), folder, run.device,
                   run.dtype, quiet=True, out_name=name, checkpoint_every=max(1, cfg.steps // 3))
        for step in sorted(_ckpt_steps(folder, name)) + [cfg.steps]:
            evaluate("rlhf", beta, step, folder / (f"{name}_step{step}.pt" if step < cfg.steps else f"{name}.pt"))
    write_json(folder / "frontier.json", {"points": points, "sft_gold_reward": sum(sft_gold) / len(sft_gold)})
    plots.frontier_figure(points, folder / "frontier.png")
    print(f"wrote {folder / 'frontier.json'} and frontier.png")
    return points


def m_steps(run, cfg: DPOConfig) -> int:
    from .preferences import read_preferences
    n = len(read_preferences(run.path("prefs_train.jsonl"))[0])
    return cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)


def _ckpt_steps(folder, name) -> list[int]:
    return [int(p.stem.rsplit("step", 1)[1]) for p in folder.glob(f"{name}_step*.pt")]
