# %% [markdown]
# # 09 · DPO and RLHF reach the same policy — exactly
# The KL-regularised RL objective (the DPO paper's eq. 3) and its maximiser (eq. 4):
# $$\max_\pi\; \mathbb{E}_{x, y\sim\pi}\big[r(x,y)\big] - \beta\,\mathrm{KL}\big(\pi(\cdot|x)\,\|\,\pi_{ref}(\cdot|x)\big),
# \qquad \pi^*(y|x) = \frac{1}{Z(x)}\,\pi_{ref}(y|x)\,e^{r(x,y)/\beta}$$
# Solve eq. 4 for r: $r = \beta\log\frac{\pi^*}{\pi_{ref}} + \beta\log Z(x)$ (eq. 5). Put it into
# Bradley–Terry: the $\beta\log Z(x)$ of both responses cancel, and what is left is DPO's loss.
#
# A bandit small enough to enumerate, so Z(x), π* and every KL are exact. From the same preference
# pairs: (a) fit a reward by Bradley–Terry, then solve the KL-regularised RL problem, exactly and by
# REINFORCE; (b) minimise the DPO loss; (c) the closed form π*(r̂) = π_ref·exp(r̂/β)/Z.
# Read `minidpo/bandit.py`. Run: `python tutorials/09_equivalence.py` (a few seconds).

# %%
from minidpo.harness import pipeline as P
from minidpo.harness import plots
from minidpo.harness.tutorial import show, tutorial_run

run = tutorial_run("09: the exact equivalence lab")
res = P.stage_equivalence(run)

# %% [markdown]
# ## Three roads, one policy
# Total variation ½Σ_y|p − q| between every pair of policies, max over prompts. *What to watch*:
# DPO, exact RL and the closed form agree to ~1e-8 (the solver's tolerance); REINFORCE, a sampled
# estimator, to ~1e-5; all of them differ from the optimum under the *true* reward by the error of
# learning r from finitely many noisy pairs.

# %%
names = ["dpo", "rlhf_exact", "reinforce", "optimal_fitted", "optimal_true", "reference"]
print(" " * 15 + "".join(f"{n:>15s}" for n in names))
for a in names:
    print(f"{a:15s}" + "".join(f"{res['tv_table'][a][b]:15.1e}" for b in names))

# %% [markdown]
# The same in KL(row ‖ column), max over prompts.

# %%
print(" " * 15 + "".join(f"{n:>15s}" for n in names))
for a in names:
    print(f"{a:15s}" + "".join(f"{res['kl_table'][a][b]:15.1e}" for b in names))

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
# *Question*: the distance falls like 1/√n. Why that rate? (The reward is fitted by maximum
# likelihood; its error shrinks like one over the square root of the number of labels.)

# %%
for n, tv in res["tv_dpo_vs_optimal_true_by_n"]:
    print(f"n = {n:6d} pairs: TV(DPO, π*(r)) = {tv:.4f}")

# %% [markdown]
# ## The DPO gradient (the paper's §4) through the real GPT, in float64
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
plots.ipo_figure(res["ipo_contrast"], run.path("ipo_contrast.png"))
fig = plots.equivalence_figure(res, run.path("equivalence.png"))
print("figures:", run.path("equivalence.png"), run.path("ipo_contrast.png"))
show(fig)
