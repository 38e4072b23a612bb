# %% [markdown]
# # 07 · The DPO loss, rung by rung
# The ladder: log-probs of one sequence -> the loss on four numbers -> the loss of a batch -> the
# loss over a loader -> evaluation. The loss lives in `minidpo/losses.py`; change a line there and
# re-run this script. At the end we register a new loss in three lines and train with it.
# Run: `python tutorials/07_dpo_loss.py`.

# %%
import math

import torch

from minidpo import pipeline as P
from minidpo.cli import tutorial_run
from minidpo.checkpoint import load_gpt
from minidpo.dpo import DPOConfig, compute_reference_logps, evaluate_pairs, pair_record, train_dpo
from minidpo.evaluate import evaluate_policy
from minidpo.losses import LOSSES, dpo_gradient_weight, dpo_loss, register_margin_loss
from minidpo.preferences import encode_pairs, read_preferences

run = tutorial_run("07: the DPO loss step by step")
P.stage_sft(run)
P.stage_prefs(run)
tok = run.tok
policy = run.load_policy("sft.pt")
pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(tok, pairs, policy.config.block_size)

# %% Rung 1: log π(y|x) of one sequence = sum of its response tokens' log-probs
rec = pair_record(policy, encoded[:1], tok.end_id, beta=0.5, average=False)
chosen, rejected = rec.chosen_logps, rec.rejected_logps
print(f"pair 0: log π(chosen) = {chosen.item():.3f}, log π(rejected) = {rejected.item():.3f}")

# %% Rung 2: the loss on four numbers. At the start the policy IS the reference: loss = ln 2
losses, rc, rr = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta=0.5)
print(f"policy = reference: loss {losses.item():.6f} (ln 2 = {math.log(2):.6f}), rewards {rc.item()}, {rr.item()}")
pc, pr, refc, refr = torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0])
losses, rc, rr = dpo_loss(pc, pr, refc, refr, beta=0.5)
print(f"chosen up 1 nat, rejected down 1 nat: h = 2, loss = -log σ(0.5·2) = {losses.item():.4f}, "
      f"implicit rewards {rc.item():+.2f} / {rr.item():+.2f}")

# %% The gradient weight σ(r̂_l − r̂_w): big when the pair is ranked wrongly, ~0 when ranked right
for margin in (-4.0, -1.0, 0.0, 1.0, 4.0):
    w = dpo_gradient_weight(torch.tensor(margin / 2), torch.tensor(-margin / 2))
    print(f"r̂_w − r̂_l = {margin:+.0f}: weight {w.item():.3f}")

# %% Rung 3: a batch (one forward pass over chosen and rejected together), with cached reference log-probs
batch = encoded[:32]
ref_logps = compute_reference_logps(policy, batch, tok.end_id, average=False)
rec = pair_record(policy, batch, tok.end_id, beta=0.5, average=False)
c, r = rec.chosen_logps, rec.rejected_logps
losses, rc, rr = dpo_loss(c, r, ref_logps[:, 0], ref_logps[:, 1], beta=0.5)
print(f"batch of {len(batch)}: mean loss {losses.mean().item():.6f} (all ln 2 before training)")

# %% Rung 4: the whole held-out loader, with the metric names of the DPO reference code and TRL
val, _ = read_preferences(run.path("prefs_val.jsonl"))
val_enc, _ = encode_pairs(tok, val, policy.config.block_size)
val_ref = compute_reference_logps(policy, val_enc, tok.end_id, average=False)
for k, v in evaluate_pairs(policy, val_enc, val_ref, DPOConfig(beta=0.5), tok.end_id).items():
    print(f"  {k:28s} {v:+.4f}")

# %% Rung 5: a new loss in class. Register it under a name ...
@register_margin_loss("squared-margin")
def squared_margin(h, beta):
    """A toy variant: pull the margin up to 1/β like IPO, but never push it back down."""
    return torch.relu(1 / beta - h) ** 2


print("registered losses:", sorted(LOSSES))
print("squared-margin on the four numbers (β = 0.25):",
      dpo_loss(pc, pr, refc, refr, beta=0.25, loss_type="squared-margin")[0].item())

# %% ... and train with it. (Written into minidpo/losses.py instead, it is also
# `python -m minidpo dpo --loss-type squared-margin`.)
cfg = (DPOConfig.fast if run.fast else DPOConfig)(seed=run.seed, loss_type="squared-margin", beta=0.25)
m = train_dpo(cfg, tok, run.path("sft.pt"), run.path("prefs_train.jsonl"), run.path("prefs_val.jsonl"),
              run.out, run.device, run.dtype, quiet=True, out_name="dpo_squared_margin")
print(f"trained {m['steps']} steps with loss_type={cfg.loss_type!r}: held-out implicit-reward accuracy "
      f"{m['val_implicit_reward_accuracy']:.3f}, margin {m['final']['eval/rewards/margins']:+.3f}")
sft_eval = P.stage_eval_sft(run)
new = load_gpt(run.path("dpo_squared_margin.pt"), run.device, vocab_size=tok.vocab_size)[0].eval()
ev = evaluate_policy(new, policy, tok, run.eval_prompts(), seed=run.seed + 100, sft_gold=sft_eval["gold"])
print(f"gold {ev['gold_reward']:+.3f} (SFT {sft_eval['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f}")
