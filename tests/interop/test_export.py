"""`python -m minidpo export`: a policy of a run folder as a Hugging Face GPT-2 folder. transformers
is not installed here, so the test checks what it reads: the files, their names, shapes and dtypes,
the config keys GPT2Config uses, a tokenizer.json whose own algorithm (pre-tokenizer regex, added
tokens, merges) gives our token ids, and that export -> import-gpt2 gives back the same model."""
import json
import struct

import pytest
import torch

from minidpo.checkpoint import load_checkpoint, save_checkpoint
from minidpo.harness import cli
from minidpo.interop.hf_tokenizer import BYTE_TO_CHAR
from minidpo.model import GPT, GPTConfig
from minidpo.tokenizer import END, PAT_STR, PROMPT, RESPONSE

# what transformers' GPT2Config reads for GPT2LMHeadModel (its __init__ arguments)
GPT2_CONFIG_KEYS = {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
                    "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
                    "scale_attn_weights", "use_cache", "bos_token_id", "eos_token_id",
                    "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "model_type", "architectures",
                    "tie_word_embeddings"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder holding a dpo.pt (a small random GPT over our tokenizer), as the DPO stage writes it."""
    from minidpo.tokenizer import Tokenizer
    tok = Tokenizer.load()
    out = tmp_path_factory.mktemp("export") / "run"
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_checkpoint(out / "dpo.pt", model.state_dict(), {"stage": "dpo", "model": model.config.to_dict()})
    return out, model.eval(), tok


def error_line(capsys, argv):
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (code, err)
    return err


def test_export_writes_a_gpt2_folder_in_the_format_transformers_reads(run_folder, tmp_path, capsys):
    out, model, tok = run_folder
    assert cli.main(["export", "--out", str(out), "--policy", "dpo", "--to", str(tmp_path / "hf")]) == 0
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert files == {"model.safetensors", "config.json", "vocab.json", "merges.txt", "tokenizer.json",
                     "tokenizer_config.json"}
    assert f"wrote {tmp_path / 'hf'}" in capsys.readouterr().out

    data = (tmp_path / "hf" / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert header.pop("__metadata__") == {"format": "pt"}  # transformers refuses a file without it
    C, L, V = 16, 2, tok.vocab_size
    expected = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [32, C],
                "transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C]}
    for i in range(L):  # Conv1D: (in, out)
        p = f"transformer.h.{i}."
        expected.update({p + "ln_1.weight": [C], p + "ln_1.bias": [C], p + "ln_2.weight": [C], p + "ln_2.bias": [C],
                         p + "attn.c_attn.weight": [C, 3 * C], p + "attn.c_attn.bias": [3 * C],
                         p + "attn.c_proj.weight": [C, C], p + "attn.c_proj.bias": [C],
                         p + "mlp.c_fc.weight": [C, 4 * C], p + "mlp.c_fc.bias": [4 * C],
                         p + "mlp.c_proj.weight": [4 * C, C], p + "mlp.c_proj.bias": [C]})
    assert {k: v["shape"] for k, v in header.items()} == expected  # lm_head left out: tied, as HF saves it
    assert {v["dtype"] for v in header.values()} == {"F32"}

    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert GPT2_CONFIG_KEYS <= set(config) and config["model_type"] == "gpt2"
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["activation_function"] == "gelu"  # exact GELU
    assert (config["vocab_size"], config["n_positions"], config["n_layer"], config["n_embd"]) == (V, 32, L, C)
    assert config["eos_token_id"] == tok.end_id and config["layer_norm_epsilon"] == 1e-5 and config["n_inner"] is None


def test_the_exported_tokenizer_json_gives_our_token_ids(run_folder, tmp_path, texts, hf_encode):
    out, _, tok = run_folder
    assert cli.main(["export", "--out", str(out), "--policy", "dpo", "--to", str(tmp_path / "hf")]) == 0
    spec = json.loads((tmp_path / "hf" / "tokenizer.json").read_text(encoding="utf-8"))
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"]["Regex"] == PAT_STR and split["behavior"] == "Isolated"  # OUR regex, not GPT-2's
    assert byte_level == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    assert added == {PROMPT: tok.prompt_id, RESPONSE: tok.response_id, END: tok.end_id}
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    assert vocab == json.loads((tmp_path / "hf" / "vocab.json").read_text(encoding="utf-8"))
    assert (tmp_path / "hf" / "merges.txt").read_text(encoding="utf-8").splitlines() == ["#version: 0.2", *merges]
    assert vocab["ĠThe"] == tok.encode(" The")[0] and BYTE_TO_CHAR[32] == "Ġ"  # " The" as GPT-2 spells it
    for text in texts:
        assert hf_encode(text, vocab, merges, PAT_STR, tuple(added)) == tok.encode(text), text
    prompt, response = "Review: The Silent Harbor", "I loved this film."
    marked = f"{PROMPT}{prompt}{RESPONSE}{response}{END}"  # the format, as text with the added tokens
    assert hf_encode(marked, vocab, merges, PAT_STR, tuple(added)) == tok.encode_prompt(prompt) + tok.encode_response(response)
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["eos_token"] == END


def test_export_then_import_gives_back_the_same_model_exactly(run_folder, tmp_path):
    out, model, tok = run_folder
    assert cli.main(["export", "--out", str(out), "--policy", "dpo", "--to", str(tmp_path / "hf")]) == 0
    again = tmp_path / "again"
    assert cli.main(["import-gpt2", "--weights", str(tmp_path / "hf"), "--out", str(again), "--fast", "--quiet"]) == 0
    state, config = load_checkpoint(again / "sft.pt")
    original, _ = load_checkpoint(out / "dpo.pt")
    assert set(state) == set(original) and all(torch.equal(state[k], original[k]) for k in state)
    assert config["model"]["gelu"] == "exact" and "tokenizer" not in json.loads((again / "run_config.json").read_text())
    ids = torch.tensor([tok.encode_prompt("Review: The Silent Harbor") + tok.encode("I loved it.")])
    back = GPT(GPTConfig(**config["model"])).eval()
    back.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(back(ids), model(ids))


def test_what_a_user_can_get_wrong_is_one_error_line(run_folder, tmp_path, capsys):
    out, _, _ = run_folder
    (tmp_path / "taken").mkdir()
    assert "--to" in error_line(capsys, ["export", "--out", out, "--policy", "dpo", "--to", tmp_path / "taken"])
    assert "rlhf.pt" in error_line(capsys, ["export", "--out", out, "--policy", "rlhf", "--to", tmp_path / "x"])
    assert "no such run folder" in error_line(capsys, ["export", "--out", tmp_path / "no", "--policy", "dpo",
                                                       "--to", tmp_path / "x"])
    assert not (tmp_path / "x").exists()
    cli.main(["export", "--out", str(out), "--policy", "dpo", "--to", str(tmp_path / "hf")])
    hf = tmp_path / "hf"
    imp = lambda: error_line(capsys, ["import-gpt2", "--weights", hf, "--out", tmp_path / "r", "--fast", "--quiet"])

    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 1}))
    assert "does not match the tokenizer's" in imp()  # (the weights then do not fit either: the config says first)
    (hf / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    assert "model_type 'gpt_neox' is not GPT-2" in imp()
    (hf / "config.json").write_text(json.dumps(config))
    vocab = json.loads((hf / "vocab.json").read_text(encoding="utf-8"))
    (hf / "vocab.json").write_text(json.dumps({**vocab, "Ġzzz": len(vocab)}), encoding="utf-8")
    assert "vocab.json" in imp()
    (hf / "model.safetensors").unlink()
    assert "no model.safetensors" in imp()
