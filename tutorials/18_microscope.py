# %% [markdown]
# # 18 · The likelihood-displacement microscope
# DPO trains a *margin*. Lesson 13 saw both log-probs fall; this lesson asks where the probability
# goes, pair by pair, and then — on a GPT small enough that every possible response can be listed —
# measures it exactly.
# Run: `python tutorials/18_microscope.py` (a minute or two; `--fast`: seconds).

# %%
from minidpo.harness.tutorial import tutorial_run
from minidpo.studies.microscope import all_responses, run_microscope
from minidpo.harness.stages import ensure

run = tutorial_run("18: the likelihood-displacement microscope")
ensure(run, "dpo")

# %% [markdown]
# ## Pair by pair, on this run's DPO policy
# For every pair: Δ log π(y_w) and Δ log π(y_l) from the reference, DPO's gradient weight
# σ(−β·h), and CHES, the similarity of the two responses in the reference's hidden states
# (Razin et al. 2024):
# $$\mathrm{CHES}(x, y_w, y_l) = \langle H(y_w), H(y_l)\rangle - \|H(y_w)\|^2, \qquad H(y) = \sum_k h(x, y_{<k})$$
# Their claim: the more alike chosen and rejected are, the more DPO pushes the chosen response
# *down* along with the rejected one. *Predict*: positive or negative correlation?

# %%
result = run_microscope(run)  # prints its tables (print_microscope)
pairs = result["pairs"]

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
# (β only sets the speed). IPO's loss (h − 1/(2β))² has a finite target, so π(y_l) settles.

# %%
for name, trace in e["deterministic_pair"]["traces"].items():
    print(f"{name:14s} π(y_l): " + " -> ".join(f"{t['p_loser']:.2e}" for t in trace))

# %% [markdown]
# ## Xu et al. (2024): mass on responses no pair contains
# Fifteen pairs over six of the 40 responses. DPO's loss never looks at the other 34, so nothing
# in it stops probability from moving there; the KL-regularised RL optimum π_ref·exp(r̂/β)/Z with a
# reward fitted to the same pairs keeps them at their reference share (r̂ = 0 there). Then the
# remedies on the same pairs: an SFT term (RPO), DPOP, and dropping the most similar pairs.
# *Question*: which remedy keeps the unlabelled mass closest to the RL optimum's?

# %%
for name, value in e["out_of_data"].items():
    if isinstance(value, float):
        print(f"  {name:52s} {value:.4f}")
