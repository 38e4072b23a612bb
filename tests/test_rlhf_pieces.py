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
    lp = sequence_logps(m, ids, mask)[1]
    ids2 = ids.clone()
    ids2[0, mask[0].nonzero().max() + 1:] = 7  # garbage padding after <|end|>
    assert torch.equal(sequence_logps(m, ids2, mask)[1], lp)
