"""The exercise on the closed form of KL-regularised RL: π* and log Z of the bandit. It has no
training stage; `--train` runs the exact bandit lab with it instead."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import bandit
from .spec import Case, Exercise, Mistake

F64 = torch.float64


def solution(ref_logp, reward, beta):
    return bandit.optimal_logp(ref_logp, reward, beta), bandit.log_partition(ref_logp, reward, beta)


def _cases():
    return [
        Case("one prompt, two responses, a uniform reference, β = 1",
             (torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([[1.0, 0.0]]), 1.0)),
        Case("β = 0.001: r/β reaches 1000 and exp(r/β) overflows",
             (torch.log(torch.tensor([[0.25, 0.75]])), torch.tensor([[1.0, 0.5]]), 0.001)),
        Case("two prompts, three responses, β = 0.5",
             (F.log_softmax(torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]]), -1),
              torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]]), 0.5)),
        Case("float64, two prompts, four responses, β = 0.2",
             (F.log_softmax(torch.tensor([[0.3, -0.2, 1.0, 0.0], [0.0, 0.0, -2.0, 1.5]], dtype=F64), -1),
              torch.tensor([[1.0, -1.0, 0.2, 0.0], [-0.5, 0.3, 0.8, 0.1]], dtype=F64), 0.2)),
    ]


def _normalised(unnormalised, dim=-1):
    log_z = torch.logsumexp(unnormalised, dim, keepdim=True)
    return unnormalised - log_z, log_z


MISTAKES = (
    Mistake("beta-multiplies", "the optimum tilts π_ref by exp(r/β): a small β (a loose leash) makes the reward "
            "count MORE; exp(β·r) inverts that.", "optimum",
            lambda q, r, b: (F.log_softmax(q + b * r, -1), torch.logsumexp(q + b * r, -1))),
    Mistake("z-without-reference", "Z(x) = Σ_y π_ref(y|x)·exp(r(x,y)/β): each response is weighted by the reference; "
            "without it π* is not normalised.", "optimum",
            lambda q, r, b: (q + r / b - torch.logsumexp(r / b, -1, keepdim=True), torch.logsumexp(r / b, -1))),
    Mistake("exp-overflows", "exp(r/β) overflows for a small β (e^1000 is inf even in float64): compute log Z with "
            "logsumexp, which subtracts the largest term first.", "optimum",
            lambda q, r, b: (q + r / b - torch.log((q.exp() * torch.exp(r / b)).sum(-1, keepdim=True)),
                             torch.log((q.exp() * torch.exp(r / b)).sum(-1))), ("log_z",)),
    Mistake("normalised-over-all-prompts", "Z(x) is a sum over the responses of ONE prompt: each prompt's π*(·|x) "
            "sums to 1 on its own.", "optimum",
            lambda q, r, b: (q + r / b - torch.logsumexp(q + r / b, (0, 1)), torch.logsumexp(q + r / b, (0, 1))
                             .expand(q.size(0)))),
)


def train_lab(run, learner, **_) -> list:
    """No stage trains with π*: the exact lab instead. The learner's π*(r̂) against the policy that
    gradient descent on the DPO loss reaches from the same pairs, and J(π*) against β·E[log Z]."""
    beta, n = 0.5, 2000
    lab = bandit.make_lab(seed=run.seed)
    ref, true = lab["ref_logp"], lab["reward"]
    pairs = bandit.sample_pairs(true, n, run.seed)
    fitted = bandit.fit_reward(pairs, true.shape)
    dpo = bandit.solve_dpo(ref, pairs, beta)
    rows = []
    for label, (log_pi, log_z) in (("the library's π*(r̂)", solution(ref, fitted, beta)),
                                   ("your π*(r̂)", learner.fn(ref, fitted, beta))):
        rows.append((label, {"tv": bandit.tv(log_pi, dpo), "j": bandit.rl_objective(log_pi, ref, fitted, beta).item(),
                             "logz": beta * log_z.mean().item(), "lab": (*ref.shape, beta, n)}))
    return rows


def lab_table(rows) -> str:
    width = max(len(label) for label, _ in rows)
    prompts, responses, beta, n = rows[0][1]["lab"]
    lines = [f"the exact bandit lab: {prompts} prompts × {responses} responses, β = {beta}, {n} Bradley–Terry pairs, "
             "r̂ fitted to them (no stage trains with π*: everything here is exact, in float64)",
             f"{'':{width}}  {'TV to DPO':>10}  {'J(π*)':>10}  {'β·E[log Z]':>10}"]
    for label, r in rows:
        lines.append(f"{label:{width}}  {r['tv']:>10.1e}  {r['j']:>10.5f}  {r['logz']:>10.5f}")
    lines.append("TV to DPO: total variation to the policy DPO reaches from the same pairs (eq. 4 says 0); "
                 "J(π*) = β·E[log Z] when π* is the optimum.")
    return "\n".join(lines)


OPTIMAL_POLICY = Exercise(
    "optimal-policy", "optimal_policy", "core", "optimum",
    "π* and log Z of KL-regularised RL on a bandit (eq. 4)", ("ref_logp", "reward", "beta"), ("log_pi_star", "log_z"),
    """The maximiser of E_π[r] − β·KL(π ‖ π_ref), for each prompt x separately (eq. 4):
    π*(y|x) = π_ref(y|x)·exp(r(x, y)/β) / Z(x),     Z(x) = Σ_y π_ref(y|x)·exp(r(x, y)/β)

Inputs
  ref_logp  (X, Y) float32 or float64: log π_ref(y|x) of Y responses for each of X prompts (each row
            sums to 1 in probability).
  reward    (X, Y) same dtype: r(x, y).
  beta      a float > 0 (as small as 0.001).
Output, a tuple of two tensors in the inputs' dtype:
  log_pi_star  (X, Y): log π*(y|x) (each row a normalised distribution);
  log_z        (X,): log Z(x).
Both must stay finite when r/β is 1000 (work in log space: logsumexp).""",
    solution, "minidpo/bandit.py: optimal_logp and log_partition", _cases, MISTAKES, train=train_lab,
    train_table=lab_table,
    train_note="has no training stage: runs the exact bandit lab with your π* instead")
