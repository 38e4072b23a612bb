# %% [markdown]
# # 08 · The DPO loss, rung by rung
# **You need** lesson 07 (where the loss −log σ(β·h) comes from) and lesson 02 (sequence
# log-probs). **You will see** the ladder a DPO implementation climbs: log-probs of one sequence ->
# the loss on four numbers -> the loss of a batch -> the loss and its metrics over a held-out set, and the
# gradient weight that decides how hard each pair pulls. The loss lives in `minidpo/losses.py`;
# change a line there and re-run this script. At the end we register a new loss in three lines and
# train with it.
# Run: `python tutorials/08_dpo_loss.py`.

# %%
import math

import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, pair_logps, evaluate_pairs, pair_record
from minidpo.harness import pipeline as P
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import lesson_knobs, tutorial_run
from minidpo.losses import LOSSES, dpo_gradient_weight, dpo_loss, register_margin_loss
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.studies import sweep

run = tutorial_run("08: the DPO loss step by step")
ensure(run, "eval_sft", "prefs")
tok = run.tok
policy = run.load_policy("sft.pt")
pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(tok, pairs, policy.config.block_size)

# %% [markdown]
# ## Rung 1: the log-prob of one response
# $$\log\pi(y|x) = \sum_{t=1}^{|y|} \log\pi(y_t \mid x, y_{<t})$$
# A sum over the response tokens only (the paper sums; the mean is an option, and then β must grow
# by about the response length). The prompt conditions every term but is never scored.

# %%
rec = pair_record(policy, encoded[:1], tok.end_id, beta=0.5, average=False)
chosen, rejected = rec.chosen_logps, rec.rejected_logps
print(f"pair 0: log π(chosen) = {chosen.item():.3f}, log π(rejected) = {rejected.item():.3f}")

# %% [markdown]
# ## Rung 2: the loss on four numbers
# $$\mathcal{L} = -\log\sigma\Big(\beta\Big[\log\frac{\pi(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_{ref}(y_l)}\Big]\Big) \quad\text{(DPO eq. 7)}$$
# At the start the policy *is* the reference: every log-ratio is 0 and the loss is ln 2.

# %%
losses, rc, rr = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta=0.5)
print(f"policy = reference: loss {losses.item():.6f} (ln 2 = {math.log(2):.6f}), rewards {rc.item()}, {rr.item()}")
pc, pr, refc, refr = torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0])
losses, rc, rr = dpo_loss(pc, pr, refc, refr, beta=0.5)
print(f"chosen up 1 nat, rejected down 1 nat: h = 2, loss = -log σ(0.5·2) = {losses.item():.4f}, "
      f"implicit rewards {rc.item():+.2f} / {rr.item():+.2f}")

# %% [markdown]
# ## The gradient weight
# $\sigma(\hat r_l - \hat r_w)$ multiplies each pair's gradient (the paper's §4): near 1 when the implicit
# reward ranks the pair wrongly, near 0 once it ranks it right by a wide margin.
# *Question*: what does this weight do for a pair whose label is wrong?

# %%
for margin in (-4.0, -1.0, 0.0, 1.0, 4.0):
    w = dpo_gradient_weight(torch.tensor(margin / 2), torch.tensor(-margin / 2))
    print(f"r̂_w − r̂_l = {margin:+.0f}: weight {w.item():.3f}")

# %% [markdown]
# ## Rung 3: a batch
# Chosen and rejected rows go through one forward pass together; the reference's log-probs are
# computed once and cached, so the reference never runs inside the training loop. `pair_logps`
# scores any model on pairs: log π(y_w|x) and log π(y_l|x), shape (N, 2). Here the policy has not
# trained yet, so it *is* the SFT model, which is also the reference: scoring it once gives the
# reference's log-probs, and its own log-probs are the same numbers.

# %%
batch = encoded[:32]
ref_logps = pair_logps(policy, batch, tok.end_id, average=False)
rec = pair_record(policy, batch, tok.end_id, beta=0.5, average=False)
c, r = rec.chosen_logps, rec.rejected_logps
losses, rc, rr = dpo_loss(c, r, ref_logps[:, 0], ref_logps[:, 1], beta=0.5)
print(f"batch of {len(batch)}: mean loss {losses.mean().item():.6f} (all ln 2 before training)")

# %% [markdown]
# ## Rung 4: the held-out set and its metrics
# `rewards/chosen` and `rewards/rejected` are β·log-ratios (the implicit rewards),
# `rewards/accuracies` the fraction of pairs the implicit reward ranks right, `rewards/margins` their
# mean difference, `logps/*` the raw sequence log-probs — the names of the reference code and TRL.

# %%
val, _ = read_preferences(run.path("prefs_val.jsonl"))
val_enc, _ = encode_pairs(tok, val, policy.config.block_size)
val_ref = pair_logps(policy, val_enc, tok.end_id, average=False)
val_metrics = evaluate_pairs(policy, val_enc, val_ref, DPOConfig(beta=0.5), tok.end_id)
for k, v in val_metrics.items():
    print(f"  {k:28s} {v:+.4f}")

# %% [markdown]
# **Why `rewards/accuracies` reads 0.0 here.** Before training the policy *is* the reference, so
# every implicit reward is exactly 0 and every pair is a tie, r̂_w = r̂_l. `rewards/accuracies`
# follows TRL and the reference code: the fraction of pairs with r̂_w > r̂_l *strictly*, so a tie
# counts as wrong and an untrained policy scores 0. The reward model's accuracy (lesson 05) and
# the oracle's (lesson 04) count a tie as ½, so an untrained classifier scores chance, 0.5. Same
# pairs, two conventions: read a 0.0 at step 0 as "nothing ranked yet", not "everything ranked
# wrong". (Lesson 10 puts the three accuracies side by side, ties ½ for all.)

# %%
val_rewards = 0.5 * (pair_logps(policy, val_enc, tok.end_id, average=False) - val_ref)  # (N, 2) r̂
ties = int((val_rewards[:, 0] == val_rewards[:, 1]).sum())
strict = (val_rewards[:, 0] > val_rewards[:, 1]).float().mean().item()
print(f"largest |implicit reward| at step 0: {val_rewards.abs().max().item():.1e}; ties: {ties} of {len(val_enc)} pairs")
print(f"accuracy, a tie counted wrong (TRL): {strict:.3f}; a tie counted ½ (reward model, oracle): "
      f"{strict + 0.5 * ties / len(val_enc):.3f}")

# %% [markdown]
# ## Rung 5: a new loss in class
# Register a function of the margin h under a name (lesson 18 writes one and puts it on the bench
# beside every other loss).
# The knob of this rung's *Try* is the β the new loss trains with.

# %%
knobs = lesson_knobs(beta=0.25)


@register_margin_loss("squared-margin")
def squared_margin(h, beta):
    """A toy variant: pull the margin h up to 1/β, never push it back down (IPO, by contrast, pulls
    h towards 1/(2β) from both sides: lessons 11 and 15)."""
    return torch.relu(1 / beta - h) ** 2


print("registered losses:", sorted(LOSSES))
print(f"squared-margin on the four numbers (h = 2, β = {knobs.beta}):",
      dpo_loss(pc, pr, refc, refr, beta=knobs.beta, loss_type="squared-margin")[0].item())

# %% [markdown]
# ## Train with it
# `sweep.trained` trains DPO with any registered loss from the run's SFT model on its pairs, and
# keys the result by the loss's own source code: edit the function above and only this training is
# redone. (Written into minidpo/losses.py instead, it is also
# `python -m minidpo dpo --loss-type squared-margin`.)

# %%
checkpoint = sweep.trained(run, "dpo", knobs.beta, loss_type="squared-margin")
m = read_json(checkpoint.with_name(checkpoint.stem + "_metrics.json"))
heldout_h = m["final"]["eval/rewards/margins"] / knobs.beta
print(f"trained {m['steps']} steps with loss_type='squared-margin', β = {knobs.beta}: held-out implicit-reward "
      f"accuracy {m['val_implicit_reward_accuracy']:.3f}, margin β·h {m['final']['eval/rewards/margins']:+.3f} "
      f"(h = {heldout_h:+.3f} nats; the loss's target 1/β = {1 / knobs.beta:g})")
sft_eval = P.stage_eval_sft(run)
ev = sweep.evaluate(run, checkpoint)
print(f"gold {ev['gold_reward']:+.3f} (SFT {sft_eval['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f}")

# %% [markdown]
# *Try*: `--set beta=2.0` (or set `beta` in the knobs cell and re-run from there): the target
# margin 1/β shrinks from 4 to 0.5 nats, pairs reach it early and stop pulling, so the policy stays
# nearer the reference: the KL falls and the held-out h is smaller.
# (In class, edit the loss itself instead, say `1 / beta` to `2 / beta`, and re-run: the loss's
# source is part of the training's key, so only this training is redone.)

# %% [markdown]
# ## Answers
# **What does the gradient weight do for a pair whose label is wrong?** Swap y_w and y_l: a policy
# that has learned the truth now ranks the labelled "winner" below the "loser", r̂_w − r̂_l < 0, so
# the weight is above ½, and near 1 once the policy ranks the pair confidently the other way (the −4
# row of the weight table above): the largest push of all, towards the wrong label. DPO has no way
# to tell a wrong label from a hard pair. Measured with a plain DPO policy (the pipeline's `dpo`
# stage at its default β, which lesson 09 reads step by step): on the held-out pairs, the weight
# σ(r̂_l − r̂_w) of the pairs whose label the gold reward contradicts, against those it agrees with:

# %%
dpo_beta = P.stage_dpo(run)["config"]["beta"]
dpo_rewards = dpo_beta * (pair_logps(run.load_policy("dpo.pt"), val_enc, tok.end_id, average=False) - val_ref)
val_weights = dpo_gradient_weight(dpo_rewards[:, 0], dpo_rewards[:, 1])
gold_says = torch.tensor([world.gold_reward(p["prompt"], p["chosen"]) - world.gold_reward(p["prompt"], p["rejected"])
                          for p in val])
mislabelled = gold_says < 0
print(f"{int(mislabelled.sum())} of {len(val)} held-out labels contradict the gold reward: their mean weight "
      f"{val_weights[mislabelled].mean().item():.3f}, the others' {val_weights[gold_says > 0].mean().item():.3f}; "
      f"weight above 0.9 in {(val_weights[mislabelled] > 0.9).float().mean().item():.0%} of the mislabelled pairs, "
      f"{(val_weights[gold_says > 0] > 0.9).float().mean().item():.0%} of the others (DPO at β = {dpo_beta})")

# %% [markdown]
# ## Conservative DPO caps the margin, not the pull
# Conservative DPO (label smoothing ε, lesson 15) assumes each label is flipped with probability ε:
# $\mathcal{L} = -(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h)$. Its gradient
# weight is $\sigma(-\beta h) - \varepsilon$, so a mislabelled pair (βh ≪ 0) still pulls with weight
# ≈ 1 − ε: it does not cap how hard a wrong label pulls. What it caps is the *margin*: the weight
# reaches 0 at $\beta h = \log\frac{1-\varepsilon}{\varepsilon}$ and turns negative past it, so no
# pair is pushed further apart than that (plain DPO never stops). With the library's loss and autograd:

# %%
eps = 0.1
z = torch.tensor([-4.0, 0.0, math.log((1 - eps) / eps), 4.0], requires_grad=True)  # z = β·h
cdpo = dpo_loss(z, torch.zeros(4), torch.zeros(4), torch.zeros(4), beta=1.0, label_smoothing=eps)[0]
cdpo_weight = -torch.autograd.grad(cdpo.sum(), z)[0]
stop_margin = math.log((1 - eps) / eps)
for zi, wi in zip(z.tolist(), cdpo_weight.tolist()):
    wi = wi if abs(wi) >= 5e-4 else 0.0  # rounding at the stopping margin prints as 0, not −0
    print(f"β·h = {zi:+.3f}: conservative DPO's weight {wi:+.3f} (plain DPO's {torch.sigmoid(torch.tensor(-zi)).item():.3f})")
print(f"ε = {eps}: the weight is 0 at β·h = log((1−ε)/ε) = {stop_margin:.3f}; a mislabelled pair at β·h = −4 still "
      f"pulls with σ(4) − ε = {cdpo_weight[0].item():.3f}, near 1 − ε = {1 - eps:g}")

# %% [markdown]
# ## What to remember
# - The DPO loss needs four numbers per pair: the policy's and the reference's log-probs of the
#   chosen and the rejected response; the reference's are computed once, before training.
# - At step 0 every log-ratio is 0: the loss is ln 2, and TRL's `rewards/accuracies` is 0.0 (ties).
# - Each pair's gradient is weighted by σ(r̂_l − r̂_w): most for the pairs ranked wrong — including
#   pairs whose label is wrong. Conservative DPO stops pairs at a finite margin; it does not tame
#   the pull of a wrong label.
# - A new loss is a function of the margin h, registered in three lines.
# - **Exercises**: write them yourself and have them graded — `python -m minidpo grade dpo-loss`, `python -m minidpo grade conservative-dpo-loss`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
