# %% [markdown]
# # 09 · One DPO step, and what β does
# **You need** lesson 07 (why the loss is −log σ(β·h)) and lesson 08 (the loss on a batch, the
# gradient weight). **You will see** one training step on the SFT model in the open, tensor by
# tensor: the cached reference log-probs, the loss at exactly ln 2, the gradient weight of every
# pair, one AdamW update. Then what β does to that step — under plain SGD it scales the update,
# under AdamW it does not, and where it acts instead (the saturation of each pair's weight, which
# reweights the pairs but does not stop the policy) — and finally β on the whole run: a short
# sweep read on the held-out films (gold reward, KL, fluency, and the held-out margin).
# Lesson 10 then reads the default run in detail.
# Run: `python tutorials/09_dpo_step_and_beta.py` (about a minute and a half; `--fast`: seconds).

# %%
import math
from dataclasses import replace

import torch

from minidpo.checkpoint import read_json
from minidpo.dpo import DPOConfig, batch_loss, pair_logps
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import claim, lesson_knobs, show, tutorial_run
from minidpo.losses import dpo_gradient_weight
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.studies import sweep
from minidpo.studies.diversity import DIVERSITY_BETAS, FAST_DIVERSITY_BETAS
from minidpo.training import make_optimizer

run = tutorial_run("09: one DPO step, and what β does")
ensure(run, "eval_sft", "prefs")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs of this lesson's *Try*: β of the step in the open below (the runs at the end keep
# their own β values, so their numbers stay those of `python -m minidpo dpo` and of the sweep).

# %%
knobs = lesson_knobs(beta=0.5)

# %% [markdown]
# ## One step in the open
# **The batch.** Each pair becomes two rows, prompt + chosen and prompt + rejected, tokenized
# separately so no BPE merge crosses the boundary; the response mask is True on response tokens.
# **The reference** scores every pair once, before training (and is never run again):
# $\log\pi_{ref}(y_w|x)$ and $\log\pi_{ref}(y_l|x)$, a tensor of shape (N, 2).

# %%
cfg = run.settings(DPOConfig, beta=knobs.beta)
policy = run.load_policy("sft.pt").train()
pairs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(run.tok, pairs, policy.config.block_size)
batch = encoded[:cfg.batch_size]
reference = pair_logps(run.load_policy("sft.pt"), batch, run.tok.end_id, cfg.average_logps)
print(f"a batch of {len(batch)} pairs; reference log-probs {tuple(reference.shape)}; first three:\n{reference[:3]}")

# %% [markdown]
# **The loss** (DPO eq. 7), with the policy's own log-probs from one forward pass over the
# 2 × batch rows:
# $$h = \Big[\log\tfrac{\pi(y_w|x)}{\pi_{ref}(y_w|x)}\Big] - \Big[\log\tfrac{\pi(y_l|x)}{\pi_{ref}(y_l|x)}\Big],
# \qquad \mathcal{L} = -\log\sigma(\beta h)$$
# At step 0 the policy *is* the reference, so every h is 0 and the loss is exactly ln 2; the
# implicit rewards $\hat r = \beta\log\pi/\pi_{ref}$ are all 0 — and the gradient is not.

# %%
loss, record, metrics = batch_loss(policy, batch, reference, cfg, run.tok.end_id)
first_loss = loss.item()
print(f"step 0 (β = {cfg.beta}): loss {first_loss:.6f} (ln 2 = {math.log(2):.6f}); "
      f"rewards/chosen {metrics['rewards/chosen']:+.2e}, margins {metrics['rewards/margins']:+.2e}")
claim("at step 0 the loss is ln 2 and the margins are 0", abs(first_loss - math.log(2)) < 1e-6
      and metrics["rewards/margins"] == 0, loss=round(first_loss, 6))
print("log π(y_w) of the first three pairs:", record.chosen_logps[:3].detach())

# %% [markdown]
# **The gradient** (the paper's §4): $\nabla\mathcal{L} = -\beta\,\sigma(\hat r_l - \hat r_w)\,
# [\nabla\log\pi(y_w|x) - \nabla\log\pi(y_l|x)]$. The weight $\sigma(\hat r_l - \hat r_w) = \sigma(-\beta h)$
# is ½ for every pair now; it shrinks for pairs the implicit reward already ranks right.
# One AdamW step (the training loop's optimizer, at its full learning rate), then the same batch again:

# %%
weights = dpo_gradient_weight(*record.implicit_rewards())
print("gradient weight of each pair at step 0:", weights[:6])
optimizer = make_optimizer(policy, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0).item()
optimizer.step()
with torch.no_grad():
    after, record_after, metrics_after = batch_loss(policy, batch, reference, cfg, run.tok.end_id)
margin_moved = (record_after.margin - record.margin.detach()).mean().item()
print(f"gradient norm {grad_norm:.3f}; after one step the same batch: loss {first_loss:.4f} -> {after.item():.4f} "
      f"(fell by {first_loss - after.item():.4f}); mean margin h moved {margin_moved:+.4f} nats; "
      f"accuracy {metrics_after['rewards/accuracies']:.2f}")
claim("every weight is ½ at step 0, the gradient is not zero, and one step lowers the loss",
      torch.allclose(weights, torch.full_like(weights, 0.5)) and grad_norm > 0 and after.item() < first_loss,
      gradient_norm=round(grad_norm, 3), loss_after=round(after.item(), 4))

# %% [markdown]
# *Try*: `--set beta=0.05` (or set `beta` in the knobs cell and re-run from there): the loss falls
# about ten times less from ln 2 after the step, since near h = 0 the loss is ln 2 − β·h/2, while
# the margin h moves about as far: AdamW's step does not grow or shrink with β (the next part says why).

# %% [markdown]
# ## What β does to one step
# The same batch, the same start (the SFT weights), one step at each of three β. At h = 0 every
# pair's weight is σ(0) = ½ whatever β, so the gradient is β/2 times one fixed direction: **its
# size is proportional to β**. Plain SGD (θ ← θ − lr·g) passes that on: a ten times larger β, a
# ten times larger step. AdamW divides each coordinate by the root of its own running mean of
# squared gradients (its β₂ = 0.95: a memory of about 1/(1 − 0.95) = 20 steps); on the first step that
# is |g| itself, so the update is lr·sign(g) — **the scale β multiplies cancels**. (No gradient
# clipping here, to see the raw scale; the training loop clips at norm 1, another cut of the same
# scale.)

# %%
BETAS = (0.05, 0.5, 5.0)


def one_step(beta: float, optimizer_name: str) -> dict:
    """One update of a fresh copy of the SFT model on `batch` at `beta`; sizes of what moved."""
    model = run.load_policy("sft.pt").train()
    c = replace(cfg, beta=beta)
    loss, rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
    start = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    g = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()
    opt = (make_optimizer(model, c.lr, c.weight_decay) if optimizer_name == "AdamW"
           else torch.optim.SGD(model.parameters(), lr=c.lr))
    opt.step()
    update = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(model.parameters(), start))).item()
    with torch.no_grad():
        new_loss, new_rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
    return {"grad_norm": g, "update": update, "margin_moved": (new_rec.margin - rec.margin.detach()).mean().item(),
            "loss_before": loss.item(), "loss_after": new_loss.item()}


steps = {(b, o): one_step(b, o) for b in BETAS for o in ("SGD", "AdamW")}
print("   β  optimizer  |grad|    |Δθ|       Δh (mean)   loss ln 2 ->")
for (b, o), s in steps.items():
    print(f"{b:5.2f}  {o:9s} {s['grad_norm']:8.4f}  {s['update']:.3e}  {s['margin_moved']:+.3e}  {s['loss_after']:.5f}")
sgd_ratio = steps[(BETAS[-1], "SGD")]["update"] / steps[(BETAS[0], "SGD")]["update"]
adam_ratio = steps[(BETAS[-1], "AdamW")]["update"] / steps[(BETAS[0], "AdamW")]["update"]
print(f"update size at β = {BETAS[-1]} over β = {BETAS[0]}: SGD {sgd_ratio:.1f}× (β's ratio: "
      f"{BETAS[-1] / BETAS[0]:.0f}×), AdamW {adam_ratio:.4f}×")
moved = [steps[(b, "AdamW")]["margin_moved"] for b in BETAS]
sgd_h_ratio = steps[(BETAS[-1], "SGD")]["margin_moved"] / steps[(BETAS[0], "SGD")]["margin_moved"]
claim(f"SGD's step grows with β in proportion (within 1 %), and its change of h nearly so (within 3 %): "
      f"{BETAS[-1] / BETAS[0]:.0f}-fold across the table", abs(sgd_ratio / (BETAS[-1] / BETAS[0]) - 1) < 0.01
      and abs(sgd_h_ratio / (BETAS[-1] / BETAS[0]) - 1) < 0.03, sgd_ratio=round(sgd_ratio, 2), dh_ratio=round(sgd_h_ratio, 2))
claim("AdamW's step is the same size whatever β (within 5 %), and so is its change of h",
      abs(adam_ratio - 1) < 0.05 and max(moved) / min(moved) < 1.05, adam_ratio=round(adam_ratio, 4))

# %% [markdown]
# Read the columns: SGD's |Δθ| and Δh grow in proportion to β (the claim gives both ratios);
# AdamW's |Δθ| agrees across β to a few percent (Adam's ε, 1e-8, is not negligible beside the smallest
# gradients of a small β) and its Δh is the same. The loss after the step still differs,
# because the loss reads β·h. So under AdamW β does not set the step size. It acts in two other
# ways. **The saturation**: a pair's weight σ(−β·h) is ½ at h = 0, σ(−1) ≈ 0.27 at h = 1/β and
# under 0.05 past h = 3/β. A large β makes a pair's weight small after a small change of its
# log-ratios; a small β keeps every pair's weight near ½ until the policy has moved far. **The
# scale of the implicit reward** β·log π/π_ref: the same h is a β times larger reward difference.
#
# Does a small weight stop the policy? Watch: twelve AdamW steps on this one batch at each β,
# every pair's h and weight, and each step's gradient norm and update size. Two numbers summarise
# the weights: their mean, and the **effective number of pulling pairs** (Σw)²/Σw² — 32 when all 32
# pull alike, 1 when one pair carries the whole gradient.

# %%
SATURATION_STEPS = 4 if run.fast else 12
traces = {}
for b in BETAS:
    model = run.load_policy("sft.pt").train()
    c = replace(cfg, beta=b)
    opt = make_optimizer(model, c.lr, c.weight_decay)
    mean_weight, max_weight, median_h, n_pulling, grad_norms, updates = [], [], [], [], [], []
    for _ in range(SATURATION_STEPS):
        loss, rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
        w = dpo_gradient_weight(*rec.implicit_rewards())
        mean_weight.append(w.mean().item())
        max_weight.append(w.max().item())
        n_pulling.append((w.sum() ** 2 / (w ** 2).sum()).item())
        median_h.append(rec.margin.detach().median().item())
        opt.zero_grad()
        loss.backward()
        grad_norms.append(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item())
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        updates.append(torch.sqrt(sum(((p.detach() - q) ** 2).sum() for p, q in zip(model.parameters(), before))).item())
    with torch.no_grad():
        _, rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
    h = rec.margin.detach()
    w = dpo_gradient_weight(*rec.implicit_rewards())
    mean_weight.append(w.mean().item())
    max_weight.append(w.max().item())
    n_pulling.append((w.sum() ** 2 / (w ** 2).sum()).item())
    median_h.append(h.median().item())
    traces[b] = {"margins": h.tolist(), "weights": w.tolist(), "mean_weight": mean_weight, "max_weight": max_weight,
                 "median_h": median_h, "n_pulling": n_pulling, "grad_norms": grad_norms, "updates": updates}
    past = h > 3 / b
    largest = f"their largest weight {w[past].max().item():.3f}" if past.any() else "none"
    print(f"β = {b:4}: median h after 1, 2, 3 steps {median_h[1]:+.2f}, {median_h[2]:+.2f}, {median_h[3]:+.2f}; "
          f"after {SATURATION_STEPS} steps {h.median().item():+.2f} nats; "
          f"{int(past.sum())}/{len(h)} pairs past 3/β = {3 / b:g} ({largest}); mean weight {w.mean().item():.3f} "
          f"(½ at the start); effective pulling pairs {n_pulling[0]:.0f} -> {n_pulling[-1]:.1f}")
    print(f"          gradient norm, step 1 -> {SATURATION_STEPS}: {grad_norms[0]:.3f} -> {grad_norms[-1]:.4f} "
          f"(×{grad_norms[-1] / grad_norms[0]:.3g}); AdamW's update |Δθ|: {updates[0]:.3f} -> {updates[-1]:.3f} "
          f"(×{updates[-1] / updates[0]:.3g})")
fig = plots.beta_saturation_figure(traces, run.path("dpo_beta_saturation.png"))
show(fig)

# %% [markdown]
# **Reading it.** At the largest β the weights collapse within a few steps — and the policy does not
# stop: its median h keeps growing. The gradient shrank, yet AdamW's update shrank less (the
# claim below compares the two): Adam divides each coordinate by a running average of its past
# gradients' size, so a gradient that shrinks is partly rescaled back up. So what does the
# saturation control, if not the step size?
# - **Which pairs the step follows.** Adam rescales each *coordinate* (parameter), not each pair:
#   within the gradient, a saturated pair keeps its tiny share. At a large β the step follows the
#   few pairs still unsaturated (the effective number of pulling pairs collapses); at a small β all
#   pairs pull alike.
# - **How noisy the step is.** A gradient carried by a few pairs is an average over few examples:
#   in training, a different few in every batch, so its direction varies more from step to step.
#
# *If Adam cancels β's scale, why not the saturation?* In principle it cancels a *uniform* part —
# a gradient equally smaller in every coordinate — once its memory of the earlier, larger gradients
# has faded (β₂ = 0.95: some 20 steps, longer than this experiment runs, which does not measure
# it). It cannot cancel the *relative* part: the weights differ from pair to pair, and rescaling
# coordinates cannot give a saturated pair back its share.

# %%
big, small = traces[BETAS[-1]], traces[BETAS[0]]
print(f"β = {BETAS[-1]}, after each step: mean weight {', '.join(f'{x:.3f}' for x in big['mean_weight'][1:])}; "
      f"median h {', '.join(f'{x:.2f}' for x in big['median_h'][1:])}")
claim(f"at β = {BETAS[-1]} the mean weight is below 0.05 after 3 steps (a tenth of its start) and falls below "
      f"0.005 by the end", big["mean_weight"][3] < 0.05 and big["mean_weight"][-1] < 0.005,
      after_3=round(big["mean_weight"][3], 4), end=round(big["mean_weight"][-1], 4))
claim(f"yet from step 3 to the end the median h at β = {BETAS[-1]} grows more than 1.5×: the policy does not stop",
      big["median_h"][-1] > 1.5 * big["median_h"][3],
      median_h_after_3=round(big["median_h"][3], 3), median_h_end=round(big["median_h"][-1], 3))
claim(f"at β = {BETAS[-1]} AdamW's update shrank less than the gradient did",
      big["updates"][0] / big["updates"][-1] < big["grad_norms"][0] / big["grad_norms"][-1],
      gradient_shrank=round(big["grad_norms"][0] / big["grad_norms"][-1], 1),
      update_shrank=round(big["updates"][0] / big["updates"][-1], 1))
claim(f"the saturation reweights the pairs: at the end, fewer pairs pull effectively at β = {BETAS[-1]} than at β = {BETAS[0]}",
      big["n_pulling"][-1] < small["n_pulling"][-1] / 2,
      at_large_beta=round(big["n_pulling"][-1], 1), at_small_beta=round(small["n_pulling"][-1], 1))
claim("after one step the median h is the same at every β (within 5 %)",
      max(t["median_h"][1] for t in traces.values()) < 1.05 * min(t["median_h"][1] for t in traces.values()),
      median_h=[round(t["median_h"][1], 3) for t in traces.values()])

# %% [markdown]
# ## β on the whole run: a short sweep
# `stage_dpo` (what `python -m minidpo dpo` runs) is the step above in a loop: the configured epochs
# over the pairs (two by default) at the default β, with a learning-rate warmup and cosine decay;
# lesson 10 reads it step by step. Here the same training at a few β, each policy sampled on the
# held-out films and read there: gold reward, win rate against the SFT model, KL to the reference,
# fluency. These are the policies of the `diversity` study (`sweep.trained`: the run's own DPO
# settings, cached in RUN/sweeps/; the default β is the pipeline's own `dpo.pt`), so lesson 15
# reuses them and a second run of this lesson only samples.
#
# What to expect? Not what the step alone suggests: AdamW gives every β the same step size, and the
# saturation does not stop a policy (β = 5 kept moving above). A large β does change *which* pairs
# drive each step — the few still unsaturated, a different few in every batch — so the direction of
# the steps varies more, and steps of one size in varying directions add up to less distance than
# steps that agree. That is a likely reason for the order of the KLs below, not one this lesson
# measures; the order itself is measured.
#
# The last column is the held-out margin **β·h** (`eval/rewards/margins`, mean over the held-out
# pairs): lesson 10 reads a margin rising *within* a run as a sign of health. Across runs of
# different β it is on different scales: β multiplies h.

# %%
m = P.stage_dpo(run)    # the default run, one point of the sweep
ev = P.stage_eval_dpo(run)
# %%
sweep_betas = sorted({*(FAST_DIVERSITY_BETAS if run.fast else DIVERSITY_BETAS)["dpo"], m["config"]["beta"]})
sweep_rows = {}
for b in sweep_betas:
    checkpoint = sweep.trained(run, "dpo", b)
    s = ev if checkpoint == run.path("dpo.pt") else sweep.evaluate(run, checkpoint)
    trained = read_json(checkpoint.with_name(checkpoint.stem + "_metrics.json"))
    sweep_rows[b] = {**{k: s[k] for k in ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "fluency")},
                     "margin": trained["final"]["eval/rewards/margins"]}
    r = sweep_rows[b]
    print(f"β = {b:4}: gold {r['gold_reward']:+.3f}, win rate {r['win_rate_vs_sft']:.3f}, KL {r['kl_to_ref']:.2f}, "
          f"fluency {r['fluency']:.3f}; held-out reward margin β·h {r['margin']:+.3f}")
kls = [sweep_rows[b]["kl_to_ref"] for b in sweep_betas]
golds = [sweep_rows[b]["gold_reward"] for b in sweep_betas]
margins = [sweep_rows[b]["margin"] for b in sweep_betas]
hs = [sweep_rows[b]["margin"] / b for b in sweep_betas]
print(f"held-out h = margin/β: {', '.join(f'β = {b}: {h:+.3f}' for b, h in zip(sweep_betas, hs))}")
print(f"gold reward (one seed per β, each at its own KL: no comparison of β): "
      f"{', '.join(f'β = {b}: {g:+.3f}' for b, g in zip(sweep_betas, golds))}")
falls = lambda xs: all(a > b for a, b in zip(xs, xs[1:]))
claim("in this sweep a small β let the policy go far from the reference and a large β kept it near: "
      "the KL falls at every step up in β", falls(kls), KL=" > ".join(f"{k:.2f}" for k in kls))
claim("the held-out margin β·h rises with β", falls(margins[::-1]), margin=[round(m, 3) for m in margins])
claim("the margin in nats, h = β·h / β, falls as β grows: β·h rises only because β multiplies it",
      falls(hs), h=[round(h, 3) for h in hs])

# %% [markdown]
# What this sweep can say is the order of the KL and of the margin with β (the claims above). It
# cannot rank the β by gold reward: it is one seed per β, and each policy sits at a different KL,
# so a gold difference mixes β with how far the policy went. Lesson 13 reads gold at matched KL,
# over seeds. Nor does a larger margin β·h across β say a better policy: β sets its scale.


# %% [markdown]
# ## What to remember
# - At step 0 the policy is the reference: every h is 0, the loss is ln 2, every pair's weight is
#   ½ — and the gradient is not zero.
# - Under AdamW, β does not set the size of a step; it sets the scale of the implicit reward and
#   each pair's weight σ(−β·h) (small past h ≈ 3/β). A small weight does not stop the policy — Adam
#   partly rescales a shrinking gradient — but it decides which pairs the step follows.
# - In this sweep a small β let the policy go far from the reference (large KL) and a large β kept
#   it near (the claim above checks it); one seed per β at different KLs, it ranks no β by gold.
# - Compare runs of different β by gold reward at matched KL, over seeds (lesson 13), never by the
#   margin β·h: β sets its scale.
# - Next: lesson 10 reads a whole run — which curves to watch, and what DPO's implicit reward is worth.
