# %% [markdown]
# # 06 · REINFORCE with a KL penalty (RLHF, step 2)
# **You need** lessons 03–05 (the SFT model, the pairs, the reward model). **You will see** classic
# RLHF's second step, the objective max E[r] − β·KL(π‖π_ref) that lesson 07 solves in closed form:
# sample from the policy, score with the reward model, subtract β times the log-ratio to the
# reference, use the other samples of the same prompt as the baseline, push up log π of the good
# ones. One step in the open first, from the library's pieces, every tensor printed; then the whole
# run. Read the docstring of `minidpo/rlhf.py`: it lists every simplification.
# Run: `python tutorials/06_rlhf_reinforce.py` (under a minute after lesson 05).

# %%
import random

import torch

from minidpo import world
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import claim, lesson_knobs, show, tutorial_run
from minidpo.evaluate import first_per_prompt
from minidpo.grpo import group_advantages
from minidpo.model import sequence_logps
from minidpo.reward_model import load_reward_model, score
from minidpo.rlhf import RLHFConfig, leave_one_out_advantages, reinforce_loss
from minidpo.rollouts import RLLoop, kl_estimates
from minidpo.sampling import make_generator, sample
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
# (REINFORCE's gradient is only unbiased for on-policy samples). $r_\phi$ is lesson 05's reward
# model *after* its normalisation: the raw score minus its mean, divided by its std, both measured on
# SFT samples (so here r_φ has mean 0 and std 1 on SFT samples; lesson 05 printed raw scores). The
# gold reward r\* (lesson 03) is printed beside it, for us only: the policy never sees it.

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
claim("at step 1 the policy is the reference: every k1 is 0 and R = r_φ", kl_k1.abs().max().item() < 1e-5,
      largest_k1=kl_k1.abs().max().item())

# %% [markdown]
# ## Step 4: the baseline — leave-one-out, and GRPO's group normalisation
# The K samples of one prompt form a **group**; each sample is compared with the others of its own
# group (never with other prompts' samples: a prompt whose answers are all good must not lift
# them over a prompt whose answers are all poor). REINFORCE here uses the leave-one-out baseline:
# $$A_i = R_i - \frac{1}{K-1}\sum_{j \ne i} R_j$$
# A baseline that does not use $R_i$ itself keeps the gradient unbiased; within each prompt the
# advantages sum to zero, so only *relative* quality counts.
#
# **GRPO's group-normalised advantage** (DeepSeekMath eq. 3; `minidpo/grpo.py`; `python -m minidpo grpo`
# trains it) takes the same group and also divides by its spread:
# $$A_i = \frac{R_i - \mathrm{mean}(R_1..R_K)}{\mathrm{std}(R_1..R_K) + \varepsilon}, \qquad \varepsilon = 10^{-4}$$
# with the *sample* standard deviation (divided by K − 1, `torch.std`'s default) of the sample's own
# group. ε is there for a group whose rewards are all equal: its std is 0, and (R − mean)/std would be
# 0/0 = NaN; with ε every advantage of that group is 0 (no signal). The two are close relatives: the
# leave-one-out advantage is $\frac{K}{K-1}(R_i - \mathrm{mean})$, so GRPO's is it times
# $\frac{K-1}{K}$, divided by the group's std — each group's advantages end with spread ~1, however
# spread its rewards were. Both on the returns above (at step 1 they are the rewards):

# %%
advantages = leave_one_out_advantages(returns)
print("leave-one-out advantages:\n", advantages)
print("sum per prompt:", advantages.sum(1))
claim("within each prompt the leave-one-out advantages sum to 0", advantages.sum(1).abs().max().item() < 1e-5,
      largest_sum=advantages.sum(1).abs().max().item())
K = cfg.k
group_mean = returns.mean(1, keepdim=True)   # (prompts, 1): one mean per group
group_std = returns.std(1, keepdim=True)     # the sample std: divided by K − 1
grpo_by_hand = (returns - group_mean) / (group_std + 1e-4)
grpo = group_advantages(returns)
print("group-normalised advantages (GRPO):\n", grpo)
print("std of each group's advantages:", grpo.std(1))
claim("GRPO's advantages by hand are the library's", (grpo_by_hand - grpo).abs().max().item() < 1e-6,
      difference=(grpo_by_hand - grpo).abs().max().item())
claim("leave-one-out = K/(K−1)·(R − group mean)", (advantages - K / (K - 1) * (returns - group_mean)).abs().max().item() < 1e-5,
      K=K)
equal_group = group_advantages(torch.full((1, K), 0.3))
claim("a group of equal rewards gets advantage 0, not NaN", bool((equal_group == 0).all()),
      advantages=equal_group.tolist())

# %% [markdown]
# ## Step 5: the loss and the update
# $$\mathcal{L} = -\frac{1}{N}\sum_i A_i \log\pi(y_i|x_i)$$
# $A$ is a constant; only $\log\pi$ carries gradient. The loss's gradient is, in expectation, *minus*
# the gradient of the objective $\mathbb{E}[r_\phi] - \beta\,\mathrm{KL}(\pi\|\pi_{ref})$: a descent
# step on the loss is an ascent step on the objective. (`tests/core/test_rlhf_pieces.py` checks it
# by Monte Carlo on a GPT small enough to list every response: the mean of the estimator over
# 200,000 samples lands within 5 % of the exact gradient.)

# %%
loss = reinforce_loss(current.logps, advantages.flatten())
optimizer = make_optimizer(loop.policy, cfg.lr, cfg.weight_decay)
optimizer.zero_grad()
loss.backward()
optimizer.step()
after = sequence_logps(loop.policy, batch.rows_ids, batch.rows_mask).logps.detach()
print(f"loss {loss.item():+.4f}; change of log π per sample after one step: {after - current.logps.detach()}")
push = torch.corrcoef(torch.stack([advantages.flatten(), after - current.logps.detach()]))[0, 1].item()
print(f"corr(advantage, change of log π): {push:.3f}")
claim("one step moves log π with the advantage: the higher a sample's advantage, the more its log π rose "
      "(correlation above 0.5)", push > 0.5, correlation=round(push, 3))

# %% [markdown]
# ## The whole run: proxy reward, gold reward, KL
# `P.stage_rlhf(run, beta=knobs.beta)` is the pipeline's RLHF stage with this β: β is part of the
# stage's provenance key, so the default β reuses the pipeline's run and any other β trains anew.
# Each logged step is the mean over that step's samples: **proxy** is r_φ (normalised), **gold**
# is r\*, **KL** the k1 estimate (k3 beside it), **entropy** the mean per-token entropy of π over
# the samples' response tokens (nats: how unsure the policy is of its next token), **length** the
# response's tokens, `<|end|>` included.
#
# How far did the proxy and the gold reward rise? They are on different scales (r_φ has std 1 on
# SFT samples, r\* has its own), so both are put in **SFT standard deviations**: the mean over the
# last quarter of the steps, minus the mean on 512 fresh SFT samples of training films, divided by
# the std there. (One step's batch would be a noisy baseline: 64 samples.)
#
# *Try*: `--set beta=0.0` (or set `beta` in the knobs cell and re-run from there): with no KL
# penalty nothing holds the policy near the reference. The KL grows, and the proxy's rise gains on
# the gold reward's, in SFT standard deviations, compared with the default β — the gap lesson 14
# measures as over-optimisation.

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
# the SFT baseline of both rewards: fresh SFT samples of training films, scored by r_φ and by r*
train_titles = world.split_titles()[0]
rng = random.Random(run.seed + 11)
base_prompts = [world.make_prompt(rng.choice(train_titles)) for _ in range(512)]
sft_model = run.load_policy("sft.pt")
base_ids = sample(sft_model, run.tok, base_prompts, make_generator(run.seed + 11, run.device), dtype=run.dtype)
base = {"proxy_reward": score(load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size),
                              run.tok, base_prompts, base_ids, dtype=run.dtype),
        "gold_reward": torch.tensor([world.gold_reward(p, run.tok.decode_response(r)) for p, r in zip(base_prompts, base_ids)])}
rise = {k: (mean(k) - v.mean().item()) / v.std().item() for k, v in base.items()}
proxy_rise, gold_rise = rise["proxy_reward"], rise["gold_reward"]
print(f"SFT samples: proxy {base['proxy_reward'].mean():+.3f} ± {base['proxy_reward'].std():.3f}, "
      f"gold {base['gold_reward'].mean():+.3f} ± {base['gold_reward'].std():.3f} (± a std over the 512 samples)")
print(f"β = {knobs.beta}: last {len(tail)} logged steps: KL {kl_end:.3f}; risen from SFT, in SFT standard deviations: "
      f"proxy {proxy_rise:+.3f}, gold {gold_rise:+.3f}, proxy − gold {proxy_rise - gold_rise:+.3f}")
claim("RL raised both the proxy and the gold reward above SFT's", proxy_rise > 0 and gold_rise > 0,
      proxy=round(proxy_rise, 3), gold=round(gold_rise, 3))
# the standard error of proxy − gold: paired per logged step (the tail) and per SFT sample (the baseline)
sd_proxy, sd_gold = base["proxy_reward"].std().item(), base["gold_reward"].std().item()
tail_gap = torch.tensor([r["proxy_reward"] / sd_proxy - r["gold_reward"] / sd_gold for r in tail])
base_gap = base["proxy_reward"].float().cpu() / sd_proxy - base["gold_reward"].float() / sd_gold
gap = proxy_rise - gold_rise
gap_se = ((tail_gap.var().item() / len(tail) if len(tail) > 1 else float("inf"))
          + base_gap.var().item() / len(base_gap)) ** 0.5
verdict = (f"the proxy rose {'MORE' if gap > 0 else 'less'} than the gold reward" if abs(gap) > 2 * gap_se
           else "no measurable difference between the proxy's rise and the gold reward's")
print(f"here, in SFT standard deviations: {verdict} (proxy − gold {gap:+.3f} ± {gap_se:.3f}, one standard error, "
      f"the {len(tail)} logged steps taken as independent; a difference needs more than 2 of them)")
show(fig)

# %% [markdown]
# Which should rise more? Two forces pull opposite ways. A proxy that correlates imperfectly with
# the truth (lesson 05 measured its correlation on fresh samples) sees only part of a real gain:
# when the gold reward rises by one SFT std, a proxy with correlation ρ is expected to rise by about
# ρ (were the two jointly normal) — the proxy lags. But the policy climbs the proxy, so it seeks
# what the proxy over-rates — the proxy leads, with gains the gold reward does not confirm
# (over-optimisation). Which wins depends on β, on the reward model, and on the run itself; the line
# above says which won here, or that this run cannot tell (its standard error counts the noise of
# the logged batches and of the SFT baseline, not that of another seed). The *Try* (β = 0) and lesson 14 show the second force winning.

# %% [markdown]
# ## Before / after on held-out films
# The same prompts, but the RLHF policy and the SFT model are sampled with independent seeds (the
# evaluation's seed + 200 and seed + 100): one seed for both would couple them, so a policy still
# near the SFT model would repeat its samples and tie. So each line below is two independent draws
# for one film, not one sample before and after training.
# The **win rate vs SFT** is P[r\*(x, y_policy) > r\*(x, y_SFT)] over these pairs of independent
# samples of the same prompts, a tie counted ½ (the DPO paper's measure, with the gold reward as the
# judge); **KL** is the sequence KL to the reference, the mean of Σ_t log π/π_ref over the policy's
# samples.
# %%
ev = P.stage_eval_rlhf(run)
sft = P.stage_eval_sft(run)
print(f"RLHF: gold {ev['gold_reward']:+.3f} (SFT {sft['gold_reward']:+.3f}), win rate vs SFT {ev['win_rate_vs_sft']:.3f}, "
      f"KL {ev['kl_to_ref']:.2f}, fluency {ev['fluency']:.3f} (SFT {sft['fluency']:.3f})")
claim("on held-out films the RLHF policy beats the SFT model under the gold reward (win rate above ½)",
      ev["win_rate_vs_sft"] > 0.5 and ev["gold_reward"] > sft["gold_reward"], win_rate=round(ev["win_rate_vs_sft"], 3))
fluency_se = (ev["fluency"] * (1 - ev["fluency"]) / len(ev["samples"])
              + sft["fluency"] * (1 - sft["fluency"]) / len(sft["samples"])) ** 0.5
fluency_z = (sft["fluency"] - ev["fluency"]) / fluency_se if fluency_se > 0 else 0.0  # SFT minus RLHF
if abs(fluency_z) <= 2:  # the wording follows what the run measured
    claim("and keeps its fluency: no measurable difference from SFT's (within 2 standard errors of the "
          "difference; one seed)", abs(fluency_z) <= 2, rlhf=round(ev["fluency"], 3), sft=round(sft["fluency"], 3),
          standard_errors=round(fluency_z, 1))
else:
    claim(f"and its fluency is {'below' if fluency_z > 0 else 'above'} SFT's by more than 2 standard errors of the "
          f"difference (one seed)", abs(fluency_z) > 2, rlhf=round(ev["fluency"], 3), sft=round(sft["fluency"], 3),
          standard_errors=round(fluency_z, 1))
for i in first_per_prompt(sft["samples"])[:5]:  # one sample each of five films
    a, b = sft["samples"][i], ev["samples"][i]
    print(f"{a['prompt']}\n   SFT : {a['response']} ({a['gold']:+.1f})\n   RLHF: {b['response']} ({b['gold']:+.1f})")

# %% [markdown]
# ## What to remember
# - RLHF's policy step: sample on-policy, score with the reward model, subtract β times the log-ratio
#   to the reference, compare each sample with the others of its prompt (leave-one-out), and push up
#   log π of the better ones.
# - GRPO's advantage is the same group comparison divided by the group's std (+ ε, so an all-equal
#   group gives 0).
# - The KL penalty is what holds the policy near the reference; without it (β = 0, the *Try*) the
#   proxy can outrun the gold reward — lesson 14 measures that over-optimisation.
# - Compare a proxy and the gold reward on one scale (here SFT standard deviations), against a
#   baseline of many samples, never one batch.
# - Next, lesson 07: this objective has a closed-form optimum, and DPO fits it without sampling.
# - **Exercises**: write them yourself and have them graded — `python -m minidpo grade reinforce-advantages`, `python -m minidpo grade reinforce-loss`, `python -m minidpo grade group-advantages`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
