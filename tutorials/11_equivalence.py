# %% [markdown]
# # 11 · DPO and RLHF reach the same policy — exactly
# **You need** lesson 07 (the derivation: π*, Z, the implicit reward) and lesson 06 (REINFORCE).
# **You will see** the whole exact lab (`minidpo/bandit.py`): three prompts, a reward *learned* from
# noisy pairs, the KL-regularised RL problem solved exactly and by REINFORCE, DPO on the same pairs,
# and the closed form — three roads to one policy; the implicit reward recovering the fitted reward;
# the DPO gradient through a tiny GPT of the library's own model class against the paper's formula;
# and IPO against DPO on a pair that is always won. Everything is float64: closed forms agree to the
# last digits, solvers to their tolerance, REINFORCE to its sampling noise.
# Run: `python tutorials/11_equivalence.py`.

# %%
import math

import torch

from minidpo import bandit as B
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import show, tutorial_run

run = tutorial_run("11: the exact equivalence lab")
torch.set_printoptions(precision=4, sci_mode=False, linewidth=120)
F64 = torch.float64

# %% [markdown]
# ## The lab: three roads from the same noisy pairs
# Lesson 07 had one prompt and a given reward. Now several prompts, and the reward is learned: the lab draws preference pairs by
# Bradley–Terry on a true reward, then (a) fits r̂ by Bradley–Terry and solves the KL-regularised RL
# problem with r̂, exactly (L-BFGS) and by REINFORCE (sampled, the estimator of `minidpo.rlhf`);
# (b) minimises the DPO loss on the same pairs; (c) writes down π*(r̂) in closed form. The lab runs at
# its own β (printed). *What to watch*: (a-exact), (b) and (c) agree to the
# solver's tolerance; REINFORCE, a sampled estimator, agrees less tightly; all of them sit away from
# π* of the *true* reward by the error of learning r from finitely many noisy pairs.

# %%
res = P.stage_equivalence(run)
lab = B.make_lab(seed=run.seed)
lab_star_open = lab["ref_logp"].exp() * torch.exp(lab["reward"] / res["beta"])
lab_star_open = lab_star_open / lab_star_open.sum(-1, keepdim=True)    # eq. 4, as lesson 07 wrote it out
lab_open_vs_saved = (lab_star_open - torch.tensor(res["policies"]["optimal_true"], dtype=F64)).abs().max().item()
print(f"the lab: {res['n_prompts']} prompts × {res['n_responses']} responses, β = {res['beta']}, "
      f"{res['n_pairs']} pairs; eq. 4 written out vs the lab's π*(r): max |Δπ| = {lab_open_vs_saved:.1e}")
print(f"TV to π*(r̂): DPO {res['tv_dpo_vs_optimal_fitted']:.1e}, exact RL {res['tv_rlhf_vs_optimal_fitted']:.1e}, "
      f"REINFORCE {res['tv_reinforce_vs_optimal_fitted']:.1e}; DPO to exact RL {res['tv_dpo_vs_rlhf']:.1e}")
print(f"TV(DPO, π*(r)), the optimum of the TRUE reward: {res['tv_dpo_vs_optimal_true']:.3f}")

# %% [markdown]
# Total variation ½Σ_y|p − q| between every pair of policies, max over prompts; then KL(row ‖ column).

# %%
names = ["dpo", "rlhf_exact", "reinforce", "optimal_fitted", "optimal_true", "reference"]
for title, table in (("TV", res["tv_table"]), ("KL(row ‖ column)", res["kl_table"])):
    print(f"{title:15s}" + "".join(f"{n:>15s}" for n in names))
    for a in names:
        print(f"{a:15s}" + "".join(f"{table[a][b]:15.1e}" for b in names))

# %% [markdown]
# ## The implicit reward
# DPO never fits a reward, yet $\beta\log\pi_{DPO}/\pi_{ref}$ equals the Bradley–Terry fit r̂ up to a
# per-prompt constant (β log Z(x)): "your language model is secretly a reward model".

# %%
print(f"max |implicit − r̂| after centring: {res['implicit_reward_max_error']:.1e}")
print(f"max |r̂ − r| after centring (finite data): {res['reward_fit_max_error_vs_true']:.3f}")
print(f"Bradley–Terry with and without β·log Z: max difference {res['z_cancels_max_diff']:.1e} (Z cancels)")
print(f"RL objective under the TRUE reward: π*(r̂) {res['objective']['optimal_fitted']:.6f}, "
      f"DPO {res['objective']['dpo']:.6f}, the best possible β·E[log Z] = {res['optimal_value_beta_logZ']:.6f} "
      f"(the gap is the price of learning r from {res['n_pairs']} noisy pairs)")

# %% [markdown]
# ## More data, closer to the true optimum
# *Question*: the distance falls roughly like 1/√n. Why that rate? (Answer at the end, with the
# slope fitted to these numbers; `--fast` computes only the first few n, where the fit is flatter.)

# %%
for n, d in res["tv_dpo_vs_optimal_true_by_n"]:
    print(f"n = {n:6d} pairs: TV(DPO, π*(r)) = {d:.4f}")

# %% [markdown]
# ## The DPO gradient (the paper's §4) through a GPT, in float64
# A tiny GPT of the library's own model class (random weights, float64, so that rounding does not
# hide a wrong term), one pair, autograd against the formula:
# $$\nabla_\theta\mathcal{L} = -\beta\,\sigma(\hat r_l - \hat r_w)\,\big[\nabla\log\pi(y_w|x) - \nabla\log\pi(y_l|x)\big]$$

# %%
print(f"autograd vs −β·σ(r̂_l − r̂_w)(∇log π(y_w) − ∇log π(y_l)): relative error {res['gradient_max_rel_error']:.1e}")

# %% [markdown]
# ## IPO vs DPO on a pair that is always won
# With deterministic preferences DPO's gap h grows without bound (π(y_l) → 0) whatever β; IPO's
# squared loss $(h - 1/(2\beta))^2$ stops at its target.

# %%
for name, r in res["ipo_contrast"].items():
    t = r["trace"][-1]
    print(f"{name:14s}: gap after {t['steps']} steps {t['gap']:7.3f} (IPO target 1/(2β) = {r['target_gap_ipo']:.2f}), "
          f"π(loser) {t['p_loser']:.1e}")
fig_ipo = plots.ipo_figure(res["ipo_contrast"], run.path("ipo_contrast.png"))
fig = plots.equivalence_figure(res, run.path("equivalence.png"))
print("figures:", run.path("equivalence.png"), run.path("ipo_contrast.png"))
show(fig)
show(fig_ipo)


# %% [markdown]
# ## Answers
# **Why 1/√n.** r̂ is a maximum-likelihood estimate: the Fisher information of n labels grows like n,
# so r̂'s error shrinks like 1/√n; π*(r̂) is a smooth function of r̂, so its distance to π*(r) shrinks
# at the same rate, and DPO's policy *is* π*(r̂). The slope of log TV against log n, fitted:

# %%
log_n = torch.tensor([math.log(n) for n, _ in res["tv_dpo_vs_optimal_true_by_n"]], dtype=F64)
log_tv = torch.tensor([math.log(d) for _, d in res["tv_dpo_vs_optimal_true_by_n"]], dtype=F64)
slope = (((log_n - log_n.mean()) * (log_tv - log_tv.mean())).sum() / ((log_n - log_n.mean()) ** 2).sum()).item()
print(f"fitted slope {slope:.2f} (1/√n is −0.5), over n = {int(log_n.exp()[0].round())}…{int(log_n.exp()[-1].round())}")


# %% [markdown]
# ## What to remember
# - From the same noisy pairs, DPO, exact KL-regularised RL on the fitted reward r̂, and the closed
#   form π*(r̂) are one policy (TV at the solver's tolerance); REINFORCE, a sampled estimator, gets
#   close but not exact.
# - All three sit away from π* of the TRUE reward by the error of learning r from finitely many
#   noisy pairs, and that error shrinks about like 1/√n.
# - The implicit reward β·log π/π_ref is the fitted reward up to a constant per prompt.
# - DPO's gradient is −β·σ(r̂_l − r̂_w)·(∇log π(y_w) − ∇log π(y_l)); autograd agrees to rounding.
