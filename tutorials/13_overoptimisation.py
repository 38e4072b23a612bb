# %% [markdown]
# # 13 · Reward over-optimisation
# **You need** lessons 05 and 06 (the reward model, RL with a KL penalty). **You will see** what
# happens when a policy optimises a learned reward too hard. The reward model is a proxy fitted on SFT samples. Push on it hard — pick the best of n samples,
# or run RL with no KL leash (β = 0) — and the policy drifts to text the proxy never saw: the proxy
# keeps climbing while the gold reward peaks and falls (Gao, Schulman & Hilton 2022).
# Run: `python tutorials/13_overoptimisation.py` (`--fast`: a smoke run). The lesson does best-of-n
# by hand for one prompt, then on a lecture-sized set of prompts, and two RL runs; the full study
# (more prompts and candidates, and a weaker proxy trained on half of the pairs) is shown when its
# results are saved here or in `runs/default`, and runs with `--set full_study=true`
# (or `python -m minidpo overoptimisation`).

# %%
import math

import torch

from minidpo import world
from minidpo.checkpoint import read_json
from minidpo.evaluate import response_logps
from minidpo.harness import plots
from minidpo.harness.stages import ensure
from minidpo.harness.tutorial import lesson_knobs, show, study_result, tutorial_run
from minidpo.reward_model import load_reward_model, score
from minidpo.sampling import make_generator, sample
from minidpo.studies import overoptimisation as O

run = tutorial_run("13: reward over-optimisation")
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
print(f"best-of-{n} picks proxy {picked_proxy:+.2f}, gold {picked_gold:+.2f}; the {n} candidates: mean gold "
      f"{gold[:n].mean():+.2f}, best gold {gold[:n].max():+.2f}")

# %% [markdown]
# ## How far best-of-n moves from the SFT policy
# For a continuous reward, KL(π_BoN ‖ π_SFT) = log n − (n−1)/n, the value Gao et al. plot against;
# for any reward it is an upper bound. The SFT model can write far more responses than we can list,
# so we compute the KL exactly for a smaller policy: π restricted to the pool's distinct responses
# (their SFT probabilities, renormalised to sum to 1), and best-of-n drawing from that. In order of
# proxy score, with C_i the cumulative probability of the responses up to and including y_i, the
# best of n draws is y_i when all n land at or below i and not all below it:
# π_BoN(y_i) = C_i^n − C_{i−1}^n. (The bound holds for this restricted policy too.)

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

# %% [markdown]
# ## Best-of-n on many prompts
# The library's `best_of_n` does the same on many prompts from one set of candidates per prompt,
# for n = 1, 2, 4, …: the proxy and gold reward of the picks. *Watch*: the proxy column rises with
# n; does the gold column keep up?

# %%
n_prompts, n_max = (8, 16) if run.fast else (32, 64)
curves = O.best_of_n(sft, {"full": rm}, run.tok, O.bon_prompts(run, n_prompts), n_max,
                     run.seed + O.BON_SEED_OFFSET, run.dtype)
print(f"{n_prompts} prompts, {n_max} candidates each; reward model held-out accuracy "
      f"{read_json(run.path('reward_model_metrics.json'))['val_accuracy']:.3f}")
for r in curves["full"]:
    print(f"  n = {r['n']:3d}: KL bound {r['kl_bound']:.2f}, sampled {r['kl_sampled']:.2f} | "
          f"proxy {r['proxy']:+.3f} | gold {r['gold']:+.3f}")

# %% [markdown]
# ## RL without a leash
# REINFORCE with β = 0 optimises the proxy alone; beside it β = 0.01. Both are units of the full
# study (it reuses them). The curves are the training samples' rewards, 10-step means.
# *Question*: at which step does the gold reward peak, and what has the KL done by then?

# %%
rm_path = run.path("reward_model.pt")
rl = {label: O.rl_unit(run, label, beta, rm_path) for label, beta in (("β=0, full RM", 0.0), ("β=0.01, full RM", 0.01))}
for name, curve in rl.items():
    first_row, peak, last = curve[0], max(curve, key=lambda r: r["gold"]), curve[-1]
    print(f"{name}: gold {first_row['gold']:+.2f} -> peak {peak['gold']:+.2f} (step {peak['step']}) -> {last['gold']:+.2f}; "
          f"proxy {first_row['proxy']:+.2f} -> {last['proxy']:+.2f}; KL {last['kl']:.1f}; fluency {last['fluency']:.2f}")

# %% [markdown]
# ## The functional forms of Gao et al. (2022)
# $$\text{best-of-}n:\; R(d) = d(a - b\,d) \qquad \text{RL}:\; R(d) = d(a - b \log d)$$
# fitted by least squares to the gold-reward gain against d = √KL; each predicts where the gold
# reward peaks. (Gao et al. call the two coefficients α and β; here they are a and b, since β is
# this project's KL coefficient.)

# %%
def print_fits(res: dict) -> None:
    for kind in ("best_of_n_summary", "rl_summary"):
        for name, s in res[kind].items():
            peak = f"{s['fit_peak_d']:.2f}" if s["fit_peak_d"] is not None else "none"
            print(f"{kind.split('_summary')[0]:10s} {name:28s}: a = {s['fit_alpha']:+.3f}, b = {s['fit_beta']:+.3f}, "
                  f"fitted peak at d = {peak}, observed peak at d = {s['peak_d']:.2f}")


lesson = {"best_of_n": curves, "rl": rl,
          "best_of_n_summary": {k: O.summarise([{**r, "kl": r["kl_bound"]} for r in v], "kl", "bon") for k, v in curves.items()},
          "rl_summary": {k: O.summarise(v, "kl", "rl") for k, v in rl.items()}}
print_fits(lesson)
fig = plots.overoptimisation_figure(lesson, run.path("overoptimisation_lesson.png"))
print("figure:", run.path("overoptimisation_lesson.png"))
show(fig)

# %% [markdown]
# ## The full study
# More prompts and candidates for best-of-n, and a second, weaker proxy trained on part of the
# pairs (its own best-of-n and β = 0 RL): where does a worse proxy's peak go?

# %%
full, shown = study_result(run, knobs.full_study, "overoptimisation/overoptimisation.json",
                           lambda: O.run_overoptimisation(run))
if full is None:
    print(f"No saved full study here or in runs/default: `--set full_study=true`, or `{run.command('overoptimisation')}`.")
else:
    print("Shown:", shown)
    for name, rows in full["best_of_n"].items():
        last = rows[-1]
        print(f"best-of-n, RM {name} (held-out accuracy {full['reward_model_accuracy'][name]:.3f}): at n = {last['n']} "
              f"proxy {last['proxy']:+.3f}, gold {last['gold']:+.3f}")
    print_fits(full)
    fig = plots.overoptimisation_figure(full)
    show(fig)

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
best = gold[:n].max().item()
print(f"1. the pick's gold {picked_gold:+.2f}, the best candidate's {best:+.2f}: "
      + ("the proxy found the best one" if picked_gold >= best else "the proxy picked another (it is only a proxy)"))
for name, curve in rl.items():
    i = max(range(len(curve)), key=lambda j: curve[j]["gold"])
    print(f"2. {name}: gold peaks at step {curve[i]['step']} ({curve[i]['gold']:+.2f}, KL {curve[i]['kl']:.2f}); "
          f"by the end KL {curve[-1]['kl']:.2f}, gold {curve[-1]['gold']:+.2f}, proxy {curve[-1]['proxy']:+.2f}")
if full is None:
    print(f"3. needs the full study (`--set full_study=true`, or `{run.command('overoptimisation')}`; its measured "
          "numbers are in docs/critics.md)")
else:
    bon_s, rl_s = full["best_of_n_summary"], full["rl_summary"]
    weaker = (next(k for k in bon_s if k != "full"), next(k for k in rl_s if "full" not in k))
    for kind, strong, weak in (("best-of-n", bon_s["full"], bon_s[weaker[0]]), ("RL, β = 0", rl_s["β=0, full RM"], rl_s[weaker[1]])):
        print(f"3. {kind}: the gold reward peaks at d = {strong['peak_d']:.2f} with the full reward model, "
              f"{weak['peak_d']:.2f} with the weaker one -> " + ("earlier" if weak["peak_d"] < strong["peak_d"] else "not earlier"))

# %% [markdown]
# ## What to remember
# - A learned reward is a proxy: optimise it hard enough (best-of-n with large n, RL with β = 0)
#   and the proxy keeps rising while the gold reward peaks and falls.
# - The KL to the reference measures how hard a policy has pushed; the KL penalty is what keeps RL
#   in the region where the proxy is still right.
# - DPO has no separate proxy to exploit, but it has its own failure modes (lesson 15).
