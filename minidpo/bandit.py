"""The equivalence lab: DPO and KL-regularised RLHF reach the same policy, shown exactly.

A contextual bandit small enough to enumerate: a few prompts x, a few responses y per prompt, a
tabular softmax reference π_ref(y|x) and a true reward r(x, y). Everything is exact (float64):

  RLHF objective    J(π) = E_x[ Σ_y π(y|x) r(x,y) − β·KL(π(·|x) ‖ π_ref(·|x)) ]
  its maximiser     π*(y|x) = π_ref(y|x)·exp(r(x,y)/β) / Z(x),  Z(x) = Σ_y π_ref(y|x)·exp(r(x,y)/β)
  its value         J(π*) = β·E_x[log Z(x)]

Three roads from the same n preference pairs (labels from Bradley–Terry on r):
  RLHF   fit r̂ by Bradley–Terry maximum likelihood, then maximise J with r̂ — exactly (full-batch
         L-BFGS on the logits) and by sampled REINFORCE with the KL penalty;
  DPO    minimise `minidpo.losses.dpo_loss` over the policy's logits on the same pairs;
  closed form π*(r̂).
DPO's loss is the Bradley–Terry likelihood with reward β·log π/π_ref, and every reward (up to a
per-prompt constant) is reachable that way, so its minimiser is exactly π*(r̂): Z(x) is the per-prompt
constant, and Bradley–Terry only sees reward *differences* within a prompt, so it cancels.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from .losses import dpo_loss, bradley_terry_loss

DT = torch.float64


def make_lab(n_prompts: int = 3, n_responses: int = 4, seed: int = 0, reward_scale: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ref_logits = torch.randn(n_prompts, n_responses, generator=g, dtype=DT)
    reward = reward_scale * torch.randn(n_prompts, n_responses, generator=g, dtype=DT)
    return {"ref_logp": F.log_softmax(ref_logits, -1), "reward": reward}


# --- exact quantities ---------------------------------------------------------------------------
def optimal_logp(ref_logp, reward, beta):
    """log π*(y|x) = log π_ref + r/β − log Z(x)."""
    return F.log_softmax(ref_logp + reward / beta, -1)


def log_partition(ref_logp, reward, beta):
    """log Z(x) = log Σ_y π_ref(y|x) exp(r(x,y)/β), shape (X,)."""
    return torch.logsumexp(ref_logp + reward / beta, -1)


def kl(logp, logq):
    """KL(p ‖ q) per prompt, (X,)."""
    return (logp.exp() * (logp - logq)).sum(-1)


def rl_objective(logp, ref_logp, reward, beta):
    """J(π) = mean over prompts of E_π[r] − β·KL(π ‖ π_ref) (prompts uniform)."""
    return ((logp.exp() * reward).sum(-1) - beta * kl(logp, ref_logp)).mean()


def tv(logp, logq):
    """Total variation distance, max over prompts: ½ Σ_y |p − q|."""
    return 0.5 * (logp.exp() - logq.exp()).abs().sum(-1).max().item()


def centred(v):
    """Remove each prompt's mean: rewards are only defined up to a per-prompt constant."""
    return v - v.mean(-1, keepdim=True)


# --- data -----------------------------------------------------------------------------------------
def sample_pairs(reward, n: int, seed: int = 0, deterministic: bool = False):
    """n labelled pairs (x, y_w, y_l) as three long tensors. Each pair is a uniformly random prompt
    and two distinct responses; the winner is drawn by Bradley–Terry σ(r_i − r_j), or is always
    the higher-reward one when deterministic=True."""
    g = torch.Generator().manual_seed(seed)
    X, Y = reward.shape
    x = torch.randint(X, (n,), generator=g)
    i = torch.randint(Y, (n,), generator=g)
    j = (i + torch.randint(1, Y, (n,), generator=g)) % Y  # a different response
    diff = reward[x, i] - reward[x, j]
    i_wins = diff > 0 if deterministic else torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(diff)
    return x, torch.where(i_wins, i, j), torch.where(i_wins, j, i)


# --- optimisers -------------------------------------------------------------------------------
def _lbfgs(param, loss_fn, iters: int = 20):
    opt = torch.optim.LBFGS([param], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    for _ in range(iters):
        opt.step(closure)
    return param.detach()


def fit_reward(pairs, shape):
    """r̂ by Bradley–Terry maximum likelihood (centred per prompt)."""
    x, w, l = pairs
    r = torch.zeros(shape, dtype=DT, requires_grad=True)
    _lbfgs(r, lambda: bradley_terry_loss(r[x, w], r[x, l]).mean())
    return centred(r.detach())


def solve_rl_exact(ref_logp, reward, beta):
    """Maximise J exactly: full-batch L-BFGS on free logits, starting from the reference."""
    theta = ref_logp.clone().requires_grad_(True)
    _lbfgs(theta, lambda: -rl_objective(F.log_softmax(theta, -1), ref_logp, reward, beta))
    return F.log_softmax(theta.detach(), -1)


def solve_dpo(ref_logp, pairs, beta, loss_type: str = "sigmoid", iters: int = 20, start=None):
    """Minimise the DPO loss (the library's own `dpo_loss`) over free logits, from the reference's
    (or from the logits `start`)."""
    x, w, l = pairs
    theta = (ref_logp if start is None else start).clone().requires_grad_(True)

    def loss():
        logp = F.log_softmax(theta, -1)
        return dpo_loss(logp[x, w], logp[x, l], ref_logp[x, w], ref_logp[x, l], beta,
                        loss_type=loss_type)[0].mean()
    _lbfgs(theta, loss, iters)
    return F.log_softmax(theta.detach(), -1)


def reinforce(ref_logp, reward, beta, steps: int = 3000, k: int = 64, lr: float = 0.05, seed: int = 0):
    """Sampled REINFORCE with the KL penalty in the return and a leave-one-out baseline — the same
    estimator as `minidpo.rlhf`, on the tabular policy. Adam with a decaying step size."""
    from .rlhf import leave_one_out_advantages
    g = torch.Generator().manual_seed(seed)
    X = ref_logp.size(0)
    theta = ref_logp.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s / 200))
    rows = torch.arange(X).unsqueeze(1)
    for _ in range(steps):
        logp = F.log_softmax(theta, -1)
        y = torch.multinomial(logp.detach().exp(), k, replacement=True, generator=g)  # (X, k)
        lp = logp[rows, y]
        ret = reward[rows, y] - beta * (lp.detach() - ref_logp[rows, y])
        loss = -(leave_one_out_advantages(ret) * lp).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return F.log_softmax(theta.detach(), -1)


def exact_policy_gradient(theta, ref_logp, reward, beta):
    """∇_θ J(softmax θ) by autograd on the exact objective (for checking REINFORCE)."""
    theta = theta.clone().requires_grad_(True)
    rl_objective(F.log_softmax(theta, -1), ref_logp, reward, beta).backward()
    return theta.grad


# --- the DPO gradient through the real GPT -----------------------------------------------------------
def gpt_gradient_check(beta: float = 0.5, seed: int = 0) -> dict:
    """Autograd of the DPO loss w.r.t. a tiny GPT's parameters (float64) vs the paper's closed form
    −β·σ(r̂_l − r̂_w)·(∇log π(y_w) − ∇log π(y_l)), built from two separate backward passes."""
    from .losses import dpo_gradient_weight
    from .model import GPT, GPTConfig, sequence_logps
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    policy, ref = GPT(cfg).double(), GPT(cfg).double()
    B, T = 4, 12
    ids = torch.randint(0, 50, (2 * B, T))
    mask = torch.zeros(2 * B, T, dtype=torch.bool)
    mask[:, 5:] = True
    with torch.no_grad():
        ref_lp = sequence_logps(ref, ids, mask).logps
    params = list(policy.parameters())

    lp = sequence_logps(policy, ids, mask).logps
    losses, cr, rr = dpo_loss(lp[:B], lp[B:], ref_lp[:B], ref_lp[B:], beta)
    auto = torch.autograd.grad(losses.mean(), params)

    weight = dpo_gradient_weight(cr, rr)                     # σ(r̂_l − r̂_w), detached
    lp = sequence_logps(policy, ids, mask).logps
    g_w = torch.autograd.grad((weight * lp[:B]).sum(), params)   # Σ_i w_i ∇log π(y_w,i)
    lp = sequence_logps(policy, ids, mask).logps
    g_l = torch.autograd.grad((weight * lp[B:]).sum(), params)   # Σ_i w_i ∇log π(y_l,i)
    closed = [-beta / B * (a - b) for a, b in zip(g_w, g_l)]
    abs_err = max((a - c).abs().max().item() for a, c in zip(auto, closed))
    scale = max(a.abs().max().item() for a in auto)
    return {"gradient_max_abs_error": abs_err, "gradient_max_rel_error": abs_err / scale,
            "gradient_scale": scale}


# --- the whole lab ---------------------------------------------------------------------------------
def run_lab(beta: float = 0.5, n_pairs: int = 2000, ns=(50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000),
            seed: int = 0, reinforce_steps: int = 3000, fast: bool = False) -> dict:
    lab = make_lab(seed=seed)
    ref_logp, r = lab["ref_logp"], lab["reward"]
    pairs = sample_pairs(r, n_pairs, seed)
    r_hat = fit_reward(pairs, r.shape)
    pi_star_fitted = optimal_logp(ref_logp, r_hat, beta)
    pi_star_true = optimal_logp(ref_logp, r, beta)
    pi_rl = solve_rl_exact(ref_logp, r_hat, beta)
    pi_dpo = solve_dpo(ref_logp, pairs, beta)
    pi_rf = reinforce(ref_logp, r_hat, beta, steps=reinforce_steps if not fast else 1500, seed=seed)
    implicit = beta * (pi_dpo - ref_logp)

    policies = {"dpo": pi_dpo, "rlhf_exact": pi_rl, "reinforce": pi_rf, "optimal_fitted": pi_star_fitted,
                "optimal_true": pi_star_true, "reference": ref_logp}
    names = list(policies)
    tv_table = {a: {b: tv(policies[a], policies[b]) for b in names} for a in names}
    kl_table = {a: {b: kl(policies[a], policies[b]).max().item() for b in names} for a in names}

    # Z cancels: Bradley–Terry probabilities from β·log π*/π_ref with and without β·log Z(x)
    logZ = log_partition(ref_logp, r, beta)
    r_implicit = beta * (pi_star_true - ref_logp)          # = r − β·log Z(x)
    r_with_Z = r_implicit + beta * logZ.unsqueeze(-1)       # = r exactly
    bt = lambda rr: torch.sigmoid(rr.unsqueeze(-1) - rr.unsqueeze(-2))  # P(y_i ≻ y_j | x)
    by_n = []  # mean over 5 independent data sets (2 with fast): one data set's TV is noisy
    for n in ns if not fast else ns[:3]:
        tvs = [tv(solve_dpo(ref_logp, sample_pairs(r, n, seed + 1 + s), beta, iters=5), pi_star_true)
               for s in range(2 if fast else 5)]
        by_n.append([n, sum(tvs) / len(tvs)])
    return {
        "beta": beta, "n_pairs": n_pairs, "n_prompts": r.shape[0], "n_responses": r.shape[1],
        "tv_dpo_vs_optimal_fitted": tv(pi_dpo, pi_star_fitted),
        "tv_rlhf_vs_optimal_fitted": tv(pi_rl, pi_star_fitted),
        "tv_reinforce_vs_optimal_fitted": tv(pi_rf, pi_star_fitted),
        "tv_dpo_vs_rlhf": tv(pi_dpo, pi_rl),
        "tv_dpo_vs_optimal_true": tv(pi_dpo, pi_star_true),
        "implicit_reward_max_error": (centred(implicit) - r_hat).abs().max().item(),
        "implicit_reward_max_error_vs_true": (centred(implicit) - centred(r)).abs().max().item(),
        "reward_fit_max_error_vs_true": (r_hat - centred(r)).abs().max().item(),
        "z_cancels_max_diff": (bt(r_implicit) - bt(r_with_Z)).abs().max().item(),
        "objective": {k: rl_objective(v, ref_logp, r, beta).item() for k, v in policies.items()},
        "optimal_value_beta_logZ": beta * logZ.mean().item(),
        "tv_dpo_vs_optimal_true_by_n": by_n,
        "tv_table": tv_table, "kl_table": kl_table,
        "policies": {k: v.exp().tolist() for k, v in policies.items()},
        "true_reward_centred": centred(r).tolist(), "fitted_reward": r_hat.tolist(),
        "implicit_reward_centred": centred(implicit).tolist(),
        **gpt_gradient_check(beta, seed),
        "ipo_contrast": ipo_contrast(steps=(1, 10, 100, 1000) if fast else (1, 10, 100, 1000, 3000)),
    }


def ipo_contrast(betas=(0.1, 0.5, 1.0), steps=(1, 10, 100, 1000, 3000), lr: float = 0.1) -> dict:
    """Deterministic preferences (y_w always beats y_l, one prompt, two responses, uniform π_ref).
    Gradient descent on DPO drives the gap h = log π(y_w)/π_ref − log π(y_l)/π_ref up without
    bound (π(y_l) → 0) for every β; IPO's gap settles at 1/(2β). All β run side by side (one row
    of logits each; the rows do not interact)."""
    beta = torch.tensor(betas, dtype=DT)
    ref = torch.log(torch.full((len(betas), 2), 0.5, dtype=DT))
    out = {}
    for loss_type in ("sigmoid", "ipo"):
        theta = ref.clone().requires_grad_(True)
        opt = torch.optim.SGD([theta], lr=lr)
        traces, done = [[] for _ in betas], 0
        for n in steps:
            for _ in range(n - done):
                logp = F.log_softmax(theta, -1)
                loss = dpo_loss(logp[:, 0], logp[:, 1], ref[:, 0], ref[:, 1], beta, loss_type=loss_type)[0].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            done = n
            logp = F.log_softmax(theta.detach(), -1)
            gap = (logp[:, 0] - ref[:, 0]) - (logp[:, 1] - ref[:, 1])
            for b in range(len(betas)):
                traces[b].append({"steps": n, "gap": gap[b].item(), "p_loser": logp[b, 1].exp().item()})
        for b, bv in enumerate(betas):
            out[f"{'dpo' if loss_type == 'sigmoid' else 'ipo'}_beta{bv}"] = {
                "beta": bv, "target_gap_ipo": 1 / (2 * bv), "trace": traces[b]}
    return out
