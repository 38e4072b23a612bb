import json
import math

import pytest
import torch

from minidpo.checkpoint import CheckpointError, load_gpt, save_checkpoint
from minidpo.data import collate, render, sft_targets
from minidpo.model import GPT, GPTConfig, sequence_logps

CFG = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**CFG.__dict__, **kw})).eval()


def test_math_and_sdpa_attention_agree():
    m = model()
    x = torch.randint(0, 97, (3, 20))
    fast = m(x)
    for b in m.blocks:
        b.attn.attention = "math"
    assert torch.allclose(fast, m(x), atol=1e-5)


def test_initial_loss_is_log_vocab():
    m = model(vocab_size=593, n_embd=64)
    x = torch.randint(0, 593, (16, 32))
    _, loss = m(x[:, :-1], x[:, 1:])
    assert abs(loss.item() - math.log(593)) < 0.1


def test_weight_tying_and_residual_init():
    m = model()
    assert m.lm_head.weight is m.wte.weight
    std = m.blocks[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * CFG.n_layer)) < 0.003


def test_kv_cache_greedy_equals_recompute_and_rows_independent():
    m = model(1)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
    with_cache = m.generate(prompts, 15, temperature=0)
    without = m.generate(prompts, 15, temperature=0, use_cache=False)
    assert with_cache == without
    assert [m.generate([p], 15, temperature=0)[0] for p in prompts] == with_cache


def test_generation_stops_and_top_k_limits_choices():
    m = model(2)
    out = m.generate([[1, 2]] * 20, 10, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    greedy = m.generate([[1, 2]], 10, temperature=0)[0]
    assert all(o == greedy for o in out)  # top-1 sampling is greedy
    stop = greedy[2]
    cut = m.generate([[1, 2]], 10, temperature=0, stop_id=stop)[0]
    assert cut[-1] == stop and len(cut) == greedy.index(stop) + 1


def test_prompt_longer_than_context_is_a_clear_error():
    with pytest.raises(ValueError, match="block_size"):
        model().generate([[1] * 30], 10)


def test_prompt_and_padding_do_not_change_response_logps(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32)).eval()
    a = render(tok, "Review: The Silent Harbor", "The acting was good.")
    b = render(tok, "Review: The Golden Harbor", "I loved this film.")
    ids, mask = collate([a, b], tok.end_id)
    seq = sequence_logps(m, ids, mask).logps
    # padding: the short row alone gives the same numbers
    alone = collate([b], tok.end_id)
    assert torch.allclose(sequence_logps(m, *alone).logps, seq[1:], atol=1e-5)
    # the sequence log-prob is exactly the sum of log p(next token) over the response tokens, read
    # off an independent full log-softmax: prompt tokens are conditioned on but never scored
    full = torch.log_softmax(m(ids[:, :-1]), -1).gather(2, ids[:, 1:, None]).squeeze(-1)
    for i in range(2):
        positions = mask[i, 1:].nonzero().squeeze(1)
        assert torch.allclose(seq[i], full[i, positions].sum(), atol=1e-5)
        assert positions.min() == len(tok.encode_prompt(["Review: The Silent Harbor", "Review: The Golden Harbor"][i])) - 1
    # the prompt changes the response's log-prob (it conditions it), yet is never scored itself
    ids2 = ids.clone()
    ids2[0, 1] = (ids2[0, 1] + 5) % tok.n_ordinary
    seq2 = sequence_logps(m, ids2, mask).logps
    assert not torch.allclose(seq2[0], seq[0]) and torch.equal(seq2[1], seq[1])
    # the SFT loss ignores prompt targets entirely
    x, y = sft_targets(ids, mask)
    assert ((y != -100) == mask[:, 1:]).all()
    assert int((y != -100).sum()) == int(mask.sum())
    # mean option divides by the number of response tokens
    mean = sequence_logps(m, ids, mask, average=True).logps
    assert torch.allclose(mean, seq / mask[:, 1:].sum(1), atol=1e-6)


def test_checkpoint_roundtrip_bit_exact_and_clear_errors(tmp_path):
    m = model(3)
    save_checkpoint(tmp_path / "m.pt", m.state_dict(), {"model": CFG.to_dict()})
    m2, cfg = load_gpt(tmp_path / "m.pt")
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(CheckpointError, match="not found"):
        load_gpt(tmp_path / "missing.pt")
    (tmp_path / "m.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="m.pt: not a readable checkpoint"):
        load_gpt(tmp_path / "m.pt")
    save_checkpoint(tmp_path / "m.pt", m.state_dict(), {"model": CFG.to_dict()})
    with pytest.raises(CheckpointError, match="does not match the tokenizer"):
        load_gpt(tmp_path / "m.pt", vocab_size=500)
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="m.json: not valid JSON"):
        load_gpt(tmp_path / "m.pt")
    (tmp_path / "m.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError) as e:
        load_gpt(tmp_path / "m.pt")
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # never advice to unpickle garbage


def test_atomic_write_is_all_or_nothing_and_stale_temporaries_are_removed(tmp_path):
    from minidpo.checkpoint import atomic_write, remove_stale_temporaries, write_jsonl
    target = tmp_path / "f.json"
    atomic_write(target, lambda f: f.write(b"old"))
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # what open() would give, not 0600

    def dies_halfway(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_halfway)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    # a process killed mid-write (SIGKILL: no cleanup) leaves a .NAME.*.tmp; the next start removes it
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".f.json.x1.tmp", tmp_path / "sub" / ".m.pt.y2.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and target.read_bytes() == b"old"
    write_jsonl(tmp_path / "log.jsonl", [{"loss": float("nan"), "step": 1}, {"loss": float("inf")}])
    assert [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()] == [
        {"loss": None, "step": 1}, {"loss": None}]


def _umask() -> int:
    import os
    u = os.umask(0)
    os.umask(u)
    return u
