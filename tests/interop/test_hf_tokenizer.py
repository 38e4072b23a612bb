"""The tokenizer from a GPT-2 folder: vocab.json + merges.txt (GPT-2's byte-to-unicode mapping) read
into tiktoken's ranks. A small vocabulary is written in that format from our own merges (with
GPT-2's id order for the bytes, which is not ours); it must give the token ids of the same merges
in tiktoken's file format, and of Hugging Face's algorithm on the files themselves (written out
in conftest.py: the adjacent pair earliest in merges.txt is merged first)."""
import json

import pytest

from minidpo.interop.hf_tokenizer import (BYTE_TO_CHAR, TokenizerFilesError, merges_of, read_hf_tokenizer, to_text)
from minidpo.tokenizer import GPT2_END, GPT2_PAT_STR, Tokenizer, save_ranks, train_bpe
from minidpo.world import make_corpus

def gpt2_style_files(folder, ranks):
    """vocab.json + merges.txt as GPT-2's are laid out: the bytes first in the order of their
    printable characters (id 0 is "!", not the byte 0), then one id per merge, then <|endoftext|>."""
    byte_ids = {bytes([b]): i for i, b in enumerate(sorted(range(256), key=lambda b: ord(BYTE_TO_CHAR[b])))}
    merges = merges_of(ranks)
    ids = {**byte_ids, **{a + b: 256 + i for i, (a, b) in enumerate(merges)}}
    vocab = {to_text(t): i for t, i in ids.items()} | {GPT2_END: len(ids)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = [f"{to_text(a)} {to_text(b)}" for a, b in merges]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return ids, vocab, lines


@pytest.fixture(scope="module")
def ranks(texts):
    text = "\n".join(p + " " + r for p, r in make_corpus(300, seed=0)) + "\n" + " ".join(texts) * 3
    return train_bpe(text, 120)


def test_gpt2s_byte_alphabet():
    assert len(set(BYTE_TO_CHAR.values())) == 256 and BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[10] == "Ċ"
    assert BYTE_TO_CHAR[ord("a")] == "a" and all(c.isprintable() for c in BYTE_TO_CHAR.values())


def test_vocab_and_merges_give_the_ids_of_the_same_merges_in_tiktokens_format(tmp_path, ranks, texts, hf_encode):
    ids, vocab, merges = gpt2_style_files(tmp_path / "hf", ranks)
    read, kind = read_hf_tokenizer(tmp_path / "hf")
    assert kind == "gpt2" and read == ids and read != ranks  # GPT-2's ids, not our trainer's
    save_ranks(ids, tmp_path / "same.tiktoken")
    from_files, from_ranks = Tokenizer(read, kind="gpt2"), Tokenizer.load(tmp_path / "same.tiktoken", kind="gpt2")
    assert from_files.fingerprint == from_ranks.fingerprint and from_files.end_id == vocab[GPT2_END]
    for text in texts:
        got = from_files.encode(text)
        assert got == from_ranks.encode(text) == hf_encode(text, vocab, merges, GPT2_PAT_STR), text
        assert from_files.decode(got) == text
    assert len(from_files.encode(texts[1])) < len(texts[1].encode()) / 2  # the merges are used


def test_import_gpt2_reads_the_tokenizer_from_the_weights_folder(tmp_path, ranks, texts, capsys):
    from minidpo.harness import cli
    from minidpo.harness.runfolder import Run
    from minidpo.interop.gpt2 import export_gpt2
    from minidpo.model import GPT, GPTConfig
    export_gpt2(GPT(GPTConfig(vocab_size=len(ranks) + 1, block_size=16, n_layer=1, n_head=2, n_embd=8, gelu="tanh")),
                tmp_path / "hf")
    gpt2_style_files(tmp_path / "hf", ranks)
    out = tmp_path / "run"
    assert cli.main(["import-gpt2", "--weights", str(tmp_path / "hf"), "--out", str(out), "--fast", "--quiet"]) == 0
    recorded = json.loads((out / "run_config.json").read_text())["tokenizer"]
    assert recorded == {"path": str((out / "tokenizer.tiktoken").resolve()), "kind": "gpt2"}
    tok = Run.create(out).tok  # a later command in that folder finds the same tokenizer
    assert tok.kind == "gpt2" and tok.encode(texts[0]) == Tokenizer(read_hf_tokenizer(tmp_path / "hf")[0], kind="gpt2").encode(texts[0])
    assert "imported" in capsys.readouterr().out


@pytest.mark.parametrize("spoil, message", [
    (lambda v, m: m.insert(3, m.pop(0)), r"merges.txt:\d+: .* has id \d+, below the merge before it"),
    (lambda v, m: v.pop("Ġ"), r"vocab.json: the single byte 'Ġ' is not in the vocabulary"),
    (lambda v, m: m.append("Ġzz qq"), r"merges.txt:\d+: 'Ġzz' is not in"),
    (lambda v, m: v.update({"<|pad|>": len(v)}), r"neither GPT-2's <\|endoftext\|> nor minidpo's"),
    (lambda v, m: m.insert(0, "abc"), r"merges.txt:2: not a merge line"),
])
def test_a_vocabulary_that_does_not_match_its_merges_is_refused(tmp_path, ranks, spoil, message):
    _, vocab, merges = gpt2_style_files(tmp_path / "hf", ranks)
    spoil(vocab, merges)
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "hf" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    with pytest.raises(TokenizerFilesError, match=message):
        read_hf_tokenizer(tmp_path / "hf")
