"""GPT-2 compatibility: safetensors in and out, the weight mapping checked by a hand-computed forward,
GPT-2's tokenizer format, and the real-model recipe end to end on a tiny GPT-2-layout checkpoint.
Nothing is downloaded: every checkpoint here is built by the test."""
import json
import math
import struct

import pytest
import torch

from minidpo.interop.gpt2 import export_gpt2, import_gpt2
from minidpo.model import GPT, GPTConfig
from minidpo.interop.safetensors import SafetensorsError, read_safetensors, write_safetensors
from minidpo.tokenizer import Tokenizer, save_ranks, train_bpe

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, gelu="tanh")


def hf_checkpoint(folder, seed=0, **cfg):
    """A GPT-2 folder as Hugging Face writes it: Conv1D (in, out) weights, an explicit lm_head equal
    to wte, causal-mask buffers, config.json."""
    g = torch.Generator().manual_seed(seed)
    c = {**TINY, **cfg}
    C, V, L = c["n_embd"], c["vocab_size"], c["n_layer"]
    r = lambda *shape: torch.randn(*shape, generator=g)
    t = {"transformer.wte.weight": r(V, C), "transformer.wpe.weight": r(c["block_size"], C),
         "transformer.ln_f.weight": 1 + 0.1 * r(C), "transformer.ln_f.bias": 0.1 * r(C)}
    for i in range(L):
        p = f"transformer.h.{i}."
        t.update({p + "ln_1.weight": 1 + 0.1 * r(C), p + "ln_1.bias": 0.1 * r(C), p + "ln_2.weight": 1 + 0.1 * r(C),
                  p + "ln_2.bias": 0.1 * r(C), p + "attn.c_attn.weight": 0.2 * r(C, 3 * C), p + "attn.c_attn.bias": 0.1 * r(3 * C),
                  p + "attn.c_proj.weight": 0.2 * r(C, C), p + "attn.c_proj.bias": 0.1 * r(C),
                  p + "mlp.c_fc.weight": 0.2 * r(C, 4 * C), p + "mlp.c_fc.bias": 0.1 * r(4 * C),
                  p + "mlp.c_proj.weight": 0.2 * r(4 * C, C), p + "mlp.c_proj.bias": 0.1 * r(C),
                  p + "attn.bias": torch.tril(torch.ones(1, 1, c["block_size"], c["block_size"]))})
    t["lm_head.weight"] = t["transformer.wte.weight"].clone()
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", t, {"format": "pt"})
    (folder / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "vocab_size": V, "n_positions": c["block_size"], "n_layer": L, "n_head": c["n_head"],
        "n_embd": C, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}))
    return t


def test_safetensors_round_trip_is_bit_exact_for_every_dtype(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"f32": torch.randn(3, 4, generator=g), "f64": torch.randn(2, dtype=torch.float64, generator=g),
               "bf16": torch.randn(5, generator=g).bfloat16(), "f16": torch.randn(2, 2, generator=g).half(),
               "i64": torch.arange(7), "u8": torch.arange(4, dtype=torch.uint8), "bool": torch.tensor([True, False]),
               "empty": torch.zeros(0, 3)}
    write_safetensors(tmp_path / "t.safetensors", tensors, {"note": "x"})
    back, meta = read_safetensors(tmp_path / "t.safetensors")
    assert meta == {"note": "x"} and set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k
    data = (tmp_path / "t.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0 and json.loads(data[8:8 + n])["f32"]["dtype"] == "F32"  # the format, by hand


def test_malformed_safetensors_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    wrong_size = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()  # 4 floats in 8 bytes
    for content, words in ((b"abc", "too short"), (struct.pack("<Q", 999) + b"{}", "runs past the end"),
                           (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
                           (struct.pack("<Q", len(wrong_size)) + wrong_size + b"\0" * 8, "do not hold")):
        bad.write_bytes(content)
        with pytest.raises(SafetensorsError, match=rf"bad.safetensors: .*{words}"):
            read_safetensors(bad)


def test_import_export_import_is_bit_identical(tmp_path):
    original = hf_checkpoint(tmp_path / "hf")
    model = import_gpt2(tmp_path / "hf")
    assert model.config.gelu == "tanh" and model.lm_head.weight is model.wte.weight
    export_gpt2(model, tmp_path / "out")
    again, _ = read_safetensors(tmp_path / "out" / "model.safetensors")
    for name, t in again.items():  # every weight back in GPT-2's layout, bit for bit
        assert torch.equal(t, original[name]), name
    assert set(original) - set(again) == {"lm_head.weight", "transformer.h.0.attn.bias", "transformer.h.1.attn.bias"}
    model2 = import_gpt2(tmp_path / "out")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    export_gpt2(model2, tmp_path / "out2")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (tmp_path / "out2" / "model.safetensors").read_bytes()


def test_imported_weights_give_the_hand_computed_gpt2_forward(tmp_path):
    """GPT-2's forward written out from its own tensors (x @ W + b for Conv1D, tanh GELU, pre-LN,
    tied head): every weight is mapped right if the logits agree."""
    t = hf_checkpoint(tmp_path / "hf", seed=1)
    model = import_gpt2(tmp_path / "hf")
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    C, H = TINY["n_embd"], TINY["n_head"]

    def ln(x, w, b):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b
    gelu = lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    x = t["transformer.wte.weight"][ids[0]] + t["transformer.wpe.weight"][:8]
    for i in range(TINY["n_layer"]):
        p = lambda n: t[f"transformer.h.{i}.{n}"]
        h = ln(x, p("ln_1.weight"), p("ln_1.bias")) @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = h.split(C, -1)
        heads = []
        for j in range(H):
            s = slice(j * C // H, (j + 1) * C // H)
            att = (q[:, s] @ k[:, s].T) / math.sqrt(C // H)
            att = att.masked_fill(torch.triu(torch.ones(8, 8, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            heads.append(att @ v[:, s])
        x = x + torch.cat(heads, -1) @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        m = gelu(ln(x, p("ln_2.weight"), p("ln_2.bias")) @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
        x = x + m @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    logits = ln(x, t["transformer.ln_f.weight"], t["transformer.ln_f.bias"]) @ t["transformer.wte.weight"].T
    with torch.no_grad():
        assert torch.allclose(model(ids)[0], logits, atol=1e-5)
        exact = GPT(GPTConfig(**{**TINY, "gelu": "exact"}))
        exact.load_state_dict(model.state_dict())
        assert not torch.allclose(exact(ids)[0], logits, atol=1e-5)  # the GELU switch matters


def test_the_toy_default_is_the_exact_gelu():
    assert GPTConfig().gelu == "exact" and GPT(GPTConfig(n_layer=1)).blocks[0].mlp.approximate == "none"


def test_a_users_gpt2_ranks_file_loads_like_ours(tmp_path):
    ranks = train_bpe("Human: hello there, it's 12 o'clock. Assistant: hi!\n" * 40, 40)
    save_ranks(ranks, tmp_path / "gpt2.tiktoken")
    tok = Tokenizer.load(tmp_path / "gpt2.tiktoken", kind="gpt2")
    s = "Human: it's 2 o'clock 🙂"
    assert tok.decode(tok.encode(s)) == s and tok.end_id == len(ranks) == tok.vocab_size - 1
    assert tok.encode_prompt("Human: hi") == tok.encode("Human: hi")  # no format markers in GPT-2's mode
    assert tok.encode_response("hi")[-1] == tok.end_id and tok.encode("<|endoftext|>") != [tok.end_id]
    assert tok.fingerprint != Tokenizer.load().fingerprint


def test_real_model_recipe_end_to_end_on_a_tiny_gpt2(tmp_path, capsys):
    """import-gpt2 then dpo on the user's pairs: the folder remembers the GPT-2 tokenizer, DPO trains
    with gradient accumulation and checkpointing, and the exported model loads back."""
    from minidpo.harness import cli
    ranks = train_bpe("Human: good or bad? Assistant: good. bad. fine.\n" * 50, 20)
    save_ranks(ranks, tmp_path / "gpt2.tiktoken")
    hf_checkpoint(tmp_path / "hf", vocab_size=len(ranks) + 1, block_size=32)
    pairs = [{"prompt": "Human: good or bad? Assistant:", "chosen": " good.", "rejected": " bad."}] * 8
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    run = str(tmp_path / "run")
    assert cli.main(["import-gpt2", "--weights", str(tmp_path / "hf"), "--tokenizer", str(tmp_path / "gpt2.tiktoken"),
                     "--out", run, "--fast", "--quiet"]) == 0
    assert cli.main(["dpo", "--out", run, "--fast", "--quiet", "--data", str(tmp_path / "p.jsonl"), "--val-data",
                     str(tmp_path / "p.jsonl"), "--grad-accum", "2", "--grad-checkpointing", "--batch-size", "4",
                     "--epochs", "3", "--lr", "1e-3"]) == 0
    out = capsys.readouterr()
    m = json.loads((tmp_path / "run" / "dpo_metrics.json").read_text())
    steps = [r for r in m["history"] if "loss" in r]
    assert m["config"]["grad_accum"] == 2 and m["config"]["grad_checkpointing"] and steps[-1]["rewards/margins"] > 0
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["tokenizer"]["kind"] == "gpt2", out.err
