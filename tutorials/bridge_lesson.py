# %% [markdown]
# # 12 · When DPO and RLHF reach the same policy — and why ours do not
# **You need** lesson 11 (the exact lab: DPO, exact RLHF and π*(r̂) are one policy), lesson 07 (π*,
# Z, the implicit reward, what the pairs leave free) and lessons 05–06 (the reward model, REINFORCE).
# **You will see** the theorem behind lesson 11 stated with its conditions, then a bridge of six rungs
# from that lab to this project's default run: one condition broken per rung, the two roads measured
# at every rung with the same numbers (the distance between their policies, gold reward, KL to the
# reference, the mass they put on responses no pair mentions). Rungs 0–2 are computed here on one
# seed, in seconds; every rung is read from the full study (`python -m minidpo bridge`, three seeds).
# One figure; how much of the default run's gap each rung accounts for, and what that reading can and
# cannot say; and an answer to "so when should I expect DPO to match RLHF, and which should I use?"
# from what the rungs measured.
# Run: `python tutorials/bridge_lesson.py` (`--fast`: seconds).

# %%
import torch

from minidpo import bandit as B
from minidpo.harness import plots
from minidpo.harness.tutorial import claim, claim_paired, lesson_knobs, show, study_result, tutorial_run
from minidpo.studies import bridge as BR
from minidpo.studies.bridge_world import words
from minidpo.studies.microscope import all_responses

run = tutorial_run("12: when DPO and RLHF reach the same policy")
torch.set_printoptions(precision=4, sci_mode=False, linewidth=120)
knobs = lesson_knobs(full_study=False)

# %% [markdown]
# ## The theorem, and what it assumes
# Call two rewards *equivalent* when they differ by a function of the prompt alone,
# r'(x, y) = r(x, y) + f(x). The DPO paper's Lemma 1: under Bradley–Terry,
# P(y₁ ≻ y₂ | x) = σ(r(x, y₁) − r(x, y₂)), equivalent rewards give the same label probabilities, so
# no amount of labels tells them apart. Lemma 2: they also give the same optimum of the KL-regularised
# objective, π*(y|x) = π_ref(y|x)·exp(r(x, y)/β)/Z(x) (f(x) moves into Z). Theorem 1: every
# equivalence class holds exactly one reward of the form β·log π(y|x)/π_ref(y|x), that of π = π*(r).
# So minimising the DPO loss over policies is maximising Bradley–Terry's likelihood over reward
# classes, and the DPO policy is π*(r̂) — the very policy RLHF's second step computes from its fitted
# reward r̂. The proof uses, without always saying so:
#
# 1. **pairs that link the responses** — Bradley–Terry fixes r̂ only where pairs connect the responses
#    (up to one constant per linked group); a response in no pair is not constrained at all;
# 2. **a policy class that can express π*(r̂) for every r̂** — "every class is reachable as
#    β·log π/π_ref" holds when π can be any distribution, not for a GPT whose weights are shared by all
#    responses;
# 3. **a reward model that can be any function** and is fitted to its maximum;
# 4. **both objectives solved** — DPO's loss minimised, J maximised;
# 5. **the same data and the same objective** for both roads.
#
# The bridge breaks them one at a time, on the pairs of one seed:
#
# | rung | what changes | what it isolates |
# |---|---|---|
# | 0 | the exact lab on the responses the pairs link | the theorem (condition 1–5 all hold) |
# | 1 | all 40 responses: some in no pair (still tabular) | condition 1: identifiability |
# | 2 | the policy is a GPT (shared weights); reward tabular, RL exact | condition 2 |
# | 3 | the reward model is a GPT too (our `RewardModel`) | condition 3 |
# | 4 | the stages' own optimisers and step counts, REINFORCE sampled | condition 4 |
# | 5 | the default toy-world run; online DPO beside it | condition 5, and the world |

# %% [markdown]
# ## The world of rungs 0–4
# The microscope's tiny GPT (lesson 20 meets it again): 3 symbols and an end token, responses of at
# most 3 tokens, so there are exactly 40 responses and every policy is a table of 40 probabilities
# that sum to 1 — gold reward, KL and distances are sums, not estimates. The gold reward is written in
# plain Python like the toy world's (`minidpo/studies/bridge_world.py`): "good" +1, "fine" +0.3,
# "bad" −1, a repeated symbol −0.5, no end −1, empty −2. Most of it is a sum over symbols, so shared
# weights can guess an unseen response's reward from its parts; the repetition and ending terms cannot
# be guessed that way. The reference is the tiny GPT fitted to a random distribution (far from
# optimal). A seed draws 200 pairs from the reference, labelled by Bradley–Terry on the gold reward,
# and keeps those inside the largest *strongly linked* set (every response in it beats and is beaten
# through chains of pairs), so that Bradley–Terry's maximum likelihood is finite; the same pairs serve
# every rung.

# %%
world = BR.world_of(run.seed)
beta = BR.BETA
responses = all_responses()
print(f"{len(responses)} responses; β = {beta} (the DPO stage's) for both roads")
print(f"pairs: {world.drawn} drawn from the reference, {len(world.pairs)} kept; {len(world.linked)} responses linked, "
      f"{len(world.unlinked)} in no kept pair (the reference gives them {world.ref_logp.exp()[world.unlinked].sum():.3f})")
best = sorted(range(len(responses)), key=lambda i: -world.ref_logp[i].item())[:5]
for i in best:
    print(f"  π_ref {world.ref_logp[i].exp():.3f}  r* {world.gold[i]:+.1f}  '{words(responses[i])}'"
          + ("" if i in world.linked else "  (in no kept pair)"))
gold_ref = (world.ref_logp.exp() * world.gold).sum().item()
print(f"the reference's gold reward E_π_ref[r*] = {gold_ref:+.3f}; the best response scores {world.gold.max():+.1f}")

# %% [markdown]
# ## Rung 0: the theorem holds
# On the linked responses alone (π_ref renormalised to them), tabular everything: r̂ by Bradley–Terry
# maximum likelihood, RLHF by maximising J exactly, DPO by minimising its loss, both to the last digits
# (`minidpo.bandit`'s L-BFGS, then Newton steps). Total variation TV(p, q) = ½Σ_y|p(y) − q(y)| is the
# distance between two policies: the largest difference in the probability they give any set of
# responses.

# %%
r0 = BR.rung0_theorem(world)
m0 = BR.measure(r0)
print(f"TV(DPO, RLHF) {m0['tv_dpo_rlhf']:.1e}, TV(DPO, π*(r̂)) {m0['tv_dpo_opt']:.1e}, TV(RLHF, π*(r̂)) {m0['tv_rlhf_opt']:.1e}")
print(f"both moved: KL to the reference {m0['kl_dpo']:.3f} nats, gold {m0['gold_ref']:+.3f} -> {m0['gold_dpo']:+.3f}")
claim("rung 0: DPO, RLHF and π*(r̂) are one policy to the solvers' precision (every TV ≤ 1e-8)",
      max(m0["tv_dpo_rlhf"], m0["tv_dpo_opt"], m0["tv_rlhf_opt"]) <= 1e-8, tv=m0["tv_dpo_rlhf"])

# %% [markdown]
# ## Rung 1: responses no pair mentions
# Now the policy is a table over all 40 responses, and the pairs are the same. Write the policy as
# logits θ, log π(y) = θ_y − log Σ_y' e^θ_y'. In DPO's loss every policy log-prob appears as a
# difference log π(y_w) − log π(y_l) = θ_w − θ_l: the normaliser cancels, and so does every logit of a
# response no pair mentions. By hand, for the first pair, and then autograd's gradient:

# %%
theta = world.ref_logp.clone().requires_grad_(True)
logp = torch.log_softmax(theta, -1)
w, l = world.pairs[0]
print(f"pair 0: '{words(responses[w])}' ≻ '{words(responses[l])}': log π(y_w) − log π(y_l) = "
      f"{(logp[w] - logp[l]).item():+.6f}, θ_w − θ_l = {(theta[w] - theta[l]).item():+.6f}")
BR.dpo_pair_loss(logp, world).backward()
grad_unlinked, grad_linked = theta.grad[world.unlinked].abs().max().item(), theta.grad[world.linked].abs().max().item()
print(f"|∂L/∂θ| largest on an unlinked response {grad_unlinked:.1e}, on a linked one {grad_linked:.1e}")
claim("DPO's gradient on the logit of a response no pair mentions is 0 to rounding", grad_unlinked < 1e-15,
      largest=grad_unlinked)

# %% [markdown]
# So the loss cannot decide where those responses' probability goes: the start does. DPO from the
# reference, and DPO from the reference's logits plus noise, solved to the last digits; RLHF with the
# tabular reward model, whose unseen entries stay where they started (0, the linked responses' mean:
# no gradient reaches them).

# %%
r1 = BR.rung1_unlinked(world)
m1, e1 = BR.measure(r1), r1.extra
print(f"DPO loss from the reference {e1['dpo_loss']:.12f}, from the other start {e1['dpo_loss_other_start']:.12f}")
print(f"TV between the two DPO solutions {e1['tv_dpo_other_start']:.4f}; mass on the unlinked responses: "
      f"reference {m1['unseen_mass_ref']:.4f}, DPO from the reference {m1['unseen_mass_dpo']:.4f}, from the other start "
      f"{e1['unseen_mass_dpo_other_start']:.4f}, RLHF {m1['unseen_mass_rlhf']:.4f}")
print(f"TV(DPO from the reference, RLHF) {m1['tv_dpo_rlhf']:.1e}")
claim("rung 1: two DPO solutions reach the same loss (to 1e-12) with different policies (TV > 0.005)",
      abs(e1["dpo_loss"] - e1["dpo_loss_other_start"]) < 1e-12 and e1["tv_dpo_other_start"] > 0.005,
      loss_gap=abs(e1["dpo_loss"] - e1["dpo_loss_other_start"]), tv=e1["tv_dpo_other_start"])
claim("rung 1: from the reference, DPO and RLHF still meet (TV ≤ 1e-8): both optimisers leave what no pair "
      "mentions where it started", m1["tv_dpo_rlhf"] <= 1e-8, tv=m1["tv_dpo_rlhf"])

# %% [markdown]
# Why they still meet: gradient descent from the reference never moves an unlinked logit, and never
# moves the sum of the linked ones (the loss sees only differences), so DPO lands on the reward that
# is 0 on unlinked responses and centred on the linked ones — the same choice the tabular reward
# model makes by starting at zero. Two implicit choices that happen to agree; nothing in either
# objective asks for it.
#
# ## Rung 2: the policy is a GPT
# One set of weights now writes all 40 probabilities. DPO is minimised over the weights (full batch,
# Adam); RLHF keeps the tabular r̂ and maximises J exactly over the same weights. DPO is solved twice,
# at two step sizes.

# %%
r2 = BR.rung2_gpt_policy(world, steps=BR.FAST_EXACT_STEPS if run.fast else BR.EXACT_STEPS)
m2, e2 = BR.measure(r2), r2.extra
print(f"DPO loss {e2['dpo_loss']:.9f} (step size {BR.EXACT_LR}), {e2['dpo_loss_other_lr']:.9f} (step size "
      f"{e2['other_lr']}); the tabular floor {e2['dpo_loss_floor']:.9f}")
print(f"TV(RLHF, π*(r̂)) {m2['tv_rlhf_opt']:.4f}; TV(DPO, π*(r̂)) {m2['tv_dpo_opt']:.4f}; TV(DPO, RLHF) {m2['tv_dpo_rlhf']:.4f}; "
      f"TV between the two DPO solutions {e2['tv_dpo_other_lr']:.4f}")
print(f"mass on unlinked responses: π*(r̂) {m2['unseen_mass_opt']:.3f}, RLHF {m2['unseen_mass_rlhf']:.3f}, "
      f"DPO {m2['unseen_mass_dpo']:.3f} and {e2['unseen_mass_dpo_other_lr']:.3f}")
print(f"KL to the reference: RLHF {m2['kl_rlhf']:.3f}, DPO {m2['kl_dpo']:.3f} and {e2['kl_dpo_other_lr']:.3f}")
