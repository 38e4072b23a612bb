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
import torch.nn.functional as F

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, cached_reference_logps, pair_logps, evaluate_pairs, pair_record
from minidpo.harness import pipeline as P
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, lesson_knobs, tutorial_run
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
# In lesson 07 a response was one of five "arms" with a probability each. On a GPT a response is a
# whole sequence of tokens y, one arm among the astronomically many sequences the model can write,
# and its probability is the product of its tokens' probabilities:
# $$\log\pi(y|x) = \sum_{t=1}^{|y|} \log\pi(y_t \mid x, y_{<t})$$
# Nothing in eq. 3–7 cared what an arm was, so they hold per sequence exactly as written, with this
# log π(y|x) (lesson 02 computed it). A sum over the response tokens only, `<|end|>` included (the
# paper sums; the mean is an option, and then β must be *multiplied* by about the response length to
# mean the same). The prompt conditions every term but is never scored.

# %%
rec = pair_record(policy, encoded[:1], tok.end_id, beta=0.5, average=False)
chosen, rejected = rec.chosen_logps, rec.rejected_logps
print(f"pair 0: log π(chosen) = {chosen.item():.3f}, log π(rejected) = {rejected.item():.3f}")

# %% [markdown]
# ## Rung 2: the loss on four numbers
# Four numbers per pair: log π(y_w|x), log π(y_l|x) and the reference's two. The **implicit reward**
# of a response is $\hat r(x, y) = \beta\log\frac{\pi(y|x)}{\pi_{ref}(y|x)}$ (eq. 5 without its
# per-prompt term β·log Z(x), which cancels: lesson 07), and the loss is Bradley–Terry on it, with
# h the difference of the two log-ratios:
# $$\mathcal{L} = -\log\sigma\big(\hat r(x, y_w) - \hat r(x, y_l)\big) = -\log\sigma(\beta h), \qquad
# h = \log\frac{\pi(y_w|x)}{\pi_{ref}(y_w|x)} - \log\frac{\pi(y_l|x)}{\pi_{ref}(y_l|x)} \quad\text{(DPO eq. 7)}$$
# Written out below, as `minidpo/losses.py` writes it, with three details that matter:
# - **`F.logsigmoid`, not `torch.log(torch.sigmoid(·))`**: σ(−1000) is 0 in floating point, so the
#   log of it is −∞ (and the gradient NaN); logsigmoid computes log σ(z) without forming σ(z).
# - **one loss per pair**, shape (B,): the training loop takes the mean; evaluation and logging read
#   each pair.
# - **the rewards are returned detached**: r̂_w and r̂_l are what gets logged (`rewards/chosen`,
#   `rewards/rejected`), numbers to read, not to backpropagate through.
#
# At the start the policy *is* the reference: every log-ratio is 0 and the loss is ln 2.

# %%
def dpo_by_hand(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen_rewards = beta * (policy_chosen - ref_chosen)        # r̂(x, y_w), (B,)
    rejected_rewards = beta * (policy_rejected - ref_rejected)  # r̂(x, y_l), (B,)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)   # −log σ(β·h), one per pair, (B,)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


losses, rc, rr = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach(), beta=0.5)
print(f"policy = reference: loss {losses.item():.6f} (ln 2 = {math.log(2):.6f}), rewards {rc.item()}, {rr.item()}")
claim("when the policy is the reference the loss is ln 2 and both rewards are 0",
      abs(losses.item() - math.log(2)) < 1e-6 and rc.item() == 0 == rr.item(), loss=round(losses.item(), 6))
pc, pr, refc, refr = torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0])
losses, rc, rr = dpo_loss(pc, pr, refc, refr, beta=0.5)
print(f"chosen up 1 nat, rejected down 1 nat: h = 2, loss = -log σ(0.5·2) = {losses.item():.4f}, "
      f"implicit rewards {rc.item():+.2f} / {rr.item():+.2f}")
pcg = torch.tensor([-10.0, -2010.0], requires_grad=True)   # the second pair: β·h = 0.5·(−2000) = −1000
mine = dpo_by_hand(pcg, torch.tensor([-12.0, -10.0]), torch.tensor([-11.0, -10.0]), torch.tensor([-11.0, -10.0]), 0.5)
library = dpo_loss(pcg, torch.tensor([-12.0, -10.0]), torch.tensor([-11.0, -10.0]), torch.tensor([-11.0, -10.0]), 0.5)
naive = -torch.log(torch.sigmoid(torch.tensor(-1000.0)))
print(f"by hand: losses {mine[0].tolist()} (shape {tuple(mine[0].shape)}), the library's {library[0].tolist()}; "
      f"rewards need a gradient: {mine[1].requires_grad}; −log(σ(−1000)) written naively = {naive.item()}")
claim("the loss written out is the library's, one loss per pair, finite at β·h = −1000",
      torch.allclose(mine[0], library[0]) and mine[0].shape == (2,) and math.isfinite(mine[0][1].item()),
      loss_at_minus_1000=mine[0][1].item())
claim("the naive log of sigmoid is infinite there", not math.isfinite(naive.item()))
claim("the logged rewards are detached", not (mine[1].requires_grad or library[1].requires_grad))

# %% [markdown]
# ## The gradient weight
# Where does the paper's §4 gradient come from? With z = β·h, the derivative of the loss is
# $\frac{d}{dz}[-\log\sigma(z)] = -\sigma(-z)$ (since σ'(z) = σ(z)σ(−z)), so by the chain rule
# $$\nabla_\theta\mathcal{L} = -\beta\,\sigma(-\beta h)\,\nabla_\theta h
# = -\beta\,\sigma(\hat r_l - \hat r_w)\,\big[\nabla\log\pi(y_w|x) - \nabla\log\pi(y_l|x)\big]$$
# (the reference's log-probs are constants). The weight $\sigma(\hat r_l - \hat r_w)$ multiplies each
# pair's gradient: near 1 when the implicit reward ranks the pair wrongly, near 0 once it ranks it
# right by a wide margin. Its sign says more: in −∇L, the direction a descent step takes, each
# pair's term points up the gradient of its log π(y_w) and down that of its log π(y_l) — every pair
# *asks* for its chosen log-prob to rise. Whether it does is another matter: the step is the sum
# over the batch, and the parameters are shared (lesson 10 measures what happens).
# *Question*: what does this weight do for a pair whose label is wrong?

# %%
zs = torch.linspace(-4, 4, 9, requires_grad=True)
dz = torch.autograd.grad((-F.logsigmoid(zs)).sum(), zs)[0]
claim("autograd's d/dz[−log σ(z)] is −σ(−z)", torch.allclose(dz, -torch.sigmoid(-zs.detach()), atol=1e-7),
      largest_difference=(dz + torch.sigmoid(-zs.detach())).abs().max().item())
weights_table = {}
for margin in (-4.0, -1.0, 0.0, 1.0, 4.0):
    w = dpo_gradient_weight(torch.tensor(margin / 2), torch.tensor(-margin / 2))
    weights_table[margin] = w.item()
    print(f"r̂_w − r̂_l = {margin:+.0f}: weight {w.item():.3f}")
claim("a pair ranked wrongly by 4 pulls with weight above 0.95; one ranked right by 4, below 0.05",
      weights_table[-4.0] > 0.95 and weights_table[4.0] < 0.05, wrong=round(weights_table[-4.0], 3),
      right=round(weights_table[4.0], 3))

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
claim("every pair's loss is ln 2 before training", torch.allclose(losses, torch.full_like(losses, math.log(2))),
      pairs=len(batch))

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
claim("at step 0 every held-out pair is a tie, so the strict accuracy is 0", ties == len(val_enc) and strict == 0.0,
      ties=ties, pairs=len(val_enc))

# %% [markdown]
# ## Rung 5: a new loss in class
# Register a function of the margin h under a name (lesson 19 writes one and puts it on the bench
# beside every other loss).
# The knob of this rung's *Try* is the β the new loss trains with.

# %%
knobs = lesson_knobs(beta=0.25)


@register_margin_loss("squared-margin")
def squared_margin(h, beta):
    """A toy variant: pull the margin h up to 1/β, never push it back down (IPO, by contrast, pulls
    h towards 1/(2β) from both sides: lessons 11 and 16)."""
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
claim("the held-out h grew from 0 but is still short of the loss's target 1/β", 0 < heldout_h < 1 / knobs.beta,
      h=round(heldout_h, 3), target=1 / knobs.beta)
sft_eval = P.stage_eval_sft(run)
ev = sweep.evaluate(run, checkpoint)
print(f"gold {ev['gold_reward']:+.3f} (SFT {sft_eval['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f}")
claim("the new loss trains a policy that beats the SFT model under the gold reward (win rate above ½)",
      ev["win_rate_vs_sft"] > 0.5, win_rate=round(ev["win_rate_vs_sft"], 3))

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
# the weight is above ½ — more than a pair it ranks right — and it approaches 1 only when the policy
# ranks the pair confidently the other way (the −4 row of the weight table above). DPO has no way to
# tell a wrong label from a hard pair: it pushes hardest exactly where it disagrees. Measured with a
# plain DPO policy (the pipeline's `dpo` stage at its default β, which lesson 09 reads step by
# step) on the *training* pairs — the ones whose gradient it follows (held-out pairs pull nothing):
# the weight σ(r̂_l − r̂_w) at the end of training of the pairs whose label the gold reward
# contradicts, against those it agrees with:

# %%
dpo_beta = P.stage_dpo(run)["config"]["beta"]
train_ref, from_cache = cached_reference_logps(policy, run.path("sft.pt"), encoded, tok.end_id, False, run.out, run.dtype)
dpo_rewards = dpo_beta * (pair_logps(run.load_policy("dpo.pt"), encoded, tok.end_id, average=False) - train_ref)
train_weights = dpo_gradient_weight(dpo_rewards[:, 0], dpo_rewards[:, 1])
assert len(encoded) == len(pairs)  # every pair encoded (a long one is truncated, never dropped)
gold_says = torch.tensor([p["chosen_gold"] - p["rejected_gold"] for p in pairs])
mislabelled, agreed = gold_says < 0, gold_says > 0
high = lambda which: (train_weights[which] > 0.9).float().mean().item()
print(f"{int(mislabelled.sum())} of {len(encoded)} training labels contradict the gold reward: their mean weight "
      f"{train_weights[mislabelled].mean().item():.3f}, the others' {train_weights[agreed].mean().item():.3f}; "
      f"weight above 0.9 in {high(mislabelled):.0%} of the mislabelled pairs, {high(agreed):.0%} of the others "
      f"(DPO at β = {dpo_beta}; reference log-probs from the stage's cache: {from_cache})")
claim("after training, the mislabelled pairs pull harder on average than the correctly labelled ones",
      train_weights[mislabelled].mean() > train_weights[agreed].mean(),
      mislabelled=round(train_weights[mislabelled].mean().item(), 3), others=round(train_weights[agreed].mean().item(), 3))
claim("the average mislabelled pair pulls with a weight above ½ (the policy ranks it against its label)",
      train_weights[mislabelled].mean() > 0.5, mean_weight=round(train_weights[mislabelled].mean().item(), 3))

# %% [markdown]
# ## Conservative DPO caps the margin, not the pull
# Conservative DPO (label smoothing ε, lesson 16) assumes each label is flipped with probability ε:
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
claim("conservative DPO's weight is 0 at β·h = log((1−ε)/ε), negative past it, and still near 1 − ε for a wrong label",
      abs(cdpo_weight[2].item()) < 1e-6 and cdpo_weight[3].item() < 0 and abs(cdpo_weight[0].item() - (1 - eps)) < 0.02,
      weight_at_minus_4=round(cdpo_weight[0].item(), 3))
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
# - The implicit reward r̂ = β·log π/π_ref; the loss is −log σ(r̂_w − r̂_l), written with logsigmoid,
#   one loss per pair, the logged rewards detached.
# - Each pair's gradient is −β·σ(r̂_l − r̂_w)·(∇log π(y_w) − ∇log π(y_l)): most weight for the pairs
#   ranked wrong — including pairs whose label is wrong. Conservative DPO stops pairs at a finite
#   margin; it does not tame the pull of a wrong label.
# - A new loss is a function of the margin h, registered in three lines.
# - **Exercises**: write them yourself and have them graded — `python -m minidpo grade dpo-loss`, `python -m minidpo grade conservative-dpo-loss`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
