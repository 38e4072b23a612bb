import math

import pytest
import torch

from minidpo.losses import (LOSSES, bradley_terry_loss, dpo_gradient_weight, dpo_loss, preference_metrics,
                            register_margin_loss)


def rand(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(-20 * torch.rand(n, generator=g, dtype=torch.float64)) for _ in range(4)]


def test_policy_equals_reference_gives_ln2_and_the_metrics_count_strict_wins():
    pc, pr, _, _ = rand()
    l, cr, rr = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.3)
    assert torch.allclose(l, torch.full_like(l, math.log(2)))
    assert (cr == 0).all() and (rr == 0).all()
    m = preference_metrics(l, cr, rr, pc, pr)
    assert m["rewards/accuracies"] == 0.0 and m["rewards/margins"] == 0.0  # a tie is not a win
    assert abs(m["loss"] - math.log(2)) < 1e-12 and m["logps/chosen"] == pc.mean().item()
    # one pair ranked right by the implicit reward out of four: accuracy 1/4, margin its mean
    cr2, rr2 = torch.tensor([0.2, 0.0, -0.1, 0.0]), torch.tensor([0.1, 0.0, 0.0, 0.3])
    m = preference_metrics(torch.zeros(4), cr2, rr2, torch.zeros(4), torch.zeros(4))
    assert m["rewards/accuracies"] == 0.25 and abs(m["rewards/margins"] - (-0.3 / 4)) < 1e-7


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_sigmoid_matches_independent_formula(beta, eps):
    pc, pr, rc, rw = rand(seed=int(beta * 100))
    l, cr, rr = dpo_loss(pc, pr, rc, rw, beta=beta, label_smoothing=eps)
    h = (pc - rc) - (pr - rw)
    sig = lambda z: 1 / (1 + torch.exp(-z))
    expected = -(1 - eps) * torch.log(sig(beta * h)) - eps * torch.log(sig(-beta * h))
    assert torch.allclose(l, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(cr, beta * (pc - rc)) and torch.allclose(rr, beta * (pr - rw))


def test_ipo_and_hinge_match_formulas():
    pc, pr, rc, rw = rand(seed=3)
    h = (pc - rc) - (pr - rw)
    beta = 0.4
    assert torch.allclose(dpo_loss(pc, pr, rc, rw, beta, loss_type="ipo")[0], (h - 1 / (2 * beta)) ** 2)
    hinge = torch.clamp(1 - beta * h, min=0)
    assert torch.allclose(dpo_loss(pc, pr, rc, rw, beta, loss_type="hinge")[0], hinge)


def test_reference_free_zeroes_reference():
    pc, pr, rc, rw = rand(seed=4)
    a = dpo_loss(pc, pr, rc, rw, 0.2, reference_free=True)[0]
    b = dpo_loss(pc, pr, torch.zeros_like(rc), torch.zeros_like(rw), 0.2)[0]
    assert torch.equal(a, b)


def test_gradient_equals_closed_form():
    pc, pr, rc, rw = rand(seed=5)
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    beta = 0.7
    l, cr, rr = dpo_loss(pc, pr, rc, rw, beta)
    l.sum().backward()
    w = dpo_gradient_weight(cr, rr)
    h = (pc - rc) - (pr - rw)
    assert torch.allclose(w, torch.sigmoid(-beta * h.detach()))
    assert torch.allclose(pc.grad, -beta * w, atol=1e-12)
    assert torch.allclose(pr.grad, beta * w, atol=1e-12)


def test_numerically_stable_for_huge_margins():
    big = torch.tensor([1e4, -1e4], dtype=torch.float32)
    z = torch.zeros(2)
    l = dpo_loss(big, -big, z, z, beta=1.0)[0]
    assert torch.isfinite(l).all()
    assert abs(l[0].item()) < 1e-6 and abs(l[1].item() - 2e4) < 1.0


def test_new_loss_registers_with_one_decorator():
    @register_margin_loss("test-square")
    def square(h, beta):
        return (beta * h) ** 2
    try:
        pc, pr, rc, rw = rand(seed=6)
        l = dpo_loss(pc, pr, rc, rw, 0.3, loss_type="test-square")[0]
        assert torch.allclose(l, (0.3 * ((pc - rc) - (pr - rw))) ** 2)
    finally:
        LOSSES.pop("test-square")
    with pytest.raises(ValueError, match="unknown loss_type"):
        dpo_loss(pc, pr, rc, rw, loss_type="nope")


def test_bradley_terry_loss_independent():
    a, b, _, _ = rand(seed=7)
    expected = torch.log1p(torch.exp(-(a - b)))
    assert torch.allclose(bradley_terry_loss(a, b), expected, rtol=1e-9)
