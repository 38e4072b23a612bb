import random

import pytest

from minidpo.tokenizer import Tokenizer, load_ranks, save_ranks, train_bpe, SPECIAL_TOKENS


def random_unicode(rng, n):
    chars = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            chars.append(chr(rng.randint(32, 126)))
        elif kind < 0.5:
            chars.append(chr(rng.randint(0, 31)))           # control characters
        elif kind < 0.7:
            chars.append(chr(rng.randint(0x4E00, 0x9FFF)))   # CJK
        elif kind < 0.85:
            chars.append(chr(rng.randint(0x1F300, 0x1FAFF)))  # emoji
        else:
            c = rng.randint(0x80, 0x10FFFF)
            if not 0xD800 <= c <= 0xDFFF:                    # surrogates are not encodable text
                chars.append(chr(c))
    return "".join(chars)


def test_roundtrip_any_unicode(tok):
    rng = random.Random(0)
    cases = ["", " ", "\n\n", "<|end|>", "The acting was brilliant.", "héllo wörld 🙂 世界 \x00\x07\t"]
    cases += [random_unicode(rng, rng.randint(1, 60)) for _ in range(300)]
    for s in cases:
        assert tok.decode(tok.encode(s)) == s


def test_special_tokens_are_not_produced_by_text(tok):
    ids = tok.encode("<|prompt|><|response|><|end|>")
    assert tok.end_id not in ids and tok.prompt_id not in ids
    assert tok.vocab_size == tok.n_ordinary + len(SPECIAL_TOKENS)


def test_training_is_deterministic_and_merges_frequent_pairs():
    text = "the cat sat on the mat. " * 50 + "a dog ran. " * 20
    a, b = train_bpe(text, 40), train_bpe(text, 40)
    assert a == b
    assert len(a) > 256 and len(a) <= 256 + 40
    assert b" the" in a and b" dog" in a  # frequent words become single tokens ...
    assert a[b" the"] < a[b" dog"]         # ... the more frequent one earlier (lower rank)


def test_small_vocab_and_shipped_merges_roundtrip_file(tmp_path, tok):
    assert 300 < tok.vocab_size <= 4096
    ranks = load_ranks("data/tokenizer.tiktoken")
    save_ranks(ranks, tmp_path / "r.tiktoken")
    assert load_ranks(tmp_path / "r.tiktoken") == ranks
    # world words are single tokens: short sequences make CPU training fast
    assert len(tok.encode("The acting was brilliant.")) <= 6


def test_bad_ranks_file_names_line(tmp_path):
    p = tmp_path / "bad.tiktoken"
    p.write_text("QQ== 0\nnot-base64!! 1\n")
    with pytest.raises(ValueError, match=r"bad.tiktoken:2"):
        load_ranks(p)


def test_throwaway_tokenizer_from_trained_merges():
    ranks = train_bpe("hello world, hello there. " * 30, 30)
    t = Tokenizer(ranks)
    s = "hello world 🙂"
    assert t.decode(t.encode(s)) == s
    assert len(t.encode("hello world")) < len("hello world")
