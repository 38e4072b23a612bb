"""The preference losses: DPO (and its variants) and the Bradley–Terry reward-model loss.

DPO (Rafailov et al. 2023, eq. 7) on one pair (x, y_w ≻ y_l):

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]
    L = −log σ(β·h)

The implicit reward of a response is r̂(x, y) = β·log π(y|x)/π_ref(y|x) (eq. 5 rearranged), so
β·h = r̂_w − r̂_l and DPO is a Bradley–Terry loss on implicit rewards.

A lecturer's recipe for a new variant: write `def my_loss(h, beta, label_smoothing): ...` that
returns per-example losses from the log-ratio difference h, decorate it with
`@register_loss("my-loss")`, and train with `python -m minidpo dpo --loss-type my-loss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = {}


def register_loss(name: str):
    """Make a loss from h = (log-ratio chosen − log-ratio rejected) available by `name`."""
    def add(fn):
        LOSSES[name] = fn
        return fn
    return add


@register_loss("sigmoid")
def sigmoid_loss(h, beta, label_smoothing=0.0):
    """DPO, eq. 7: −log σ(β·h). With label_smoothing ε (conservative DPO) the label is assumed
    flipped with probability ε: −(1−ε)·log σ(β·h) − ε·log σ(−β·h). logsigmoid, never log(sigmoid):
    σ(β·h) underflows to 0 for very negative β·h and log(0) = −inf."""
    return (-(1 - label_smoothing) * F.logsigmoid(beta * h)
            - label_smoothing * F.logsigmoid(-beta * h))


@register_loss("ipo")
def ipo_loss(h, beta, label_smoothing=0.0):
    """IPO (Azar et al. 2023, eq. 17): (h − 1/(2β))². A squared loss has a finite target, so even
    a pair that is always won cannot push the log-ratio gap to infinity."""
    return (h - 1 / (2 * beta)) ** 2


@register_loss("hinge")
def hinge_loss(h, beta, label_smoothing=0.0):
    """SLiC-style hinge (Zhao et al. 2023): relu(1 − β·h). Zero loss once the margin exceeds 1/β."""
    return torch.relu(1 - beta * h)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta: float = 0.1, label_smoothing: float = 0.0, loss_type: str = "sigmoid",
             reference_free: bool = False):
    """Per-example DPO losses and the implicit rewards of chosen and rejected (detached).

    Inputs are sequence log-probs, shape (B,). Returns (losses (B,), chosen_rewards (B,),
    rejected_rewards (B,)); nothing is averaged, so the caller decides how to reduce.
    reference_free=True sets π_ref uniform-in-effect (its log-probs to 0)."""
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss_type {loss_type!r}; registered: {sorted(LOSSES)}")
    if reference_free:
        ref_chosen_logps = torch.zeros_like(ref_chosen_logps)
        ref_rejected_logps = torch.zeros_like(ref_rejected_logps)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps        # log π(y_w)/π_ref(y_w)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # log π(y_l)/π_ref(y_l)
    h = chosen_logratios - rejected_logratios
    losses = LOSSES[loss_type](h, beta, label_smoothing)
    chosen_rewards = (beta * chosen_logratios).detach()              # r̂(x, y_w), eq. 5
    rejected_rewards = (beta * rejected_logratios).detach()          # r̂(x, y_l)
    return losses, chosen_rewards, rejected_rewards


def dpo_gradient_weight(chosen_rewards, rejected_rewards):
    """The paper's gradient (sec. 4, "What does the DPO update do?"):

        ∇L = −β · σ(r̂_l − r̂_w) · [∇log π(y_w|x) − ∇log π(y_l|x)]

    σ(r̂_l − r̂_w) is large when the implicit reward ranks the pair wrongly and ~0 once it ranks it
    right by a wide margin: DPO weighs each example by how wrong it currently is."""
    return torch.sigmoid(rejected_rewards - chosen_rewards)


def bradley_terry_loss(chosen_scores, rejected_scores):
    """Reward-model loss: −log σ(r(x, y_w) − r(x, y_l)) per pair (Bradley & Terry 1952)."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


def preference_metrics(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps,
                       prefix: str = "") -> dict:
    """The metric names of the DPO reference implementation and TRL, as floats."""
    return {f"{prefix}loss": losses.mean().item(),
            f"{prefix}rewards/chosen": chosen_rewards.mean().item(),
            f"{prefix}rewards/rejected": rejected_rewards.mean().item(),
            f"{prefix}rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            f"{prefix}rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            f"{prefix}logps/chosen": chosen_logps.detach().mean().item(),
            f"{prefix}logps/rejected": rejected_logps.detach().mean().item()}
