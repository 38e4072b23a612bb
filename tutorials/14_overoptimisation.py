# %% [markdown]
# # 14 · Reward over-optimisation
# **You need** lessons 05 and 06 (the reward model, RL with a KL penalty). **You will see** what
# happens when a policy optimises a learned reward hard. The reward model is a proxy fitted on SFT
# samples. Push on it — pick the best of n samples, or run RL with no KL leash (β = 0) — and the
# policy drifts to text the proxy never saw. Gao, Schulman & Hilton (2022) measured how the gold
# reward follows the proxy as the KL to the reference grows: it can rise more slowly than the proxy,
# peak and fall. Whether it falls, and where, is what we measure here, by each push, on three seeds.
# Run: `python tutorials/14_overoptimisation.py` (`--fast`: a smoke run). The lesson does best-of-n
# by hand for one prompt, then on a lecture-sized set of prompts, and two RL runs on one seed; the
# full study (the same 32 prompts with 256 candidates each instead of 64, a weaker proxy trained on
# half of the pairs, and everything on three seeds, each with its own pairs and reward model) is
# read from this folder, `runs/default`, or the copy committed with minidpo, and runs with
# `--set full_study=true` (or `python -m minidpo overoptimisation`).

# %%
import math

import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.evaluate import response_logps
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.preferences import read_preferences
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.reward_model import load_reward_model, score
from minidpo.sampling import make_generator, sample
from minidpo.studies import overoptimisation as O

run = tutorial_run("14: reward over-optimisation")
ensure(run, "sft", "reward_model")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# The knobs: how many candidates best-of-n picks from (the first n of a fixed pool of samples), and
# whether to run the full study here.

# %%
knobs = lesson_knobs(n=16, full_study=False)
POOL = 64
if not 1 <= knobs.n <= POOL:
    raise SystemExit(f"error: --set n={knobs.n}: best-of-n picks from a pool of {POOL}: 1 <= n <= {POOL}")

# %% [markdown]
# ## Best-of-n by hand, for one prompt
# Sample candidates from the SFT model (temperature 1), score each with the proxy (the reward
# model) and with the gold reward (which the picker never sees), keep the one the proxy likes best.

# %%
sft = run.load_policy("sft.pt")
rm = load_reward_model(run.path("reward_model.pt"), run.device, run.tok.vocab_size)
prompt = O.bon_prompts(run, 1)[0]
ids = sample(sft, run.tok, [prompt] * POOL, make_generator(run.seed + O.BON_SEED_OFFSET, run.device), dtype=run.dtype)
texts = [run.tok.decode_response(r) for r in ids]
proxy = score(rm, run.tok, [prompt] * POOL, ids, dtype=run.dtype).float().cpu()
gold = torch.tensor([world.gold_reward(prompt, t) for t in texts])
n = knobs.n
order = proxy[:n].argsort(descending=True).tolist()
print(f"{prompt} — the first {n} of {POOL} candidates, best proxy first:")
for rank, i in enumerate(order):
    if rank < 5 or rank == n - 1:
        print(f"  proxy {proxy[i]:+.2f}  gold {gold[i]:+.2f}  {texts[i]}")
    elif rank == 5:
        print(f"  ... {n - 6} more ...")
picked = order[0]
picked_proxy, picked_gold = proxy[picked].item(), gold[picked].item()
gold_rank = 1 + sum(g > picked_gold for g in gold[:n].tolist())
print(f"best-of-{n} picks proxy {picked_proxy:+.2f}, gold {picked_gold:+.2f} (gold rank {gold_rank} of {n}); the "
      f"{n} candidates: mean gold {gold[:n].mean():+.2f}, best gold {gold[:n].max():+.2f}")

# %% [markdown]
# ## How far best-of-n moves from the SFT policy
# Gao et al. plot best-of-n against KL(π_BoN ‖ π_SFT) = log n − (n−1)/n, its value when no two
# responses tie in reward; for any reward it is an upper bound (Beirami et al. 2024). The SFT model
# can write far more responses than we can list, so we compute the KL exactly for a smaller policy:
# π restricted to the pool's distinct responses (their SFT probabilities, renormalised to sum to
# 1), and best-of-n drawing from that. In order of proxy score, with C_i the cumulative probability
# of the responses up to and including y_i, the best of n draws is y_i when all n land at or below
# i and not all below it: π_BoN(y_i) = C_i^n − C_{i−1}^n.

# %%
first = [texts.index(t) for t in dict.fromkeys(texts)]  # one candidate per distinct response
logp = response_logps(sft, run.tok, [prompt] * len(first), [ids[i] for i in first], dtype=run.dtype).logps
probs = torch.softmax(logp.double(), 0)   # π over the m distinct responses
scores = proxy[first]
rank = scores.argsort()
cumulative = torch.cumsum(probs[rank], 0)                           # C_i
below = torch.cat([torch.zeros(1, dtype=cumulative.dtype), cumulative[:-1]])  # C_{i−1}
bon = cumulative ** n - below ** n
print(f"{len(first)} distinct responses; the three best by proxy: π {probs[rank][-3:].numpy()}, "
      f"C {cumulative[-3:].numpy()}, π_BoN {bon[-3:].numpy()}")
keep = bon > 0
kl_by_hand = (bon[keep] * (bon[keep].log() - probs[rank][keep].log())).sum().item()
kl_library = O.bon_exact_kl(probs, scores, n)
bound = math.log(n) - (n - 1) / n
print(f"n = {n}: KL(π_BoN ‖ π) over the pool, exactly: {kl_by_hand:.4f} by hand, {kl_library:.4f} by bon_exact_kl; "
      f"bound log n − (n−1)/n = {bound:.4f} (bon_kl_bound: {O.bon_kl_bound(n):.4f})")
claim("the exact KL over the pool is within the bound", kl_by_hand <= bound + 1e-9, exact=kl_by_hand, bound=bound)

# %% [markdown]
# ## Best-of-n on many prompts
# The library's `best_of_n` does the same on many prompts from one set of candidates per prompt,
# for n = 1, 2, 4, …: the proxy and gold reward of the picks (means over prompts), the analytic KL
# (`KL bound`) and the exact KL over each prompt's pool as computed by hand above (`KL pool`,
# averaged over prompts). *Watch*: the proxy column rises with n; does the gold column keep up?
# (One seed's candidates: the full study repeats it on three.)

# %%
n_prompts, n_max = (8, 16) if run.fast else (32, 64)
curves = O.best_of_n(sft, {"full": rm}, run.tok, O.bon_prompts(run, n_prompts), n_max,
                     run.seed + O.BON_SEED_OFFSET, run.dtype)
print(f"{n_prompts} prompts, {n_max} candidates each; reward model held-out accuracy "
      f"{read_json(run.path('reward_model_metrics.json'))['val_accuracy']:.3f}")
rows = curves["full"]
for r in rows:
    print(f"  n = {r['n']:3d}: KL bound {r['kl_bound']:.2f}, KL pool {r['kl_pool']:.2f} | "
          f"proxy {r['proxy']:+.3f} | gold {r['gold']:+.3f} | the pick has its group's best gold in "
          f"{r['pick_best_gold']:.2f} of the groups")
claim("the exact KL over each pool stays within the bound at every n",
      all(r["kl_pool"] <= r["kl_bound"] + 1e-9 for r in rows), largest_pool=rows[-1]["kl_pool"], bound=rows[-1]["kl_bound"])
claim(f"the picks' proxy rises from n = 1 to n = {n_max}", rows[-1]["proxy"] > rows[0]["proxy"],
      at_1=rows[0]["proxy"], at_max=rows[-1]["proxy"])
claim(f"and so does their gold reward: best-of-{n_max} writes better reviews than one sample",
      rows[-1]["gold"] > rows[0]["gold"], at_1=rows[0]["gold"], at_max=rows[-1]["gold"])

# %% [markdown]
# ## RL without a leash
# REINFORCE with β = 0 optimises the proxy alone; beside it β = 0.01. Both are units of the full
# study (seed 0 of its three). The curves are the training samples' rewards and KL, 10-step means.
# *Question*: at which step does the gold reward peak, and what has the KL done by then?

# %%
rm_path = run.path("reward_model.pt")
rl = {label: O.rl_unit(run, label, beta, rm_path) for label, beta in (("β=0, full RM", 0.0), ("β=0.01, full RM", 0.01))}
for name, curve in rl.items():
    first_row, peak, last = curve[0], max(curve, key=lambda r: r["gold"]), curve[-1]
    print(f"{name}: gold {first_row['gold']:+.2f} -> largest {peak['gold']:+.2f} (step {peak['step']}, KL {peak['kl']:.2f}) "
          f"-> {last['gold']:+.2f}; proxy {first_row['proxy']:+.2f} -> {last['proxy']:+.2f}; KL {last['kl']:.1f}; "
          f"fluency {last['fluency']:.2f}")
free, leash = rl["β=0, full RM"], rl["β=0.01, full RM"]
free_peak = max(free, key=lambda r: r["gold"])
claim("β = 0 (one seed): the proxy ends above where it started while the gold reward ends below its peak — "
      "the proxy is being exploited", free[-1]["proxy"] > free[0]["proxy"] and free[-1]["gold"] < free_peak["gold"] - 0.3,
      proxy_start=free[0]["proxy"], proxy_end=free[-1]["proxy"], gold_peak=free_peak["gold"], gold_end=free[-1]["gold"])
claim("β = 0.01 (one seed) ends nearer the reference than β = 0", leash[-1]["kl"] < free[-1]["kl"],
      kl_leash=leash[-1]["kl"], kl_free=free[-1]["kl"])

# %% [markdown]
# ## The functional forms of Gao et al. (2022)
# $$\text{best-of-}n:\; R(d) = d(a - b\,d) \qquad \text{RL}:\; R(d) = d(a - b \log d)$$
# fitted by least squares to the gold-reward gain against d = √KL. A form with b > 0 turns down, at
# d = a/(2b) (best-of-n) or d = exp(a/b − 1) (RL). That fitted peak is only an observation if it
# lies inside the measured range; beyond the largest d measured it is an extrapolation of the form,
# which the data neither confirm nor refute. And a fit holds where its residuals are small: we
# print the root-mean-square residual up to the largest measured gold and after it. (Gao et al. call
# the two coefficients α and β; here they are a and b, since β is this project's KL coefficient.)

# %%
def print_fits(summaries: dict, kind: str) -> None:
    for name, s in summaries.items():
        peak = "none (b ≤ 0: the form never turns)" if s["fit_peak_d"] is None else (
            f"d = {s['fit_peak_d']:.2f}, " + ("inside the data" if s["fit_peak_in_data"] else "beyond the data: an extrapolation"))
        after = "-" if s["fit_rms_after_peak"] is None else f"{s['fit_rms_after_peak']:.3f}"
        r2 = "-" if s["fit_r2"] is None else f"{s['fit_r2']:.2f}"
        print(f"{kind:10s} {name:26s}: a = {s['fit_a']:+.3f}, b = {s['fit_b']:+.3f}, R² {r2}; fitted peak "
              f"{peak}; data up to d = {s['d_max']:.2f}, largest gold at d = {s['peak_d']:.2f}"
              + ("" if s["peaked"] else " (the last point: no observed peak)")
              + f"; RMS residual up to it {s['fit_rms_to_peak']:.3f}, after it {after}")


lesson = {"best_of_n": curves, "rl_curves": rl,
          "best_of_n_summary": {k: O.summarise(v, "kl_bound", "bon") for k, v in curves.items()},
          "rl_summary": {k: O.summarise(v, "kl", "rl") for k, v in rl.items()}}
print_fits(lesson["best_of_n_summary"], "best-of-n")
print_fits(lesson["rl_summary"], "RL")
fig = plots.overoptimisation_figure([lesson], run.path("overoptimisation_lesson.png"))
print("figure:", run.path("overoptimisation_lesson.png"))
show(fig)

# %% [markdown]
# ## The full study, on three seeds
# The same 32 prompts with 256 candidates each; a second, weaker proxy (the same recipe on half of
# the pairs) with its own best-of-n and β = 0 RL; and all of it on three seeds, each with its own
# preference pairs and reward models. Every comparison below pairs the seeds (the same seed: the
# same pairs, reward models and candidates) and says whether the 95 % interval of the difference
# excludes 0.

# %%
full, shown = study_result(run, knobs.full_study, "overoptimisation/overoptimisation.json",
                           lambda: O.run_overoptimisation(run))
if full is None:
    raise SystemExit(f"error: no saved over-optimisation study: `--set full_study=true`, or `{run.command('overoptimisation')}`")
print("Shown:", shown)
seeds = full["seeds"]
for one in full["per_seed"]:
    acc = one["reward_model_accuracy"]
    print(f"seed {one['seed']}: reward model held-out accuracy {acc['full']:.3f} (full), {acc[O.WEAK]:.3f} (weaker)")
    print_fits(one["best_of_n_summary"], "best-of-n")
    print_fits(one["rl_summary"], "RL")
show(plots.overoptimisation_figure(full["per_seed"]))

# %% [markdown]
# **Best-of-n.** Read the gold column at every n, and the fitted peaks against the data's range.

# %%
bon_first, bon_last = full["bon_last_vs_first"]["first"], full["bon_last_vs_first"]["last"]
n_big = full["per_seed"][0]["best_of_n"]["full"][-1]["n"]
for one in full["per_seed"]:
    print(f"seed {one['seed']}: gold of the picks at n = " + ", ".join(
        f"{r['n']}: {r['gold']:+.2f}" for r in one["best_of_n"]["full"]))
claim_paired(f"best-of-n's gold at n = {n_big} against n = 1", f"n = {n_big}", bon_last, "n = 1", bon_first, ">")
claim_paired(f"the last doubling, n = {n_big // 2} → {n_big}", f"n = {n_big}", full["bon_last_vs_previous"]["last"],
             f"n = {n_big // 2}", full["bon_last_vs_previous"]["previous"], "=")
bon_full = [one["best_of_n_summary"]["full"] for one in full["per_seed"]]
claim("best-of-n with the full proxy has no observed peak: in every seed its largest gold is at the largest n",
      not any(s["peaked"] for s in bon_full), seeds=len(bon_full))
beyond = [one["seed"] for one, s in zip(full["per_seed"], bon_full) if s["fit_peak_d"] is None or not s["fit_peak_in_data"]]
inside = [(one["seed"], s) for one, s in zip(full["per_seed"], bon_full) if s["fit_peak_d"] is not None and s["fit_peak_in_data"]]
claim(f"its fitted form puts the peak beyond the largest d measured in most seeds ({len(beyond)} of {len(bon_full)}: "
      f"seeds {beyond}): there the turn is an extrapolation, not a peak", 2 * len(beyond) > len(bon_full),
      beyond=len(beyond), seeds=len(bon_full))
for seed, s in inside:
    claim(f"seed {seed}: the fitted peak lies inside the data, just short of its largest d, yet the measured gold still "
          "rises to the largest n: the form turns where the data have not (yet)",
          not s["peaked"] and s["d_max"] - s["fit_peak_d"] < 0.1 * s["d_max"], fitted=s["fit_peak_d"], d_max=s["d_max"])
claim("inside the data the form fits (R² ≥ 0.9 in every seed)", all((s["fit_r2"] or 0) >= 0.9 for s in bon_full),
      lowest_r2=min(s["fit_r2"] or 0 for s in bon_full))

# %% [markdown]
# **RL.** Without a leash the gold reward does turn: it peaks and falls while the proxy climbs. Does
# the fitted form follow it?

# %%
fp = full["rl_final_vs_peak"]["β=0, full RM"]
claim_paired("β = 0 RL's gold at the end against its largest value", "the end", fp["final"], "the peak", fp["peak"], "<")
rl_free = [one["rl_summary"]["β=0, full RM"] for one in full["per_seed"]]
ratios = [s["fit_rms_after_peak"] / s["fit_rms_to_peak"] if s["fit_rms_after_peak"] is not None else math.nan for s in rl_free]
print("β = 0, RMS residual after the observed peak / before it, per seed: " + ", ".join(f"{r:.2f}" for r in ratios))
claim("β = 0: the fitted form puts its peak inside the data in every seed", all(s["fit_peak_in_data"] for s in rl_free),
      fitted=", ".join(f"{s['fit_peak_d']:.2f}" if s["fit_peak_d"] is not None else "none" for s in rl_free),
      observed=", ".join(f"{s['peak_d']:.2f}" for s in rl_free))
claim("and it fits the fall after the observed peak about as well as the rise before it: the RMS residual after the "
      "peak is within a factor of 2 of the one before it, in every seed", all(0.5 < r < 2 for r in ratios),
      smallest_ratio=min(ratios), largest_ratio=max(ratios))

# %% [markdown]
# **The leash.** β = 0.01 and β = 0 read at the same KL (each run's frontier: the upper concave hull
# of its points along training, read at the largest KL both reach in that seed). If a KL penalty
# only limited how far the policy goes, the two would hold the same gold reward at the same KL; if it
# also changed which way the policy moves, the penalised run would hold more. Three seeds can only
# show a difference larger than their spread.

# %%
pen = full["penalty"]
print("KL read at, per seed: " + ", ".join(f"{k:.2f}" for k in pen["kl"]))
claim_paired("gold reward at the same KL", "β = 0.01", pen["a_gold"], "β = 0", pen["b_gold"], "=")
pen_diffs = [a - b for a, b in zip(pen["a_gold"], pen["b_gold"])]
claim("β = 0.01 is ahead in every seed, but by amounts that vary too much across three seeds for the interval to "
      "exclude 0: a hint, not a measured difference", all(x > 0 for x in pen_diffs),
      differences=", ".join(f"{x:+.2f}" for x in pen_diffs))

# %% [markdown]
# **A weaker proxy** (half of the pairs): does its gold reward peak earlier, and lower? First, how
# weak is it: a reward model whose held-out accuracy is within two standard errors of 0.5 (√(0.25/N)
# on N held-out pairs) ranks responses no measurably better than a coin flip, and best-of-n
# or RL on it is optimising noise.

# %%
w = full["weak_vs_full"]
n_val = len(read_preferences(run.path("prefs_val.jsonl"))[0])
chance_band = 2 * math.sqrt(0.25 / n_val)
at_chance = [seed for seed, a in zip(seeds, w["accuracy"]["weak"]) if abs(a - 0.5) < chance_band]
print(f"the weaker reward model's held-out accuracy per seed: " + ", ".join(f"{a:.3f}" for a in w["accuracy"]["weak"])
      + f"; two standard errors on {n_val} held-out pairs (this run's count): ±{chance_band:.3f}")
claim(f"the weaker reward model is indistinguishable from chance in {len(at_chance)} of {len(seeds)} seeds "
      f"(seeds {at_chance}): its accuracy lies within two standard errors of 0.5", len(at_chance) >= 1,
      band=chance_band, accuracies=", ".join(f"{a:.3f}" for a in w["accuracy"]["weak"]))
weak_diffs = [claim_paired("the reward models' held-out accuracy", "the weaker", w["accuracy"]["weak"], "the full",
                           w["accuracy"]["full"], "="),
              claim_paired(f"best-of-{n_big}'s gold", "the weaker proxy", w["bon_gold"]["weak"], "the full one",
                           w["bon_gold"]["full"], "="),
              claim_paired("β = 0 RL's largest gold", "the weaker proxy", w["rl_peak_gold"]["weak"], "the full one",
                           w["rl_peak_gold"]["full"], "=")]
claim_paired("the d at which β = 0 RL's gold is largest", "the weaker proxy", w["rl_peak_d"]["weak"], "the full one",
             w["rl_peak_d"]["full"], "=")
claim("the weaker proxy is lower on average on all three (accuracy, best-of-n gold, RL's largest gold), but the seeds "
      "disagree too much for three of them to measure it: a hint, not a result", all(d.mean < 0 for d in weak_diffs),
      means=", ".join(f"{d.mean:+.3f}" for d in weak_diffs))

# %% [markdown]
# *Try*: `--set n=64` (or set `n` in the knobs cell and re-run from there): the picked response's
# proxy score can only rise (the first 64 candidates include the first 16) and the KL bound rises
# with it; the gold reward of the pick need not.
#
# *Questions*
# 1. Did best-of-n's pick have the best gold reward of its candidates?
# 2. At which step does β = 0 RL's gold reward peak, and what has the KL done by then? And β = 0.01?
# 3. In the full study: does the weaker proxy's gold reward peak earlier (at a smaller d)?

# %% [markdown]
# ## Answers

# %%
print(f"1. for one prompt: the pick's gold {picked_gold:+.2f} is rank {gold_rank} of the {n} candidates "
      f"(the best {gold[:n].max():+.2f}). Over {n_prompts} prompts:")
at_n = next((r for r in rows if r["n"] == n), rows[-1])
claim(f"the proxy's pick is the gold-best candidate in fewer than half of the groups (best-of-{at_n['n']}, "
      f"{n_prompts} prompts)", at_n["pick_best_gold"] < 0.5, fraction_best=at_n["pick_best_gold"])
for name, curve in rl.items():
    i = max(range(len(curve)), key=lambda j: curve[j]["gold"])
    print(f"2. {name} (one seed): gold largest at step {curve[i]['step']} ({curve[i]['gold']:+.2f}, KL {curve[i]['kl']:.2f}); "
          f"by the end KL {curve[-1]['kl']:.2f}, gold {curve[-1]['gold']:+.2f}, proxy {curve[-1]['proxy']:+.2f}")
print(f"3. β = 0 RL's largest gold sits at d = {', '.join(f'{x:.2f}' for x in w['rl_peak_d']['weak'])} with the weaker "
      f"proxy and d = {', '.join(f'{x:.2f}' for x in w['rl_peak_d']['full'])} with the full one (seeds {seeds}); "
      "the claims above say what the paired difference shows. Best-of-n has no observed peak to move.")

# %% [markdown]
# ## What to remember
# - A learned reward is a proxy: optimise it and the gold reward follows it less and less. How hard
#   you must push before the gold reward turns is an empirical question, and a fitted form says
#   nothing about a peak beyond the data it was fitted to.
# - The KL to the reference measures how far a policy has moved, not how well it moved. To credit a
#   KL penalty with more than a shorter leash, compare penalised and unpenalised runs at the same
#   KL, paired by seed — and expect three seeds to resolve only large differences.
# - Direct alignment has a proxy too: DPO's implicit reward β·log π/π_ref, fitted to the same pairs.
#   Rafailov et al. (2024) find the same over-optimisation curves for DPO, IPO and SLiC as for RLHF,
#   and the failure-modes lesson measures what ours loses on the way (fluency).
