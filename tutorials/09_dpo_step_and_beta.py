# %% [markdown]
# # 09 · One DPO step, and what β does
# **You need** lesson 07 (why the loss is −log σ(β·h)) and lesson 08 (the loss on a batch, the
# gradient weight). **You will see** one training step on the SFT model in the open, tensor by
# tensor: the cached reference log-probs, the loss at exactly ln 2, the gradient weight of every
# pair, one AdamW update. Then what β does to that step — under plain SGD it scales the update,
# under AdamW it does not, and where it acts instead (the saturation of each pair's weight) — and
# finally β on the whole run: a short sweep read on the held-out films (gold reward, KL, fluency).
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
from minidpo.harness.tutorial import lesson_knobs, show, tutorial_run
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

# %% [markdown]
# *Try*: `--set beta=0.05` (or set `beta` in the knobs cell and re-run from there): the loss falls
# about ten times less from ln 2 after the step, since near h = 0 the loss is ln 2 − β·h/2, while
# the margin h moves about as far: AdamW's step does not grow or shrink with β (the next part says why).

# %% [markdown]
# ## What β does to one step
# The same batch, the same start (the SFT weights), one step at each of three β. At h = 0 every
# pair's weight is σ(0) = ½ whatever β, so the gradient is β/2 times one fixed direction: **its
# size is proportional to β**. Plain SGD (θ ← θ − lr·g) passes that on: a ten times larger β, a
# ten times larger step. AdamW divides each coordinate by the root of its own running squared
# gradient; on the first step that is |g| itself, so the update is lr·sign(g) — **the scale β
# multiplies cancels**. (No gradient clipping here, to see the raw scale; the training loop clips
# at norm 1, another cut of the same scale.)

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

# %% [markdown]
# Read the columns: SGD's |Δθ| and Δh grow with β, a hundredfold across the table; AdamW's |Δθ|
# agrees across β to a few percent (Adam's ε, 1e-8, is not negligible beside the smallest
# gradients of a small β) and its Δh is the same. The loss after the step still differs,
# because the loss reads β·h. So under AdamW β does not set the step size. It acts in two other ways. **The saturation**: a
# pair's weight σ(−β·h) is ½ at h = 0, σ(−1) ≈ 0.27 at h = 1/β and under 0.05 past h = 3/β. A
# large β lets a pair stop pulling after a small change of its log-ratios; a small β keeps every
# pair pulling until the policy has moved far (the KL leash is long). **The scale of the implicit
# reward** β·log π/π_ref: the same h is a β times larger reward difference. Watch the saturation:
# a few AdamW steps on this one batch at each β, every pair's h and its weight. The margins h grow
# about alike at first (the steps are alike); what differs is how much each pair still pulls.

# %%
SATURATION_STEPS = 4 if run.fast else 12
traces = {}
for b in BETAS:
    model = run.load_policy("sft.pt").train()
    c = replace(cfg, beta=b)
    opt = make_optimizer(model, c.lr, c.weight_decay)
    mean_weight, median_h = [], []
    for _ in range(SATURATION_STEPS):
        loss, rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
        mean_weight.append(dpo_gradient_weight(*rec.implicit_rewards()).mean().item())
        median_h.append(rec.margin.detach().median().item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, rec, _ = batch_loss(model, batch, reference, c, run.tok.end_id)
    h = rec.margin.detach()
    w = dpo_gradient_weight(*rec.implicit_rewards())
    mean_weight.append(w.mean().item())
    median_h.append(h.median().item())
    traces[b] = {"margins": h.tolist(), "weights": w.tolist(), "mean_weight": mean_weight, "median_h": median_h}
    past = h > 3 / b
    largest = f"their largest weight {w[past].max().item():.3f}" if past.any() else "none"
    print(f"β = {b:4}: median h after 1, 2, 3 steps {median_h[1]:+.2f}, {median_h[2]:+.2f}, {median_h[3]:+.2f}; "
          f"after {SATURATION_STEPS} steps {h.median().item():+.2f} nats; "
          f"{int(past.sum())}/{len(h)} pairs past 3/β = {3 / b:g} ({largest}); mean weight {w.mean().item():.3f} "
          f"(½ at the start)")
fig = plots.beta_saturation_figure(traces, run.path("dpo_beta_saturation.png"))
show(fig)

# %% [markdown]
# ## β on the whole run: a short sweep
# `stage_dpo` (what `python -m minidpo dpo` runs) is the step above in a loop: the configured epochs
# over the pairs (two by default) at the default β, with a learning-rate warmup and cosine decay;
# lesson 10 reads it step by step. Here the same training at a few β, each policy sampled on the
# held-out films and read there: gold reward, win rate against the SFT model, KL to the reference,
# fluency. These are the policies of the `diversity` study (`sweep.trained`: the run's own DPO
# settings, cached in RUN/sweeps/; the default β is the pipeline's own `dpo.pt`), so lesson 14
# reuses them and a second run of this lesson only samples. Expect the KL to fall as β
# grows: a large β saturates early and stops the policy near the reference, while a small β keeps
# every pair's weight near ½, so all of them keep pulling.

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
print(f"the KL falls at every step up in β: {all(a > b for a, b in zip(kls, kls[1:]))} "
      f"({' > '.join(f'{k:.2f}' for k in kls)})")


# %% [markdown]
# ## What to remember
# - At step 0 the policy is the reference: every h is 0, the loss is ln 2, every pair's weight is
#   ½ — and the gradient is not zero.
# - Under AdamW, β does not set the size of a step; it sets where each pair stops pulling (its
#   weight σ(−β·h) is small past h ≈ 3/β) and the scale of the implicit reward.
# - In this sweep a small β let the policy go far from the reference (large KL) and a large β kept
#   it near (the line above checks it).
# - Next: lesson 10 reads a whole run — which curves to watch, and what DPO's implicit reward is worth.
