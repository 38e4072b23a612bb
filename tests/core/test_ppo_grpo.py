"""PPO and GRPO, piece by piece, against what their papers say each piece computes."""
import math

import pytest
import torch

from minidpo.grpo import group_advantages, grpo_loss, k3
from minidpo.ppo import (approx_kl, clipped_policy_loss, clipped_value_loss, explained_variance, gae,
                         token_rewards, whiten)


def rows(seed=0, n=5, t=7):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, t, dtype=torch.bool)
    for i in range(n):  # a contiguous response per row: prompt before it, padding after
        start = int(torch.randint(0, 3, (1,), generator=g))
        length = int(torch.randint(1, t - start + 1, (1,), generator=g))
        mask[i, start:start + length] = True
    return g, mask


def test_clipped_objective_is_the_policy_gradient_objective_at_ratio_one():
    g, mask = rows()
    old = -torch.rand(mask.shape, generator=g, dtype=torch.float64) * 3
    adv = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    new = old.clone().requires_grad_(True)
    loss, clip_frac = clipped_policy_loss(new, old, adv, mask.double(), clip=0.2)
    m = mask.double()
    assert abs(loss.item() - (-(adv * m).sum() / m.sum()).item()) < 1e-12 and clip_frac.item() == 0.0
    loss.backward()  # d/dθ of ratio at ratio 1 is ∇log π: the vanilla policy gradient −A·∇log π
    assert torch.allclose(new.grad, -adv * m / m.sum(), atol=1e-15)


def test_clipping_stops_the_gradient_beyond_the_trust_region():
    old = torch.zeros(1, 2, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    new = torch.tensor([[math.log(1.5), math.log(0.5)]], dtype=torch.float64, requires_grad=True)
    loss, clip_frac = clipped_policy_loss(new, old, adv, torch.ones(1, 2, dtype=torch.float64), clip=0.2)
    loss.backward()
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0: both already past 1 ± ε in the helpful direction
    assert clip_frac.item() == 1.0 and torch.equal(new.grad, torch.zeros_like(new))
    assert abs(loss.item() - (-(1.2 * 1.0) + 0.8 * 1.0) / 2) < 1e-12


def test_gae_with_lambda_one_is_the_return_minus_the_value():
    g, mask = rows(1)
    rewards = torch.randn(mask.shape, generator=g, dtype=torch.float64) * mask
    values = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    for i in range(mask.size(0)):
        for t in range(mask.size(1)):
            if mask[i, t]:
                reward_to_go = rewards[i, t:][mask[i, t:]].sum()
                assert abs(adv[i, t] - (reward_to_go - values[i, t])) < 1e-12
                assert abs(returns[i, t] - reward_to_go) < 1e-12
            else:
                assert adv[i, t] == 0 and returns[i, t] == 0


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    _, mask = rows(2)
    rewards = torch.arange(mask.numel(), dtype=torch.float64).view(mask.shape) * mask / 10
    values = torch.linspace(-1, 1, mask.numel(), dtype=torch.float64).view(mask.shape)
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)
    for i, t in mask.nonzero().tolist():
        next_value = values[i, t + 1] if t + 1 < mask.size(1) and mask[i, t + 1] else 0.0
        assert abs(adv[i, t] - (rewards[i, t] + next_value - values[i, t])) < 1e-12


def test_advantages_are_whitened_over_the_response_tokens():
    g, mask = rows(3, n=8, t=9)
    x = 5 + 3 * torch.randn(mask.shape, generator=g, dtype=torch.float64)
    w = whiten(x, mask.double())
    vals = w[mask]
    assert abs(vals.mean().item()) < 1e-10 and abs(vals.std().item() - 1) < 1e-6
    assert (w[~mask] == 0).all()


def test_token_rewards_spread_the_kl_and_put_the_score_on_the_last_token():
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.float64)
    pol = torch.full((2, 5), -1.0, dtype=torch.float64) * mask
    ref = torch.full((2, 5), -1.5, dtype=torch.float64) * mask
    r = token_rewards(torch.tensor([2.0, -1.0]), pol, ref, mask, beta=0.1)
    assert torch.allclose(r[0], torch.tensor([0, -0.05, -0.05, -0.05 + 2.0, 0], dtype=torch.float64))
    assert torch.allclose(r[1], torch.tensor([0, 0, -0.05 - 1.0, 0, 0], dtype=torch.float64))
    # the sum over a response is the sequence reward minus β·(k1 sequence KL): REINFORCE's return
    assert torch.allclose(r.sum(1), torch.tensor([2.0, -1.0], dtype=torch.float64) - 0.1 * (pol - ref).sum(1))


def test_value_loss_clipping_and_explained_variance():
    mask = torch.ones(1, 3, dtype=torch.float64)
    returns = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert clipped_value_loss(returns, returns, returns, mask, 0.2).item() == 0.0
    # a value that jumped past the clip range is charged as if it had stopped at old ± ε
    old, new = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[5.0, 5.0, 5.0]], dtype=torch.float64)
    expected = 0.5 * (((5.0 - returns) ** 2).clamp(min=0).maximum((0.2 - returns) ** 2)).mean()
    assert abs(clipped_value_loss(new, old, returns, mask, 0.2).item() - expected.item()) < 1e-12
    assert explained_variance(returns, returns, mask) == 1.0
    assert abs(explained_variance(torch.zeros_like(returns), returns, mask)) < 1e-12


def test_a_ppo_step_on_an_enumerable_bandit_moves_probability_to_the_better_action():
    """One prompt, four actions with known rewards, a softmax policy: sample, compute the
    advantages (reward − mean, whitened), take clipped PPO steps; π(best) must rise and π(worst) fall,
    and the clip keeps each action's ratio within [1 − ε, 1 + ε] of the first minibatch's gradient."""
    torch.manual_seed(0)
    reward = torch.tensor([1.0, 0.0, -0.5, 2.0], dtype=torch.float64)
    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    g = torch.Generator().manual_seed(1)
    before = torch.softmax(logits.detach(), 0)
    for _ in range(20):
        with torch.no_grad():
            old_logp = torch.log_softmax(logits, 0)
            actions = torch.multinomial(old_logp.exp(), 64, replacement=True, generator=g)
            r = reward[actions]
            adv = whiten((r - r.mean()).unsqueeze(0), torch.ones(1, 64, dtype=torch.float64))
        for _ in range(4):  # epochs over the same samples: the ratio leaves 1, the clip holds it
            new_logp = torch.log_softmax(logits, 0)[actions].unsqueeze(0)
            loss, _ = clipped_policy_loss(new_logp, old_logp[actions].unsqueeze(0), adv,
                                          torch.ones(1, 64, dtype=torch.float64), clip=0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = torch.softmax(logits.detach(), 0)
    assert after[3] > 0.9 > before[3] and after[2] < before[2]


def test_approx_kl_estimates_the_exact_kl_from_the_old_policy_of_an_enumerable_toy():
    """PPO's logged approx_kl is k3 of KL(π_old ‖ π_θ) on samples of π_old: on a categorical
    policy over six tokens its mean must match the exact KL within sampling error (4 standard
    errors); the ratio the other way round (π_old/π_θ, the old bug) misses it by far."""
    p_old = torch.softmax(torch.tensor([1.5, 0.5, 0.0, -0.5, -1.0, 0.3], dtype=torch.float64), 0)
    p_new = torch.softmax(torch.tensor([0.2, 1.0, 0.4, -1.5, 0.5, 0.0], dtype=torch.float64), 0)
    exact = (p_old * (p_old.log() - p_new.log())).sum().item()
    tokens = torch.multinomial(p_old, 40_000, replacement=True, generator=torch.Generator().manual_seed(0))
    old, new = p_old.log()[tokens].view(200, 200), p_new.log()[tokens].view(200, 200)  # 200 rows × 200 tokens
    mask = torch.ones(200, 200, dtype=torch.float64)
    per_token = (new - old).exp() - 1 - (new - old)
    se = per_token.std().item() / per_token.numel() ** 0.5
    estimate = approx_kl(new, old, mask).item()
    assert exact > 0.3 and abs(estimate - exact) < 4 * se, (estimate, exact, se)
    assert abs(approx_kl(old, new, mask).item() - exact) > 20 * se   # π_old/π_θ on π_old's samples
    half = torch.ones_like(mask)
    half[:, 100:] = 0  # padding does not count
    assert approx_kl(new, old, half).item() == pytest.approx(per_token[:, :100].mean().item(), rel=1e-12)


def test_grpo_advantages_have_mean_zero_and_unit_spread_in_each_group():
    g = torch.Generator().manual_seed(4)
    r = torch.randn(6, 8, generator=g, dtype=torch.float64) * torch.arange(1, 7, dtype=torch.float64).unsqueeze(1)
    a = group_advantages(r)
    assert torch.allclose(a.mean(1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(a.std(1), torch.ones(6, dtype=torch.float64) * (r.std(1) / (r.std(1) + 1e-4)), atol=1e-9)
    assert (group_advantages(torch.full((2, 4), 3.0)) == 0).all()  # equal rewards: no signal


def test_grpo_kl_term_is_k3_and_zero_at_the_reference():
    pol = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -2.0, -0.1]], dtype=torch.float64)
    d = ref - pol
    assert torch.allclose(k3(pol, ref), d.exp() - d - 1) and (k3(pol, ref) >= 0).all()
    assert k3(pol, pol).abs().max() == 0
    # at ratio 1 and π = π_ref the loss is −mean(A) averaged per sample, whatever β
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    lp = torch.full((2, 3), -1.0, dtype=torch.float64)
    adv = torch.tensor([0.5, -2.0], dtype=torch.float64)
    loss, clip_frac = grpo_loss(lp, lp, lp, adv, mask, clip=0.2, beta=0.3)
    assert abs(loss.item() - (-(0.5 - 2.0) / 2)) < 1e-12 and clip_frac.item() == 0.0


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_ppo_and_grpo_train_from_the_pipeline_folder_and_raise_the_reward(name, fast_run, tmp_path):
    """Both run as stages on the tiny pipeline, log their diagnostics, and the gold and proxy
    rewards of their samples rise over training."""
    import shutil
    from minidpo.harness import pipeline as P
    from minidpo.harness.runfolder import Run
    run, _ = fast_run
    shutil.copytree(run.out, tmp_path / "f")
    r = Run.create(tmp_path / "f", seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    m = getattr(P, f"stage_{name}")(r, steps=30)
    h = m["history"]
    third = len(h) // 3
    mean = lambda rows, k: sum(x[k] for x in rows) / len(rows)
    assert mean(h[-third:], "proxy_reward") > mean(h[:third], "proxy_reward") + 0.2
    assert mean(h[-third:], "gold_reward") > mean(h[:third], "gold_reward")
    keys = {"clip_frac", "approx_kl", "value_ev", "value_loss"} if name == "ppo" else {"clip_frac"}
    assert keys <= set(h[-1]) and all(0 <= x["clip_frac"] <= 1 for x in h)
    ev = getattr(P, f"stage_eval_{name}")(r)
    assert ev["gold_reward"] > P.stage_eval_sft(r)["gold_reward"] and ev["win_rate_vs_sft"] > 0.55
