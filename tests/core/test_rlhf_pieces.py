import torch

from minidpo.data import collate, prompt_and_response_rows
from minidpo.model import GPT, GPTConfig, sequence_logps
from minidpo.rlhf import leave_one_out_advantages, reinforce_loss


def test_leave_one_out_baseline():
    R = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
    A = leave_one_out_advantages(R)
    assert torch.allclose(A[0], torch.tensor([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3]))
    assert (A[1] == 0).all()
    # identical returns give no signal, whatever their value
    assert (leave_one_out_advantages(torch.full((2, 3), 7.0)) == 0).all()


def test_reinforce_loss_gradient_is_advantage_weighted_score():
    logps = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    adv = torch.tensor([0.5, -1.0, 2.0])
    reinforce_loss(logps, adv).backward()
    assert torch.allclose(logps.grad, -adv / 3)


def test_generated_rows_score_only_response_tokens_padding_after_end_ignored(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    prompts = ["Review: The Silent Harbor", "Review: The Golden Garden"]
    responses = [tok.encode_response("I loved this film."), tok.encode_response("The plot was dull. The cast felt weak.")]
    ids, mask = collate(prompt_and_response_rows(tok, prompts, responses), tok.end_id)
    assert mask.sum(1).tolist() == [len(r) for r in responses]
    lp = sequence_logps(m, ids, mask).logps
    ids2 = ids.clone()
    ids2[0, mask[0].nonzero().max() + 1:] = 7  # garbage padding after <|end|>
    assert torch.equal(sequence_logps(m, ids2, mask).logps, lp)


def test_reinforce_estimator_matches_exact_gradient_on_enumerable_gpt():
    """A GPT with a 3-token vocabulary and 2-token responses: all 9 responses can be listed, so
    J(θ) = Σ_y π(y)·r(y) − β·Σ_y π(y)·log π(y)/π_ref(y) and its gradient are exact. The estimator of
    minidpo.rlhf (k1 penalty in the return, leave-one-out baseline over K samples) must match it on
    average, and the sampled KL must match the exact KL within its standard error."""
    import itertools
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=3, block_size=4, n_layer=1, n_head=1, n_embd=8)
    policy, ref = GPT(cfg).double(), GPT(cfg).double()
    with torch.no_grad():  # make the policy differ from the reference
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    responses = list(itertools.product(range(3), repeat=2))
    ids = torch.tensor([[0, *y] for y in responses])          # prompt = token 0
    mask = torch.tensor([[False, True, True]] * len(responses))
    reward = torch.linspace(-1, 1, len(responses), dtype=torch.float64)[torch.randperm(9)]
    beta = 0.3
    params = list(policy.parameters())

    logp = sequence_logps(policy, ids, mask).logps
    with torch.no_grad():
        ref_logp = sequence_logps(ref, ids, mask).logps
    p = logp.exp()
    assert abs(p.sum().item() - 1) < 1e-12  # the 9 responses are everything
    exact_kl = (p * (logp - ref_logp)).sum()
    J = (p * reward).sum() - beta * exact_kl
    exact = torch.autograd.grad(J, params, retain_graph=True)

    K, groups = 4, 50000
    g = torch.Generator().manual_seed(1)
    y = torch.multinomial(p.detach(), K * groups, replacement=True, generator=g).view(groups, K)
    k1 = (logp.detach() - ref_logp)[y]                         # sampled log-ratio per response
    A = leave_one_out_advantages(reward[y] - beta * k1)       # (groups, K)
    weights = torch.zeros(9, dtype=torch.float64).index_add_(0, y.flatten(), A.flatten()) / y.numel()
    # reinforce_loss over all samples = −Σ_y (Σ_{samples=y} A)/N · log π(y): same gradient, 9 terms
    est = torch.autograd.grad(-reinforce_loss(logp, weights) * len(responses), params)
    flat = lambda gs: torch.cat([t.flatten() for t in gs])
    e, x = flat(est), flat(exact)
    assert (e - x).norm() / x.norm() < 0.05, ((e - x).norm() / x.norm()).item()

    se = k1.std().item() / k1.numel() ** 0.5
    assert abs(k1.mean().item() - exact_kl.item()) < 3 * se
