# %% [markdown]
# # 20 · The likelihood-displacement microscope
# **You need** lessons 07 and 15 (what the pairs leave free; both log-probs falling). **You will see**
# where the probability DPO takes from the labelled responses goes. DPO trains a *margin*. Lesson 15 saw both log-probs fall; this lesson asks where the probability
# goes, pair by pair, and then — on a GPT small enough that every possible response can be listed —
# measures it exactly.
# Run: `python tutorials/20_microscope.py` (`--fast`: seconds).

# %%
import math

import torch

from minidpo.checkpoint import read_json
from minidpo.data import pair_batch
from minidpo.harness.tutorial import tutorial_run
from minidpo.model import sequence_logps
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.studies.microscope import all_responses, run_microscope
from minidpo.harness.stages import ensure

run = tutorial_run("20: the likelihood-displacement microscope")
ensure(run, "dpo")
torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)

# %% [markdown]
# ## One measurement by hand: four pairs, before and after DPO
# Likelihood displacement is a difference of two log-probs of the same text: the sequence
# log-prob $\log\pi(y|x) = \sum_t \log\pi(y_t|x, y_{<t})$ under the DPO policy minus the same sum
# under the reference (the SFT model DPO started from). For the first pairs of the training file:
# $\Delta\log\pi(y_w)$, $\Delta\log\pi(y_l)$, the margin $h = \Delta\log\pi(y_w) - \Delta\log\pi(y_l)$ and
# the gradient weight $\sigma(-\beta h)$ the trained policy would give the pair now. A fall of
# $\log\pi(y_w)$ means DPO made the *preferred* response less likely while widening the margin.

# %%
beta = read_json(run.path("dpo_metrics.json"))["config"]["beta"]
reference, policy = run.load_policy("sft.pt"), run.load_policy("dpo.pt")
prefs, _ = read_preferences(run.path("prefs_train.jsonl"))
encoded, _ = encode_pairs(run.tok, prefs[:4], reference.config.block_size)
ids, mask = pair_batch(encoded, run.device, run.tok.end_id)  # 4 chosen rows, then 4 rejected rows
with torch.no_grad():
    ref_logps, pol_logps = sequence_logps(reference, ids, mask).logps, sequence_logps(policy, ids, mask).logps
n = len(encoded)
d_chosen, d_rejected = pol_logps[:n] - ref_logps[:n], pol_logps[n:] - ref_logps[n:]
h = d_chosen - d_rejected
for i, pair in enumerate(prefs[:n]):
    print(f"pair {i}: y_w '{pair['chosen']}'\n        y_l '{pair['rejected']}'\n"
          f"   log π(y_w) {ref_logps[i]:+.2f} -> {pol_logps[i]:+.2f} (Δ {d_chosen[i]:+.2f}) | "
          f"log π(y_l) {ref_logps[n + i]:+.2f} -> {pol_logps[n + i]:+.2f} (Δ {d_rejected[i]:+.2f}) | "
          f"h {h[i]:+.2f} | σ(−βh) {torch.sigmoid(-beta * h[i]):.3f}")
print(f"β = {beta}; log π(y_w) fell in {int((d_chosen < 0).sum())} of these {n} pairs, log π(y_l) in "
      f"{int((d_rejected < 0).sum())}")

# %% [markdown]
# And CHES for the same pairs, by hand: $H(y)$ is the sum of the reference's final hidden states
# at the positions that predict the response's tokens (`model.hidden`, the input of the LM head),
# and $\mathrm{CHES} = \langle H(y_w), H(y_l)\rangle - \|H(y_w)\|^2$ is large (near 0 from below,
# or positive) when the two responses look alike to the model.

# %%
with torch.no_grad():
    hidden = reference.hidden(ids[:, :-1])                   # (2n, T-1, C): state before each next token
H = (hidden * mask[:, 1:].unsqueeze(-1)).sum(1)               # H(y) = Σ_k h(x, y_<k), (2n, C)
ches_by_hand = (H[:n] * H[n:]).sum(-1) - (H[:n] * H[:n]).sum(-1)
print("CHES of the four pairs:", ches_by_hand)

# %% [markdown]
# ## Pair by pair, on this run's DPO policy
# For every pair: Δ log π(y_w) and Δ log π(y_l) from the reference, DPO's gradient weight
# σ(−β·h), and CHES, the similarity of the two responses in the reference's hidden states
# (Razin et al. 2024):
# $$\mathrm{CHES}(x, y_w, y_l) = \langle H(y_w), H(y_l)\rangle - \|H(y_w)\|^2, \qquad H(y) = \sum_k h(x, y_{<k})$$
# Their claim: the more alike chosen and rejected are, the more DPO pushes the chosen response
# *down* along with the rejected one. *Predict*: is corr(CHES, Δ log π(y_w)) positive or negative?

# %%
result = run_microscope(run)  # prints its tables (print_microscope)
pairs = result["pairs"]
gap = max((torch.tensor(pairs[key][:n]) - mine).abs().max().item()
          for key, mine in (("d_logp_chosen", d_chosen), ("d_logp_rejected", d_rejected), ("ches", ches_by_hand)))
print(f"the library's first {n} pairs against ours by hand: largest difference {gap:.1e}")

# %% [markdown]
# ## Exactly: an enumerable GPT
# Three symbols and an end token, responses of at most three tokens: 40 responses in all. The
# hand-written GPT gives π(y|x) of every one, so the sum is 1 to machine precision, the KL is a sum,
# not an estimate — and its sampled estimate must agree within a few standard errors.

# %%
e = result["enumerable"]
print(f"{e['n_responses']} responses (e.g. {all_responses()[:5]} ...); Σ π = {e['ref_total_probability']:.15f}")
k = e["kl"]
print(f"KL(π ‖ π_ref): exact {k['exact']:.5f}, from 4000 samples {k['sampled']:.5f} ± {k['standard_error']:.5f} "
      f"({abs(k['exact'] - k['sampled']) / k['standard_error']:.1f} standard errors apart)")

# %% [markdown]
# ## Azar et al. (2023): deterministic preferences
# One pair, always won. DPO's loss −log σ(βh) only reaches 0 as h → ∞, i.e. π(y_l) → 0, whatever β
# (the printed traces show how fast, for each β). IPO's loss (h − 1/(2β))² has a finite target, so π(y_l) settles.

# %%
for name, trace in e["deterministic_pair"]["traces"].items():
    print(f"{name:14s} π(y_l): " + " -> ".join(f"{t['p_loser']:.2e}" for t in trace))

# %% [markdown]
# ## Xu et al. (2024): mass on responses no pair contains
# Every pair among a few of the 40 responses, labelled deterministically by a hidden reward (the
# higher always wins; counts printed below).
# DPO's loss never looks at the other responses, so nothing in it says where their probability
# should go: that is left to how the GPT's shared weights generalise. The RL road needs a reward
# for every response, and Bradley–Terry fitted to these pairs does not give one: the likelihood is
# the same whatever value an unlabelled response gets, and since the labels here are a consistent
# order, it keeps rising as the labelled gaps grow — it has no maximum. The fit adds a small L2 term
# (`microscope.fitted_reward`), which sets the unlabelled responses' r̂ to 0 and the labelled ones'
# gaps to a finite size around 0 — a convention, not something the data say (below, the same with
# a ten times smaller L2 weight). With it, the RL optimum π_ref·exp(r̂/β)/Z keeps the unlabelled responses' odds against one another,
# and their share is π_ref(U)/Z, where Z = π_ref(U) + Σ_labelled π_ref(y)·exp(r̂(y)/β): the labelled
# winners (r̂ > 0) gain weight, the losers (r̂ < 0) lose it, and the unlabelled share falls only if
# the gains outweigh the losses. Below: those pieces, and how much the answer moves with the
# convention. Whether DPO moves the unlabelled mass the same way is measured, not assumed. Then the
# remedies on the same pairs: an SFT term (RPO); DPOP (Pal et al. 2024), −log σ(β[h − λ·max(0,
# log π_ref(y_w)/π(y_w))]) with λ = 50, which penalises any fall of log π(y_w) below the reference;
# and dropping the most similar pairs.
# *Question*: which remedy keeps the unlabelled mass closest to the RL optimum's?

# %%
o = e["out_of_data"]
labelled = len(o["labelled"])
print(f"{labelled * (labelled - 1) // 2} pairs over {labelled} of the {e['n_responses']} responses; "
      f"{e['n_responses'] - labelled} responses are in no pair")
for name, value in o.items():
    if isinstance(value, float):
        print(f"  {name:52s} {value:.4f}")
r_hat, ref_l, beta_o = torch.tensor(o["r_hat_labelled"]), torch.tensor(o["ref_labelled"]), o["beta"]
reweighted = (ref_l * torch.exp(r_hat / beta_o)).sum().item()
share = o["reference"] / (o["reference"] + reweighted)   # π_ref(U)/Z with r̂(U) = 0
print(f"labelled: {int((r_hat > 0).sum())} winners (r̂ > 0), {int((r_hat < 0).sum())} losers (r̂ < 0); their reference mass "
      f"{ref_l.sum():.4f} becomes {reweighted:.4f} after exp(r̂/β): the unlabelled share π_ref(U)/Z = {share:.4f} "
      f"(the study's RL optimum: {o['rl_optimum']:.4f})")
for c in (r_hat.min().item(), r_hat.max().item()):  # another convention for the unlabelled responses' r̂
    moved = o["reference"] * math.exp(c / beta_o) / (o["reference"] * math.exp(c / beta_o) + reweighted)
    print(f"  had the fit put r̂(unlabelled) = {c:+.2f} instead of 0: the RL optimum's unlabelled share would be {moved:.4f}")
way = lambda after: "falls" if after < o["reference"] else "rises"
print(f"the unlabelled share: reference {o['reference']:.4f} -> RL optimum {o['rl_optimum']:.4f} ({way(o['rl_optimum'])}); "
      f"DPO {o['dpo']:.4f} ({way(o['dpo'])})")

# %% [markdown]
# ## Answers
# *Predict* (the sign of the correlation between CHES and Δ log π(y_w)): Razin et al. predict a
# negative one — the more alike the pair, the more the chosen response is pushed down. This run's
# measurement, and how strong it is:

# %%
corr = pairs["corr_ches_d_chosen"]
print(f"corr(CHES, Δ log π(y_w)) = {corr:+.3f}: {'negative' if corr < 0 else 'positive'}, "
      f"{'weak' if abs(corr) < 0.3 else 'clear'} (|r| {'<' if abs(corr) < 0.3 else '>='} 0.3); log π(y_w) fell in "
      f"{pairs['chosen_down_frac_most_similar']:.0%} of the most similar quarter of pairs and "
      f"{pairs['chosen_down_frac_least_similar']:.0%} of the least similar")

# %% [markdown]
# *Question* (which remedy keeps the unlabelled mass closest to the RL optimum's?): the distance of
# each remedy's unlabelled share from the RL optimum's, nearest first.

# %%
remedies = {k: o[k] for k in ("rpo (SFT term)", "dpop", "dpo without the most similar quarter of pairs")}
distance = {k: abs(v - o["rl_optimum"]) for k, v in remedies.items()}
for name in sorted(distance, key=distance.get):
    print(f"  {name:48s} share {remedies[name]:.4f}, {distance[name]:.4f} from the RL optimum's {o['rl_optimum']:.4f}")
closest = min(distance, key=distance.get)
print(f"closest: {closest} (to the RL optimum of the L2 convention: with a ten times smaller L2 weight its share is "
      f"{o['rl optimum, L2 weight 1e-4 instead of 1e-3']:.4f}, not {o['rl_optimum']:.4f})")


# %% [markdown]
# ## What to remember
# - What no pair mentions, neither the DPO loss nor Bradley–Terry pins down: DPO leaves it to how
#   the network generalises, the RL road to a convention for the reward of unlabelled responses.
# - Deterministic preferences push DPO's π(y_l) to 0 whatever β; IPO's finite target stops it.
# - Razin et al. predict that the more alike a pair's two responses, the more its chosen response is
#   dragged down with the rejected; this run measured corr(CHES, Δ log π(y_w)) as printed above.
