# %% [markdown]
# # 06 · REINFORCE with a KL penalty (RLHF, step 2)
# **You need** lessons 03–05 (the SFT model, the pairs, the reward model). **You will see** classic
# RLHF's second step, the objective max E[r] − β·KL(π‖π_ref) that lesson 07 solves in closed form:
# sample from the policy, score with the reward model, subtract β times the log-ratio to the
# reference, use the other samples of the same prompt as the baseline, push up log π of the good
# ones. One step in the open first, from the library's pieces, every tensor printed; then the whole
# run. Read the docstring of `minidpo/rlhf.py`: it lists every simplification.
# Run: `python tutorials/06_rlhf_reinforce.py` (about a minute after lesson 05).

# %%
import torch

from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import lesson_knobs, show, tutorial_run
from minidpo.evaluate import first_per_prompt
from minidpo.model import sequence_logps
from minidpo.rlhf import RLHFConfig, leave_one_out_advantages, reinforce_loss
from minidpo.rollouts import RLLoop, kl_estimates
from minidpo.harness.stages import ensure
from minidpo.training import make_optimizer

run = tutorial_run("06: REINFORCE with a KL penalty")
ensure(run, "eval_sft", "reward_model")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The one knob of this lesson's *Try* (below): β, the weight of the KL penalty. Its default is the
# stage's own, so the whole run further down is the pipeline's and is reused.

# %%
knobs = lesson_knobs(beta=run.settings(RLHFConfig).beta)

# %% [markdown]
# ## Steps 1–2: sample and score
# Two prompts, four samples each, at temperature 1 with no top-k: exactly the policy's distribution
# (REINFORCE's gradient is only unbiased for on-policy samples). The learned reward $r_\phi$ is
# normalised to mean 0, std 1 on SFT samples; the gold reward is printed beside it, for us only.

# %%
cfg = run.settings(RLHFConfig, prompts_per_step=2, k=4, beta=knobs.beta)
loop = RLLoop("rlhf", cfg, run.tok, run.path("sft.pt"), run.path("reward_model.pt"), run.out / "lesson06",
              run.device, run.dtype, quiet=True)
batch = loop.rollout(step=1)
for prompt, text, r, g in zip(batch.prompts, batch.texts, batch.reward, batch.gold):
    print(f"{prompt:28s} r_φ {r:+.2f} | gold {g:+.1f} | {text}")

# %% [markdown]
# ## Step 3: the return, with the KL penalty folded in
# $$R(x, y) = r_\phi(x, y) - \beta \sum_t \big[\log\pi(y_t|\ldots) - \log\pi_{ref}(y_t|\ldots)\big]$$
# The sum estimates the sequence KL, KL(π‖π_ref) = E_{y∼π}[log π(y|x)/π_ref(y|x)], from the one
# sample y itself. Two estimators are logged (the names are John Schulman's): **k1** = Σ_t log π/π_ref,
# the plain log-ratio, unbiased but negative for some samples; **k3** = Σ_t (π_ref/π − 1 − log π_ref/π),
# also unbiased when the samples come from π, and never negative. The penalty uses k1. At step 1
# the policy is the reference, so the penalty is 0 and R = r_φ.

# %%
current = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask)
kl_k1, kl_k3 = kl_estimates(current.token_logps, batch.ref_token_logps)
returns = (batch.reward - cfg.beta * kl_k1).view(cfg.prompts_per_step, cfg.k)
print("k1 KL per sample:", kl_k1)
print("returns (prompt × sample):\n", returns)

# %% [markdown]
# ## Step 4: the leave-one-out baseline
# $$A_i = R_i - \frac{1}{K-1}\sum_{j \ne i} R_j$$
# A baseline that does not use $R_i$ itself keeps the gradient unbiased; within each prompt the
# advantages sum to zero, so only *relative* quality counts.

# %%
advantages = leave_one_out_advantages(returns)
print("advantages:\n", advantages)
print("sum per prompt:", advantages.sum(1))

# %% [markdown]
# ## Step 5: the loss and the update
# $$\mathcal{L} = -\frac{1}{N}\sum_i A_i \log\pi(y_i|x_i)$$
# $A$ is a constant; only $\log\pi$ carries gradient. Its expectation is the gradient of
# $\mathbb{E}[r_\phi] - \beta\,\mathrm{KL}(\pi\|\pi_{ref})$ (a test checks this exactly on a GPT
# small enough to enumerate every response).

# %%
loss = reinforce_loss(current.logps, advantages.flatten())
optimizer = make_optimizer(loop.policy, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
optimizer.step()
after = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask).logps.detach()
print(f"loss {loss.item():+.4f}; change of log π per sample after one step: {after - current.logps.detach()}")
print("corr(advantage, change of log π):",
      torch.corrcoef(torch.stack([advantages.flatten(), after - current.logps.detach()]))[0, 1].item())

# %% [markdown]
# ## The whole run: proxy reward, gold reward, KL
# `P.stage_rlhf(run, beta=knobs.beta)` is the pipeline's RLHF stage with this β: β is part of the
# stage's provenance key, so the default β reuses the pipeline's run and any other β trains anew.
#
# *Try*: `--set beta=0.0` (or set `beta` in the knobs cell and re-run from there): with no KL
# penalty nothing holds the policy near the reference. The lesson prints, over the last quarter of
# the steps, the KL to the reference and how far the proxy (reward model) and the gold reward rose
# from step 1: the KL grows, and the proxy gains more over the gold reward than with the default β
# — the gap lesson 13 measures as over-optimisation.

# %%
m = P.stage_rlhf(run, beta=knobs.beta)
h = m["history"]
for r in h[:: max(1, len(h) // 8)] + [h[-1]]:
    print(f"step {r['step']:4d} | proxy {r['proxy_reward']:+.3f} | gold {r['gold_reward']:+.3f} | "
          f"KL {r['kl_k1']:.3f} (k3 {r['kl_k3']:.3f}) | entropy {r['entropy']:.3f} | length {r['length']:.1f}")
fig = plots.rlhf_curves(h, run.path("rlhf_curves.png"))
print("figure:", run.path("rlhf_curves.png"))
per = m["seconds_per_step"]
total = sum(per.values())
print("seconds per step: " + ", ".join(f"{k} {v:.3f} ({v / total:.0%})" for k, v in per.items()))
tail = h[-max(1, len(h) // 4):]  # the last quarter of the logged steps
mean = lambda key: sum(r[key] for r in tail) / len(tail)
kl_end = mean("kl_k1")
proxy_rise, gold_rise = mean("proxy_reward") - h[0]["proxy_reward"], mean("gold_reward") - h[0]["gold_reward"]
print(f"β = {knobs.beta}: last {len(tail)} logged steps: KL {kl_end:.3f}; from step {h[0]['step']}: "
      f"proxy {proxy_rise:+.3f}, gold {gold_rise:+.3f}, proxy − gold {proxy_rise - gold_rise:+.3f}")
show(fig)

# %% [markdown]
# ## Before / after on held-out films
# The same prompts, but the RLHF policy and the SFT model are sampled with independent seeds (the
# evaluation's seed + 200 and seed + 100): one seed for both would couple them, so a policy still
# near the SFT model would repeat its samples and tie. So each line below is two independent draws
# for one film, not one sample before and after training.
# %%
ev = P.stage_eval_rlhf(run)
sft = P.stage_eval_sft(run)
print(f"RLHF: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f}")
for i in first_per_prompt(sft["samples"])[:5]:  # one sample each of five films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT : {a['response']} ({a['gold']:+.1f})\n   RLHF: {b['response']} ({b['gold']:+.1f})")

# %% [markdown]
# ## What to remember
# - RLHF's policy step: sample on-policy, score with the reward model, subtract β times the log-ratio
#   to the reference, compare each sample with the others of its prompt (leave-one-out), and push up
#   log π of the better ones.
# - Without the KL penalty (β = 0) nothing holds the policy near the reference, and the proxy reward
#   outruns the gold one.
# - Next, lesson 07: this objective has a closed-form optimum, and DPO fits it without sampling.
# - **Exercises**: write them yourself and have them graded — `python -m minidpo grade reinforce-advantages`, `python -m minidpo grade reinforce-loss`, `python -m minidpo grade group-advantages`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
