# %% [markdown]
# # 21 · The likelihood-displacement microscope
# **You need** the derivation lesson (what the pairs leave free) and the failure-modes lesson (both
# log-probs falling). **You will see** where the probability DPO takes from the labelled responses
# goes. DPO trains a *margin*. The failure-modes lesson saw both log-probs fall; this lesson asks
# where the probability goes, pair by pair, and then — on a GPT small enough that every possible
# response can be listed — measures it exactly.
# Run: `python tutorials/21_microscope.py` (`--fast`: seconds).

# %%
import math

import torch

from minidpo.checkpoint import read_json
from minidpo.data import pair_batch
from minidpo.harness.tutorial import claim, tutorial_run
from minidpo.model import sequence_logps
from minidpo.preferences import encode_pairs, read_preferences
from minidpo.studies.microscope import all_responses, run_microscope
from minidpo.harness.stages import ensure

run = tutorial_run("21: the likelihood-displacement microscope")
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
# Now CHES by hand: $H(y)$ is the sum of the reference's final hidden states at the positions that
# predict the response's tokens (`model.hidden`, the input of the LM head), and
# $$\mathrm{CHES} = \langle H(y_w), H(y_l)\rangle - \|H(y_w)\|^2 = \langle H(y_w),\, H(y_l) - H(y_w)\rangle .$$
# It is 0 for two identical responses. It is *not* simply "large when the responses look alike":
# H is a sum over tokens, so CHES grows with the lengths — it is large and positive when $H(y_l)$
# reaches further along $H(y_w)$ than $H(y_w)$ itself (a longer rejected response), and very negative
# when the chosen response is the longer one. Razin et al. (2024) therefore also use a
# **length-normalised CHES**: the same expression with the mean hidden state
# $\bar H(y) = H(y)/|y|$ in place of the sum. Both by hand, beside the lengths, for three pairs
# picked among the first 200 of the training file: the two most alike responses (equal length, the
# fewest tokens apart), the pair whose rejected response is the longest beyond its chosen one, and
# the pair whose chosen response is.

# %%
first, _ = encode_pairs(run.tok, prefs[:200], reference.config.block_size)
response = lambda row: [t for t, m in zip(*row) if m]                  # a row's response tokens
length_gap = [len(response(r)) - len(response(c)) for c, r in first]  # |y_l| − |y_w|
apart = [sum(a != b for a, b in zip(response(c), response(r))) if len(response(c)) == len(response(r)) else 10 ** 6
         for c, r in first]                                            # tokens apart, equal lengths only
picked = {"most alike": apart.index(min(apart)), "y_l much longer": length_gap.index(max(length_gap)),
          "y_w much longer": length_gap.index(min(length_gap))}
rows = [first[i] for i in picked.values()]
ids3, mask3 = pair_batch(rows, run.device, run.tok.end_id)            # 3 chosen rows, then 3 rejected rows
with torch.no_grad():
    hidden = reference.hidden(ids3[:, :-1])                           # (6, T-1, C): the state before each next token
H = (hidden * mask3[:, 1:].unsqueeze(-1)).sum(1)                      # H(y) = Σ_k h(x, y_<k), (6, C)
lengths = mask3[:, 1:].sum(1, keepdim=True)                           # response tokens of each row
k = len(rows)
ches_by_hand = (H[:k] * H[k:]).sum(-1) - (H[:k] * H[:k]).sum(-1)
M = H / lengths                                                       # the mean hidden state H̄(y)
normalised_by_hand = (M[:k] * M[k:]).sum(-1) - (M[:k] * M[:k]).sum(-1)
for j, (what, i) in enumerate(picked.items()):
    print(f"{what:16s} (pair {i}): |y_w| {int(lengths[j])}, |y_l| {int(lengths[k + j])} | CHES {ches_by_hand[j]:+10.3f} | "
          f"length-normalised CHES {normalised_by_hand[j]:+8.3f}\n    y_w '{prefs[i]['chosen']}'\n    y_l '{prefs[i]['rejected']}'")
alike, longer_l, longer_w = ches_by_hand.tolist()
claim("the most alike pair has a CHES near 0, the pair with the much longer rejected response a large positive one "
      "and the pair with the much longer chosen response a large negative one: raw CHES follows length",
      abs(alike) < min(abs(longer_l), abs(longer_w)) and longer_l > 0 > longer_w,
      most_alike=alike, y_l_longer=longer_l, y_w_longer=longer_w)

# %% [markdown]
# ## Pair by pair, on this run's DPO policy
# For every pair: Δ log π(y_w) and Δ log π(y_l) from the reference, DPO's gradient weight
# σ(−β·h), CHES and its length-normalised form (both from the reference's hidden states). Razin et
# al.'s claim: pairs with a larger CHES displace the chosen response more — DPO pushes y_w *down*
# along with y_l. *Predict*: is corr(CHES, Δ log π(y_w)) positive or negative, and is it
# measurable on a thousand pairs? Each correlation is printed with its 95 % interval (Fisher's z:
# atanh r ± 1.96/√(n − 3)); an interval that covers 0 is "no measurable correlation". So is the
# share of pairs whose log π(y_w) fell in the quarter with the largest score against the quarter
# with the smallest. (These pairs are one DPO run's: the interval counts the pairs, not seeds.)

# %%
result = run_microscope(run)  # prints its tables (print_microscope)
pairs = result["pairs"]
at = list(picked.values())
gap = max([(torch.tensor(pairs[key][:n]) - mine).abs().max().item()
           for key, mine in (("d_logp_chosen", d_chosen), ("d_logp_rejected", d_rejected))]
          + [(torch.tensor([pairs[key][i] for i in at]) - mine).abs().max().item() / mine.abs().max().item()
             for key, mine in (("ches", ches_by_hand), ("ches_normalised", normalised_by_hand))])
print(f"the library's numbers for these pairs against ours by hand: largest difference {gap:.1e} (relative for CHES)")
by_length = pairs["corr_ches_length_gap"]
claim("over all the pairs, raw CHES follows the length gap |y_l| − |y_w|", by_length["verdict"] == "positive",
      r=by_length["r"], low=by_length["low"], high=by_length["high"], pairs=by_length["n"])

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
claim("the exact KL and its sampled estimate agree within 3 standard errors",
      abs(k["exact"] - k["sampled"]) < 3 * k["standard_error"], apart=abs(k["exact"] - k["sampled"]) / k["standard_error"])

# %% [markdown]
# ## Azar et al. (2023): deterministic preferences
# One pair, always won: the reference's two likeliest responses, the likelier one losing. DPO's loss
# −log σ(βh) only reaches 0 as h → ∞, so whatever β, training keeps pushing h up — and h grows by
# pushing π(y_l) towards 0. IPO's loss (h − 1/(2β))² has a finite optimum: it stops pushing once the
# margin h = log π(y_w)/π_ref(y_w) − log π(y_l)/π_ref(y_l) reaches 1/(2β). That target bounds the
# *margin*, not the probabilities: it says nothing of where the two responses' mass goes while the
# margin gets there. (Azar et al.'s argument is about the optimum of the KL-regularised objective;
# the loss on one pair only sees the pair, and the rest is left to how the network generalises.) The traces below (full-batch Adam, the same steps for every run) print π(y_l)
# at six points of training; then, at the end, the margin h against IPO's target, and π(y_w).

# %%
pair = e["deterministic_pair"]
traces = pair["traces"]
for name, trace in traces.items():
    print(f"{name:16s} π(y_l): " + " -> ".join(f"{t['p_loser']:.2e}" for t in trace))
end = {}
for name, trace in traces.items():
    loss_type, beta_text = name.split("_beta")
    last = trace[-1]
    h_end = math.log(last["p_winner"] / pair["ref_p_winner"]) - math.log(last["p_loser"] / pair["ref_p_loser"])
    end[name] = {"loss": loss_type, "beta": float(beta_text), "h": h_end, "p_loser": last["p_loser"],
                 "p_winner": last["p_winner"], "still_falling": last["p_loser"] < trace[-2]["p_loser"]}
    target = f" (IPO's target 1/(2β) = {1 / (2 * float(beta_text)):.2f})" if loss_type == "ipo" else ""
    print(f"{name:16s} at the end: h {h_end:+7.2f}{target} | π(y_w) {pair['ref_p_winner']:.3f} -> {last['p_winner']:.2e} | "
          f"π(y_l) {pair['ref_p_loser']:.3f} -> {last['p_loser']:.2e}")
dpo_end = {k: v for k, v in end.items() if v["loss"] == "sigmoid"}
ipo_end = {k: v for k, v in end.items() if v["loss"] == "ipo"}
claim("under DPO, π(y_l) is still falling at the end of training at every β", all(v["still_falling"] for v in dpo_end.values()),
      **{f"beta_{v['beta']:g}": v["p_loser"] for v in dpo_end.values()})
claim("under IPO, the margin ends at its target 1/(2β) at every β (within 0.05 nats)",
      all(abs(v["h"] - 1 / (2 * v["beta"])) < 0.05 for v in ipo_end.values()),
      largest_miss=max(abs(v["h"] - 1 / (2 * v["beta"])) for v in ipo_end.values()))
by_beta = sorted(ipo_end.values(), key=lambda v: v["beta"])
claim("but IPO's target does not keep π(y_l) up: at the smallest β (the largest target) it ends lower than DPO's "
      "at the largest β", by_beta[0]["p_loser"] < max(dpo_end.values(), key=lambda v: v["beta"])["p_loser"],
      ipo_smallest_beta=by_beta[0]["p_loser"], dpo_largest_beta=max(dpo_end.values(), key=lambda v: v["beta"])["p_loser"])
ends = [v["p_loser"] for v in by_beta]
claim("and IPO's final π(y_l) is not monotone in β", not (ends == sorted(ends) or ends == sorted(ends, reverse=True)),
      **{f"beta_{v['beta']:g}": v["p_loser"] for v in by_beta})
claim("at the largest β IPO reaches its small target with both responses far below the reference: the mass went "
      "to responses outside the pair", by_beta[-1]["p_winner"] < pair["ref_p_winner"] and by_beta[-1]["p_loser"] < pair["ref_p_loser"],
      p_winner=by_beta[-1]["p_winner"], p_loser=by_beta[-1]["p_loser"],
      outside=1 - by_beta[-1]["p_winner"] - by_beta[-1]["p_loser"])

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
# and dropping the quarter of pairs with the largest length-normalised CHES.
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
claim("in this enumerable world (one reference, exact numbers) DPO moves mass onto the responses no pair contains, "
      "while the RL optimum of the same pairs moves it off them", o["dpo"] > o["reference"] > o["rl_optimum"],
      reference=o["reference"], dpo=o["dpo"], rl_optimum=o["rl_optimum"])

# %% [markdown]
# ## Answers
# *Predict* (the sign of corr(CHES, Δ log π(y_w)), and is it measurable?): Razin et al. predict a
# negative one — the larger the CHES, the more the chosen response is pushed down. This run's
# measurement on its training pairs, each with its interval: raw CHES, the bare length gap
# |y_l| − |y_w| (which raw CHES follows, above), and the length-normalised CHES.

# %%
for key, words in (("corr_ches_d_chosen", "CHES"), ("corr_length_gap_d_chosen", "|y_l| − |y_w|"),
                   ("corr_ches_normalised_d_chosen", "length-normalised CHES")):
    c = pairs[key]
    print(f"corr({words}, Δ log π(y_w)) = {c['r']:+.3f} on {c['n']} pairs, 95 % interval {c['low']:+.3f} … {c['high']:+.3f}: "
          f"{c['verdict']}")
for key, words in (("ches_quarters", "CHES"), ("ches_normalised_quarters", "length-normalised CHES")):
    q = pairs[key]
    print(f"log π(y_w) fell in {q['a']:.0%} of the quarter of pairs with the largest {words} and {q['b']:.0%} of the "
          f"smallest: gap {q['gap']:+.3f} ({q['low']:+.3f} … {q['high']:+.3f}: {q['verdict']})")
raw, by_gap = pairs["corr_ches_d_chosen"], pairs["corr_length_gap_d_chosen"]
normalised = pairs["corr_ches_normalised_d_chosen"]
claim("raw CHES predicts the fall of log π(y_w) no better than the bare length gap: their correlations differ by "
      "less than 0.05", abs(raw["r"] - by_gap["r"]) < 0.05, ches=raw["r"], length_gap=by_gap["r"])
claim("the length-normalised CHES, which takes the lengths out, shows no negative correlation on these pairs: "
      "Razin et al.'s prediction is not seen in this world", normalised["verdict"] != "negative",
      r=normalised["r"], low=normalised["low"], high=normalised["high"])

# %% [markdown]
# *Question* (which remedy keeps the unlabelled mass closest to the RL optimum's?): the distance of
# each remedy's unlabelled share from the RL optimum's, nearest first.

# %%
remedies = {k: o[k] for k in ("rpo (SFT term)", "dpop", "dpo without the quarter of largest normalised CHES")}
distance = {k: abs(v - o["rl_optimum"]) for k, v in remedies.items()}
for name in sorted(distance, key=distance.get):
    print(f"  {name:48s} share {remedies[name]:.4f}, {distance[name]:.4f} from the RL optimum's {o['rl_optimum']:.4f}")
closest = min(distance, key=distance.get)
claim("the SFT term (RPO) keeps the unlabelled share closest to the RL optimum's", closest == "rpo (SFT term)",
      distance=distance["rpo (SFT term)"])
print(f"closest: {closest} (to the RL optimum of the L2 convention: with a ten times smaller L2 weight its share is "
      f"{o['rl optimum, L2 weight 1e-4 instead of 1e-3']:.4f}, not {o['rl_optimum']:.4f})")


# %% [markdown]
# ## What to remember
# - What no pair mentions, neither the DPO loss nor Bradley–Terry pins down: DPO leaves it to how
#   the network generalises, the RL road to a convention for the reward of unlabelled responses.
# - Deterministic preferences push DPO's π(y_l) towards 0 whatever β; IPO's finite target stops the
#   margin, not the fall: where the two responses' mass goes is left free, as for every pair.
# - CHES sums hidden states over tokens, so it follows the responses' lengths; read a similarity
#   score against the plain lengths, and read a correlation with its interval.
