# %% [markdown]
# # 07 · Where the DPO loss comes from
# **You need** lesson 04 (Bradley–Terry labels: P(y_w ≻ y_l) = σ(r_w − r_l)), lesson 05 (the reward
# model's loss −log σ(r_w − r_l)) and lesson 06 (RLHF's objective: reward minus β times the KL to the
# reference). **You will see** the DPO paper's derivation done in numbers on one prompt and five
# responses, where every sum over responses can be written out: the KL-regularised objective
# (eq. 3) and the policy that maximises it, π* (eq. 4); the reward read back from π* (eq. 5);
# Bradley–Terry, where the normaliser Z cancels (eq. 6); and the DPO loss (eq. 7), which is the
# reward model's loss with β times the policy's log-ratio, β·log π/π_ref, in place of the reward. Then gradient descent
# on that loss lands on π*. The next lessons train with this loss; this one says why it has its form.
# Everything is float64, so "equal" means equal to the last digits.
# Run: `python tutorials/07_dpo_derivation.py` (seconds).

# %%
import math

import torch
import torch.nn.functional as F

from minidpo import bandit as B
from minidpo import world as W
from minidpo.harness import plots
from minidpo.harness.tutorial import claim, lesson_knobs, show, tutorial_run
from minidpo.losses import bradley_terry_loss, dpo_loss

run = tutorial_run("07: the DPO loss derived, in numbers")
torch.set_printoptions(precision=4, sci_mode=False, linewidth=120)
F64 = torch.float64

# %% [markdown]
# ## One prompt, five responses
# A prompt x, five responses y, a reference policy π_ref(y|x) (what an SFT model might give: the
# best review is rare) and the reward r(x, y): the world's gold reward, scored by `minidpo.world`.
#
# *Try*: `--set beta=0.1` (or set `beta` in the knobs cell and re-run from there): a smaller β trusts
# the reward more, so π* sharpens: its largest probability and KL(π*‖π_ref) both rise, and the
# descent below still lands on it.
#
# *Try*: `--set n_labels=1000`: the descent sees 1000 sampled Bradley–Terry labels instead of the
# exact label probabilities, and lands on π*(r_φ) of the reward r_φ those labels fit (a reward
# model, as in lesson 05, here with one free number per response), not on π*(r): its distance to π*
# rises from the descent's own tolerance to the error of learning r from finite data.

# %%
knobs = lesson_knobs(beta=0.5, n_labels=0)
beta = knobs.beta
prompt = W.make_prompt("The Silent Harbor")
responses = ["The Silent Harbor was a brilliant movie. The music was charming.", "The acting was good.",
             "The Silent Harbor was a long film.", "The plot was dull.",
             "I saw it on Sunday. The story was terrible."]
ref_logp = torch.tensor([0.05, 0.25, 0.40, 0.20, 0.10], dtype=F64).log()
reward = torch.tensor([W.gold_reward(prompt, y) for y in responses], dtype=F64)
print(prompt, f"(β = {beta})")
for y, p, rr in zip(responses, ref_logp.exp(), reward):
    print(f"  π_ref {p:.2f}   r {rr:+.2f}   {y}")
print("π_ref =", ref_logp.exp(), "\nr     =", reward)

# %% [markdown]
# ## The objective and its optimum (eq. 3 and eq. 4)
# $$J(\pi) = \sum_y \pi(y|x)\,r(x,y) \;-\; \beta\sum_y \pi(y|x)\log\frac{\pi(y|x)}{\pi_{ref}(y|x)}$$
# $$Z(x) = \sum_y \pi_{ref}(y|x)\,e^{r(x,y)/\beta}, \qquad
# \pi^*(y|x) = \frac{\pi_{ref}(y|x)\,e^{r(x,y)/\beta}}{Z(x)}$$
# Why π* is the maximiser: put $r = \beta\log\frac{\pi^*}{\pi_{ref}} + \beta\log Z$ into J and it
# becomes $J(\pi) = \beta\log Z(x) - \beta\,\mathrm{KL}(\pi\,\|\,\pi^*)$: largest, and equal to β·log Z,
# exactly when π = π*. Below, J of π* and of five other policies, and the last column checks that
# identity for each.
#
# **Computing π\* without overflow, for many prompts at once.** Written as above, e^{r/β} overflows
# for a small β (e^{1000} is `inf` even in float64). Take logs instead:
# $$\log\pi^*(y|x) = \log\pi_{ref}(y|x) + r(x,y)/\beta - \log Z(x), \qquad
# \log Z(x) = \operatorname{logsumexp}_y\big(\log\pi_{ref}(y|x) + r(x,y)/\beta\big)$$
# `torch.logsumexp` subtracts the largest term before exponentiating, so nothing overflows. With X
# prompts and Y responses each, `ref_logp` and `reward` are (X, Y): the sum runs over the responses of
# *one* prompt (the last dimension), so log Z has shape (X,) — one normaliser per prompt — and each
# row of π\* sums to 1 on its own. That is `bandit.optimal_logp` / `bandit.log_partition`, and the
# `optimal-policy` exercise.

# %%
Z = (ref_logp.exp() * torch.exp(reward / beta)).sum()
pi_star = ref_logp.exp() * torch.exp(reward / beta) / Z
pi_star_logp = pi_star.log()
lab_star = B.optimal_logp(ref_logp, reward, beta)     # the library's log_softmax(log π_ref + r/β)
open_vs_lab = (pi_star_logp - lab_star).abs().max().item()
print(f"Z(x) = {Z:.6f}, β·log Z = {beta * Z.log():.6f}\nπ*    = {pi_star}")
print(f"π* here vs bandit.optimal_logp: max |Δ log π| = {open_vs_lab:.1e}")
# in log space, for two prompts at once, (X, Y) = (2, 5): this prompt, and the same responses under a
# flatter reference with the rewards reversed
refs = torch.stack([ref_logp, torch.full((5,), 0.2, dtype=F64).log()])   # (X, Y)
rewards = torch.stack([reward, reward.flip(0)])                          # (X, Y)
log_z = torch.logsumexp(refs + rewards / beta, dim=-1)                   # (X,): one Z per prompt
log_star = refs + rewards / beta - log_z[:, None]                        # (X, Y)
print(f"two prompts: log Z {tuple(log_z.shape)} = {log_z}, each row of π* sums to {log_star.exp().sum(-1)}")
claim("the log-space π* of the first prompt is the one written out above", (log_star[0] - pi_star_logp).abs().max().item() < 1e-12,
      difference=(log_star[0] - pi_star_logp).abs().max().item())
tiny = 1e-3
naive = (ref_logp.exp() * torch.exp(reward / tiny)).sum().log()
safe = torch.logsumexp(ref_logp + reward / tiny, -1)
print(f"β = {tiny}: log Z written with exp gives {naive.item()}, with logsumexp {safe.item():.3f}")
claim("at a small β, exp overflows and logsumexp does not", not math.isfinite(naive.item()) and math.isfinite(safe.item()),
      logsumexp=round(safe.item(), 3))


def objective(p):
    """J(π) for the probabilities p (0·log 0 = 0, so a one-hot policy has a finite KL)."""
    return (p * reward).sum() - beta * (torch.xlogy(p, p) - p * ref_logp).sum()


def kl_to(p, q):
    return (torch.xlogy(p, p) - p * q.log()).sum()


g = torch.Generator().manual_seed(run.seed)
candidates = {"π*": pi_star, "π_ref": ref_logp.exp(), "greedy (argmax r)": F.one_hot(reward.argmax(), 5).to(F64),
              "softmax(r/β), no π_ref": torch.softmax(reward / beta, -1), "uniform": torch.full((5,), 0.2, dtype=F64),
              "π* jittered": torch.softmax(pi_star_logp + 0.3 * torch.randn(5, generator=g, dtype=F64), -1)}
J = {name: objective(p).item() for name, p in candidates.items()}
print(f"{'policy':24s} {'E[r]':>8s} {'KL(π‖π_ref)':>12s} {'J(π)':>9s} {'J + β·KL(π‖π*)':>15s}")
for name, p in candidates.items():
    print(f"{name:24s} {(p * reward).sum():8.4f} {kl_to(p, ref_logp.exp()):12.4f} {J[name]:9.5f} "
          f"{J[name] + beta * kl_to(p, pi_star):15.12f}")
J_star, beta_logZ = J["π*"], beta * Z.log().item()
kl_star = kl_to(pi_star, ref_logp.exp()).item()
print(f"J(π*) − β·log Z = {J_star - beta_logZ:.1e}; the library's J(π*): "
      f"{B.rl_objective(pi_star_logp, ref_logp, reward, beta).item():.12f}")
identity = max(abs(J[name] + beta * kl_to(p, pi_star).item() - beta_logZ) for name, p in candidates.items())
claim("J(π) + β·KL(π‖π*) = β·log Z for every policy in the table", identity < 1e-12, largest_gap=identity)
claim("π* has the largest J of them, and J(π*) = β·log Z",
      all(v < J_star for k, v in J.items() if k != "π*") and abs(J_star - beta_logZ) < 1e-12, J_star=round(J_star, 6))

# %% [markdown]
# ## The reward, read back from π* (eq. 5)
# Take logs of eq. 4 and solve for r: $r(x,y) = \beta\log\frac{\pi^*(y|x)}{\pi_{ref}(y|x)} + \beta\log Z(x)$.
# The first term is the *implicit reward*; the second is the same for every response of the prompt.

# %%
implicit = beta * (pi_star_logp - ref_logp)           # β·log π*/π_ref = r − β·log Z
r_back = implicit + beta * Z.log()
eq5_error = (r_back - reward).abs().max().item()
print("β·log π*/π_ref          =", implicit)
print("β·log π*/π_ref + β·log Z =", r_back)
print(f"max |that − r| = {eq5_error:.1e}")
claim("eq. 5 gives back the reward", eq5_error < 1e-12, error=eq5_error)

# %% [markdown]
# ## Bradley–Terry, where β·log Z cancels (eq. 1 → eq. 6)
# $$P(y_w \succ y_l \mid x) = \sigma\big(r(x,y_w) - r(x,y_l)\big)
# = \sigma\Big(\beta\log\tfrac{\pi^*(y_w|x)}{\pi_{ref}(y_w|x)} + \beta\log Z - \beta\log\tfrac{\pi^*(y_l|x)}{\pi_{ref}(y_l|x)} - \beta\log Z\Big)$$
# Only reward *differences* within a prompt enter, so Z drops out. That matters: Z is a sum over
# every possible response, which no one can compute for a language model. RLHF never needs Z (it
# maximises J by sampling from the policy); the closed form π* does, and the cancellation is what
# lets a loss be written from π's log-ratios without it. One pair first, then every pair at once.

# %%
w, l = 1, 3                                           # y_w = "The acting was good.", y_l = "The plot was dull."
p_true = torch.sigmoid(reward[w] - reward[l])
p_with_Z = torch.sigmoid(r_back[w] - r_back[l])
p_implicit = torch.sigmoid(implicit[w] - implicit[l])
print(f"P(y_w ≻ y_l): with r {p_true:.15f}, with β·log π*/π_ref + β·log Z {p_with_Z:.15f}, "
      f"with β·log π*/π_ref alone {p_implicit:.15f}")
bt = lambda v: torch.sigmoid(v[:, None] - v[None, :])  # P(y_i ≻ y_j), all pairs
z_cancel = (bt(implicit) - bt(r_back)).abs().max().item()
implicit_vs_true = (bt(implicit) - bt(reward)).abs().max().item()
print(f"all pairs: max |P with Z − P without Z| = {z_cancel:.1e}; max |P implicit − P true| = {implicit_vs_true:.1e}")
claim("Z cancels: every pair's Bradley–Terry probability is the same with and without β·log Z", z_cancel < 1e-12,
      largest_difference=z_cancel)

# %% [markdown]
# ## The DPO loss of π* is the reward model's loss of r (eq. 7 vs eq. 2)
# $$\mathcal{L}_{DPO} = -\log\sigma\Big(\beta\log\tfrac{\pi(y_w|x)}{\pi_{ref}(y_w|x)} - \beta\log\tfrac{\pi(y_l|x)}{\pi_{ref}(y_l|x)}\Big),
# \qquad \mathcal{L}_{R} = -\log\sigma\big(r(x,y_w) - r(x,y_l)\big)$$
# The same Bradley–Terry likelihood, once with the policy's implicit reward and once with a reward
# model's: DPO fits a reward model whose parameters are the policy. Computed with the library's two
# loss functions, the ones the GPT trains with.

# %%
one = lambda v, i: v[[i]]                             # the losses take batches: a batch of one pair
dpo_at_star = dpo_loss(one(pi_star_logp, w), one(pi_star_logp, l), one(ref_logp, w), one(ref_logp, l), beta)[0]
bt_of_r = bradley_terry_loss(one(reward, w), one(reward, l))
loss_gap = (dpo_at_star - bt_of_r).abs().item()
print(f"DPO loss of π* {dpo_at_star.item():.15f}\nBT loss of r   {bt_of_r.item():.15f}\ndifference {loss_gap:.1e}")
claim("the DPO loss of π* is the reward model's loss of r", loss_gap < 1e-12, difference=loss_gap)

# %% [markdown]
# ## Gradient descent on the DPO loss lands on π*
# A tabular softmax policy $\pi_\theta = \mathrm{softmax}(\theta)$, started at the reference
# ($\theta = \log\pi_{ref}$, as DPO starts from the SFT model). The loss over every ordered pair
# $(y_i, y_j)$, each labelled "$y_i$ wins" with its Bradley–Terry probability (the expected loss under
# infinitely many labels; with `n_labels` > 0, sampled labels instead):
# $$\mathcal{L}(\theta) = \frac{1}{|P|}\sum_{(i,j)\in P} \sigma(r_i - r_j)\,\big[-\log\sigma(\beta\,h_{ij})\big],
# \qquad h_{ij} = \log\tfrac{\pi_\theta(y_i)}{\pi_{ref}(y_i)} - \log\tfrac{\pi_\theta(y_j)}{\pi_{ref}(y_j)}$$
# Plain gradient descent with step 1/β²: the loss sees θ only through β·h, so this step takes the same
# path in β·h for every β. How close π_θ is to π* is measured by the total variation distance,
# TV(p, q) = ½·Σ_y |p(y) − q(y)|: the largest difference in probability the two give any set of
# responses (0 for equal policies, 1 for policies that share no response).

# %%
idx_i, idx_j = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
off = idx_i != idx_j
exact_win, exact_lose = idx_i[off], idx_j[off]        # every ordered pair (y_i, y_j), i ≠ j ...
exact_weight = torch.sigmoid(reward[exact_win] - reward[exact_lose]) / off.sum()  # ... weighted P(y_i ≻ y_j)/|P|
if knobs.n_labels:                                    # sampled labels: each pair once, weight 1/n
    x_lab, win, lose = B.sample_pairs(reward[None], knobs.n_labels, seed=run.seed)
    label_weight = torch.full((knobs.n_labels,), 1 / knobs.n_labels, dtype=F64)
else:
    win, lose, label_weight = exact_win, exact_lose, exact_weight
STEPS, SHOWN = 1000, (0, 1, 3, 10, 30, 100, 200, 300, 400, 600, 800, 1000)


def pair_loss(theta, win, lose, label_weight):
    """The DPO loss (eq. 7, the library's `dpo_loss`) of softmax(θ), weighted over the labelled pairs."""
    logp = F.log_softmax(theta, -1)
    return (label_weight * dpo_loss(logp[win], logp[lose], ref_logp[win], ref_logp[lose], beta)[0]).sum()


def descend(win, lose, label_weight, theta0, steps=STEPS, target=pi_star_logp):
    """Gradient descent on the DPO loss over the tabular logits; (log π, loss, [(step, TV to target)])."""
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=1 / beta ** 2)
    trace = []
    for step in range(steps + 1):
        loss = pair_loss(theta, win, lose, label_weight)
        logp = F.log_softmax(theta, -1)
        if step in SHOWN:
            trace.append((step, B.tv(logp.detach(), target)))
        if step == steps:
            return logp.detach(), loss.item(), trace
        opt.zero_grad()
        loss.backward()
        opt.step()


pi_dpo, loss_end, trace = descend(win, lose, label_weight, ref_logp)
for step, d in trace:
    print(f"step {step:4d}: TV(π_θ, π*) = {d:.2e}")
tv_final = trace[-1][1]
loss_floor = (label_weight * bradley_terry_loss(reward[win], reward[lose])).sum().item()
print(f"final loss {loss_end:.12f}; the Bradley–Terry loss of r on the same labels {loss_floor:.12f}")
print("π_θ =", pi_dpo.exp(), "\nπ* =", pi_star)
tvs_shown = [d for _, d in trace]
claim("the descent's distance to π* falls at every step shown", all(b < a for a, b in zip(tvs_shown, tvs_shown[1:])),
      first=tvs_shown[0], last=tvs_shown[-1])
claim("gradient descent on the DPO loss lands on π* (TV under 1e-10)", tv_final < 1e-10, tv=tv_final)
if knobs.n_labels:  # the labels' own maximum-likelihood reward r_φ, and its optimum
    r_phi = B.fit_reward((x_lab, win, lose), (1, 5))[0]
    tv_to_fitted = B.tv(pi_dpo, B.optimal_logp(ref_logp, r_phi, beta))
    print(f"{knobs.n_labels} sampled labels: TV(π_θ, π*(r)) = {tv_final:.2e}, TV(π_θ, π*(r_φ)) = {tv_to_fitted:.2e}")
    claim("with sampled labels the descent lands on π*(r_φ) of the fitted reward instead", tv_to_fitted < 1e-6,
          tv=tv_to_fitted)

# %% [markdown]
# **Up to what?** The loss reads θ only through the differences $h_{ij}$ of the pairs it is given:
# it is the Bradley–Terry likelihood of the labels with the rewards $\beta\log\pi/\pi_{ref}$. With
# exact label probabilities the pair $(i, j)$ and its reverse together are smallest when
# $\sigma(\beta h_{ij}) = \sigma(r_i - r_j)$, i.e. $\beta h_{ij} = r_i - r_j$ (with sampled labels: the
# differences of their maximum-likelihood fit r_φ). So the pairs pin down $\beta\log\pi/\pi_{ref}$ up to
# one constant per group of responses linked by pairs, and softmax removes one constant. With every
# response linked (as above) nothing is left free: π = π*. Drop every pair that contains the last
# response (here always with the exact label probabilities): its logit gets no gradient (zero up to rounding), and
# after the descent we can give it any share of the mass without moving the loss, while the ratios
# among the four linked responses still match π*.

# %%
linked = (exact_win != 4) & (exact_lose != 4)
linked_pairs = exact_win[linked], exact_lose[linked], exact_weight[linked]
pi_linked, _, _ = descend(*linked_pairs, ref_logp)
ratio_error = ((pi_linked[:4] - pi_star_logp[:4]) - (pi_linked[0] - pi_star_logp[0])).abs().max().item()
print(f"pairs without the last response: max |Δ log π/π*| among the linked four = {ratio_error:.1e}")
theta = pi_linked.clone().requires_grad_(True)
pair_loss(theta, *linked_pairs).backward()
last_logit_grad = theta.grad[4].item()
print(f"its gradient on the last response's logit: {last_logit_grad:.1e}")
free = {}
for share in (pi_star[4].item(), 0.01, 0.3):        # give the last response this share of the mass
    theta = pi_linked.clone()
    theta[4] = math.log(share / (1 - share)) + torch.logsumexp(pi_linked[:4], -1)
    free[share] = (pair_loss(theta, *linked_pairs).item(), F.log_softmax(theta, -1))
    print(f"  π(last) = {share:.4f}: loss {free[share][0]:.15f}, TV to π* {B.tv(free[share][1], pi_star_logp):.3f}")
free_loss_spread = max(v[0] for v in free.values()) - min(v[0] for v in free.values())
claim("without pairs the last response's logit gets no gradient, and the four linked responses still match π*",
      abs(last_logit_grad) < 1e-12 and ratio_error < 1e-8, gradient=last_logit_grad, ratio_error=ratio_error)
claim("any share of the mass for the last response leaves the loss unchanged", free_loss_spread < 1e-12,
      loss_spread=free_loss_spread, largest_tv_to_pi_star=round(max(B.tv(v[1], pi_star_logp) for v in free.values()), 3))

# %%
fig = plots.policy_bars(responses, {"π_ref": ref_logp.exp().tolist(), "π* (eq. 4)": pi_star.tolist(),
                                    f"DPO descent, step {STEPS}": pi_dpo.exp().tolist()},
                        trace=([s for s, _ in trace], [d for _, d in trace]), path=run.path("derivation.png"),
                        title=f"One prompt, β = {beta}: descent on the DPO loss lands on π*")
print("figure:", run.path("derivation.png"))
show(fig)


# %% [markdown]
# *Question*: as β → 0 and as β → ∞, what does π* become? (Answer at the end.)

# %% [markdown]
# ## Answers
# **β → 0 and β → ∞.** $\pi^* \propto \pi_{ref}\,e^{r/\beta}$: as β → 0 the exponent dominates and π*
# puts all its mass on the best response (the greedy policy, whatever π_ref says, as long as
# π_ref gives it some mass); as β → ∞ the exponent r/β goes to 0, so e^{r/β} → 1 and π* = π_ref. In numbers:

# %%
for b in (1e-3, 1e-1, 1.0, 10.0, 1e3):
    star_b = B.optimal_logp(ref_logp, reward, b)
    print(f"β = {b:7g}: TV(π*, greedy) = {B.tv(star_b, candidates['greedy (argmax r)'].log()):.4f}, "
          f"TV(π*, π_ref) = {B.tv(star_b, ref_logp):.4f}")
tv_small_beta_greedy = B.tv(B.optimal_logp(ref_logp, reward, 1e-3), candidates["greedy (argmax r)"].log())
tv_large_beta_ref = B.tv(B.optimal_logp(ref_logp, reward, 1e3), ref_logp)
claim("at β = 0.001 π* is the greedy policy and at β = 1000 it is π_ref (TV under 1e-3)",
      tv_small_beta_greedy < 1e-3 and tv_large_beta_ref < 1e-3, tv_greedy=tv_small_beta_greedy, tv_ref=tv_large_beta_ref)


# %% [markdown]
# ## What to remember
# - The KL-regularised objective max E[r] − β·KL(π‖π_ref) has a closed-form optimum,
#   π* = π_ref·e^{r/β}/Z (eq. 4), and J(π*) = β·log Z is its value. Compute it in log space
#   (logsumexp over the responses of each prompt: log Z is one number per prompt).
# - Solved for r, that is r = β·log π*/π_ref + β·log Z (eq. 5): a policy defines a reward, up to a
#   constant per prompt.
# - Bradley–Terry sees only reward differences within a prompt, so β·log Z cancels (eq. 6), and the
#   reward model's loss with r = β·log π/π_ref is the DPO loss (eq. 7). No reward model, no Z, no
#   sampling: the policy is fitted to the preferences directly.
# - The pairs fix β·log π/π_ref only up to one constant per group of linked responses: what no pair
#   mentions, the loss leaves free (lesson 21 follows where that mass goes on a GPT).
# - Next: lesson 08 climbs from one sequence's log-prob to this loss over a data set.
# - **Exercise**: write it yourself and have it graded — `python -m minidpo grade optimal-policy`
#   (`python -m minidpo grade --start` writes the stubs; docs/exercises.md).
