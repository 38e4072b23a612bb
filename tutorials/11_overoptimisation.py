# %% [markdown]
# # 11 · Reward over-optimisation
# The reward model is a proxy fitted on SFT samples. Push on it hard — pick the best of n samples,
# or run RL with no KL leash (β = 0) — and the policy drifts to text the proxy never saw: the proxy
# keeps climbing while the gold reward peaks and falls (Gao, Schulman & Hilton 2022). A reward model
# trained on half of the pairs is a worse proxy: watch where its peak goes.
# Run: `python tutorials/11_overoptimisation.py` (about 2.5 minutes; `--fast` well under one).

# %%
from minidpo.harness.tutorial import show, tutorial_run
from minidpo.studies.overoptimisation import bon_exact_kl, bon_kl_bound, run_overoptimisation

run = tutorial_run("11: reward over-optimisation")
res = run_overoptimisation(run)

# %% [markdown]
# ## Best-of-n
# Sample n responses from the SFT model, keep the one the reward model likes best. Its KL to the
# SFT policy is at most (equal for a continuous reward; Gao et al. use this value)
# $$\mathrm{KL}(\pi_{BoN}\,\|\,\pi_{SFT}) \le \log n - \frac{n-1}{n}$$
# and d = √KL is the distance the gold and proxy curves are plotted against. *Watch*: the proxy
# column rises with n; the gold column rises, then stalls or dips.

# %%
for name, rows in res["best_of_n"].items():
    print(f"reward model: {name} (held-out accuracy {res['reward_model_accuracy'][name]:.3f})")
    for r in rows:
        print(f"  n = {r['n']:3d}: KL bound {r['kl_bound']:.2f}, sampled {r['kl_sampled']:.2f} | "
              f"proxy {r['proxy']:+.3f} | gold {r['gold']:+.3f}")

# %% [markdown]
# ## RL without a leash
# REINFORCE with β = 0 optimises the proxy alone. The gold reward peaks early and then falls as the
# policy finds text the reward model over-rates; β = 0.01 keeps it in check.
# *Question*: at which step does the gold reward peak, and what has the KL done by then?

# %%
for name, curve in res["rl"].items():
    first, peak, last = curve[0], max(curve, key=lambda r: r["gold"]), curve[-1]
    print(f"{name}: gold {first['gold']:+.2f} -> peak {peak['gold']:+.2f} (step {peak['step']}) -> {last['gold']:+.2f}; "
          f"proxy {first['proxy']:+.2f} -> {last['proxy']:+.2f}; KL {last['kl']:.1f}; fluency {last['fluency']:.2f}")

# %% [markdown]
# ## The functional forms of Gao et al. (2022)
# $$\text{best-of-}n:\; R(d) = d(\alpha - \beta d) \qquad \text{RL}:\; R(d) = d(\alpha - \beta \log d)$$
# fitted by least squares to the gold-reward gain against d = √KL; each predicts where the gold
# reward peaks.

# %%
for kind in ("best_of_n_summary", "rl_summary"):
    for name, s in res[kind].items():
        peak = f"{s['fit_peak_d']:.2f}" if s["fit_peak_d"] is not None else "none"
        print(f"{kind.split('_summary')[0]:10s} {name:28s}: α = {s['fit_alpha']:+.3f}, β = {s['fit_beta']:+.3f}, "
              f"fitted peak at d = {peak}, observed peak at d = {s['peak_d']:.2f}")

# %% [markdown]
# ## The bound, checked exactly
# On a discrete policy we can enumerate, best-of-n's distribution is exact:
# π_BoN(y_i) = F_i^n − F_{i−1}^n, with F the cumulative probability in order of score.

# %%
import torch
probs = torch.softmax(torch.randn(1000, generator=torch.Generator().manual_seed(0)), 0)
scores = torch.randn(1000, generator=torch.Generator().manual_seed(1))
for n in (2, 8, 64):
    print(f"n = {n}: exact KL {bon_exact_kl(probs, scores, n):.4f} <= bound {bon_kl_bound(n):.4f}")
from minidpo.harness import plots
fig = plots.overoptimisation_figure(res)
print("figure:", run.out / "overoptimisation" / "overoptimisation.png")
show(fig)
