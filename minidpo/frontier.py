"""The reward-vs-KL frontier: the DPO paper's Figure 2 in miniature.

For several β, DPO and RLHF (REINFORCE on the learned reward) start from the same SFT model and
the same preference pairs; checkpoints along training are evaluated on held-out films for mean gold
reward and sequence KL to the reference. A method whose points lie higher at the same KL makes the
better reward-vs-KL trade-off. Writes RUN/frontier/frontier.json and frontier.png.
"""
from __future__ import annotations

from . import plots, sweep
from .checkpoint import read_json, write_json
from .stages import ensure

DPO_BETAS, RLHF_BETAS = (0.1, 0.25, 0.5, 1.0), (0.01, 0.05, 0.2)
FAST_DPO_BETAS, FAST_RLHF_BETAS = (0.1, 0.5), (0.02, 0.2)


def run_frontier(run, checkpoints: int = 2) -> list[dict]:
    ensure(run, "eval_sft", "prefs", "reward_model")
    sft_gold = read_json(run.path("eval_sft.json"))["gold"]
    points = []
    for method, betas in (("dpo", FAST_DPO_BETAS if run.fast else DPO_BETAS),
                          ("rlhf", FAST_RLHF_BETAS if run.fast else RLHF_BETAS)):
        for beta in betas:
            for step, ckpt in sorted(sweep.trained(run, method, beta, checkpoints).items()):
                s = sweep.evaluate(run, ckpt)
                points.append({"method": method, "beta": beta, "step": step, **s})
                print(f"frontier {method} β={beta} step {step}: gold {s['gold_reward']:+.3f}, "
                      f"KL {s['kl_to_ref']:.2f}, fluency {s['fluency']:.3f}", flush=True)
    out = run.out / "frontier"
    write_json(out / "frontier.json", {"points": points, "sft_gold_reward": sum(sft_gold) / len(sft_gold)})
    plots.frontier_figure(points, out / "frontier.png", sum(sft_gold) / len(sft_gold))
    print(f"wrote {out / 'frontier.json'} and frontier.png")
    return points
