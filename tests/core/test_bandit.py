"""The exact equivalence lab. Conditions for the tight tolerances below: every response appears in
some pair (the pair graph of each prompt is connected, so reward differences are identified) and
the labels are not perfectly separable (otherwise Bradley–Terry's maximum likelihood sends some
reward differences, and DPO's log-ratios, to infinity and no finite optimum exists)."""
import torch
import torch.nn.functional as F

from minidpo import bandit as B


def lab_and_pairs(n=2000, seed=0):
    lab = B.make_lab(seed=seed)
    pairs = B.sample_pairs(lab["reward"], n, seed)
    return lab, pairs


def test_pairs_cover_every_response_and_are_not_separable():
    lab, (x, w, l) = lab_and_pairs()
    X, Y = lab["reward"].shape
    for p in range(X):
        for i in range(Y):
            for j in range(i + 1, Y):
                a = ((x == p) & (w == i) & (l == j)).sum().item()
                b = ((x == p) & (w == j) & (l == i)).sum().item()
                assert a > 0 and b > 0  # both orders observed: not separable


def test_closed_form_maximises_objective_and_value_is_beta_logZ():
    lab = B.make_lab(seed=1)
    ref, r, beta = lab["ref_logp"], lab["reward"], 0.3
    star = B.optimal_logp(ref, r, beta)
    best = B.rl_objective(star, ref, r, beta)
    assert abs(best.item() - beta * B.log_partition(ref, r, beta).mean().item()) < 1e-12
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(50):
            other = F.log_softmax(star + scale * torch.randn(star.shape, generator=g, dtype=B.DT), -1)
            assert B.rl_objective(other, ref, r, beta) <= best + 1e-12


def test_dpo_rlhf_and_closed_form_agree():
    lab, pairs = lab_and_pairs()
    ref, beta = lab["ref_logp"], 0.5
    r_hat = B.fit_reward(pairs, lab["reward"].shape)
    star = B.optimal_logp(ref, r_hat, beta)
    dpo = B.solve_dpo(ref, pairs, beta)
    assert B.tv(dpo, star) < 1e-4
    assert B.tv(B.solve_rl_exact(ref, r_hat, beta), star) < 1e-4
    assert B.tv(B.reinforce(ref, r_hat, beta, steps=1500), star) < 2e-2
    implicit = B.centred(beta * (dpo - ref))
    assert (implicit - r_hat).abs().max().item() < 1e-3
    assert B.tv(dpo, ref) > 0.05  # and it is not trivially the reference


def test_reinforce_gradient_matches_exact_gradient():
    """Averaged over many samples, the REINFORCE-with-KL estimator (k1 in the return, leave-one-out
    baseline) equals ∇[E r − β KL] computed exactly on the enumerable policy."""
    from minidpo.rlhf import leave_one_out_advantages
    lab = B.make_lab(n_prompts=2, n_responses=3, seed=2)
    ref, r, beta = lab["ref_logp"], lab["reward"], 0.4
    theta = ref + 0.5 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=B.DT)
    exact = B.exact_policy_gradient(theta, ref, r, beta)
    g = torch.Generator().manual_seed(0)
    th = theta.clone().requires_grad_(True)
    logp = F.log_softmax(th, -1)
    K, reps = 8, 20000
    rows = torch.arange(2).unsqueeze(1)
    y = torch.multinomial(logp.detach().exp(), K * reps, replacement=True, generator=g).view(2, reps, K)
    lp = logp[rows.unsqueeze(-1), y]                                  # (2, reps, K)
    ret = r[rows.unsqueeze(-1), y] - beta * (lp.detach() - ref[rows.unsqueeze(-1), y])
    adv = leave_one_out_advantages(ret.reshape(-1, K)).view(2, reps, K)
    # the estimate of ∇J for prompt x averages A·∇log π over samples; J averages over prompts
    (adv * lp).mean(dim=(1, 2)).mean().backward()
    assert torch.allclose(th.grad, exact, atol=3e-3), (th.grad, exact)


def test_exact_kl_equals_sampled_estimate_within_standard_error():
    lab = B.make_lab(n_prompts=1, n_responses=5, seed=3)
    ref = lab["ref_logp"]
    pi = B.optimal_logp(ref, lab["reward"], 0.5)
    exact = B.kl(pi, ref).item()
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(pi.exp(), 20000, replacement=True, generator=g)[0]
    k1 = pi[0, y] - ref[0, y]
    se = k1.std().item() / len(k1) ** 0.5
    assert abs(k1.mean().item() - exact) < 3 * se


def test_z_cancels_and_gradient_check():
    res = B.gpt_gradient_check()
    assert res["gradient_max_rel_error"] < 1e-8
    lab = B.make_lab()
    ref, r, beta = lab["ref_logp"], lab["reward"], 0.5
    implicit = beta * (B.optimal_logp(ref, r, beta) - ref)
    with_z = implicit + beta * B.log_partition(ref, r, beta).unsqueeze(-1)
    assert torch.allclose(with_z, r, atol=1e-12)  # β log π*/π_ref + β log Z = r exactly
    bt = lambda v: torch.sigmoid(v.unsqueeze(-1) - v.unsqueeze(-2))
    assert torch.allclose(bt(implicit), bt(with_z), atol=1e-14)


def test_ipo_gap_settles_dpo_gap_grows():
    res = B.ipo_contrast(betas=(0.5, 1.0), steps=(100, 1000, 3000))
    for beta in (0.5, 1.0):
        ipo = res[f"ipo_beta{beta}"]["trace"]
        assert abs(ipo[-1]["gap"] - 1 / (2 * beta)) < 1e-6
        dpo = res[f"dpo_beta{beta}"]["trace"]
        gaps = [t["gap"] for t in dpo]
        assert gaps == sorted(gaps) and gaps[-1] > 5 / beta ** 0.5 and dpo[-1]["p_loser"] < 5e-3
