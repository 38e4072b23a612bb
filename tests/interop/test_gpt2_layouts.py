"""GPT-2 folders as they really come: each layout is written with our own safetensors writer from a
small random GPT-2-shaped model, imported, and its logits compared with the model that wrote it;
anything else is refused with one line naming the tensor, the config key or the file."""
import json
import re

import pytest
import torch

from minidpo.interop.gpt2 import GPT2FolderError, INDEX, config_to_hf, import_gpt2, state_to_hf
from minidpo.interop.safetensors import read_safetensors, write_safetensors
from minidpo.model import GPT, GPTConfig

TINY = GPTConfig(vocab_size=29, block_size=12, n_layer=2, n_head=2, n_embd=8, gelu="tanh")
IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]])


def writer(seed=0) -> GPT:
    """A random GPT-2-shaped model, every weight and bias away from its initial value."""
    torch.manual_seed(seed)
    model = GPT(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def write_folder(folder, model, prefix=True, buffers=False, head=False, dtype=torch.float32, shards=1):
    """The model as a GPT-2 folder in one of the layouts found on the hub."""
    tensors = {(k if prefix else k.removeprefix("transformer.")): v.to(dtype) for k, v in state_to_hf(model).items()}
    p = "transformer." if prefix else ""
    if buffers:  # the causal mask and its fill value, as older checkpoints carry them
        for i in range(TINY.n_layer):
            tensors[f"{p}h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, TINY.block_size, TINY.block_size, dtype=torch.bool))
            tensors[f"{p}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if head:
        tensors["lm_head.weight"] = tensors[f"{p}wte.weight"].clone()
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, {"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = names[s::shards]
            write_safetensors(folder / file, {n: tensors[n] for n in part}, {"format": "pt"})
            weight_map.update({n: file for n in part})
        (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config)))
    return tensors


def as_stored(model, dtype) -> GPT:
    """The writer with its weights rounded to `dtype` and back: what the folder holds."""
    rounded = GPT(model.config)
    rounded.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    return rounded.eval()


LAYOUTS = {  # name: (prefix, buffers, stored head, dtype, shards)
    "GPT2LMHeadModel, fp32": (True, False, False, torch.float32, 1),
    "base model (no prefix), mask buffers, fp32": (False, True, False, torch.float32, 1),
    "prefix, mask buffers, stored lm_head, fp16": (True, True, True, torch.float16, 1),
    "no prefix, stored lm_head, bf16": (False, False, True, torch.bfloat16, 1),
    "prefix, 3 shards + index, fp16": (True, False, False, torch.float16, 3),
    "no prefix, buffers, 2 shards + index, bf16": (False, True, True, torch.bfloat16, 2),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_imports_to_the_logits_of_the_model_that_wrote_it(tmp_path, layout):
    prefix, buffers, head, dtype, shards = LAYOUTS[layout]
    model = writer()
    write_folder(tmp_path / "hf", model, prefix, buffers, head, dtype, shards)
    imported = import_gpt2(tmp_path / "hf")
    assert imported.lm_head.weight is imported.wte.weight and imported.wte.weight.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(imported(IDS), as_stored(model, dtype)(IDS))
        if dtype != torch.float32:  # the rounding is real: the comparison above could tell
            assert not torch.equal(imported(IDS), model(IDS))


def refuse(tmp_path, change):
    """Write a good folder, let `change(tensors, config)` spoil it, rewrite, import."""
    tensors = write_folder(tmp_path / "hf", writer())
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    change(tensors, config)
    write_safetensors(tmp_path / "hf" / "model.safetensors", tensors)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GPT2FolderError) as e:
        import_gpt2(tmp_path / "hf")
    return str(e.value)


CASES = {
    "a tensor GPT-2 has not": (lambda t, c: t.update({"transformer.h.0.attn.q_proj.weight": torch.zeros(8, 8)}),
                               "unexpected tensor 'transformer.h.0.attn.q_proj.weight'"),
    "a missing tensor": (lambda t, c: t.pop("transformer.h.1.mlp.c_fc.bias"), "missing tensor 'transformer.h.1.mlp.c_fc.bias'"),
    "a wrong shape": (lambda t, c: t.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(24, 8)}),
                      r"'transformer.h.0.attn.c_attn.weight' has shape \(24, 8\), where config.json asks for \(8, 24\)"),
    "integer weights": (lambda t, c: t.update({"transformer.ln_f.bias": torch.zeros(8, dtype=torch.int64)}),
                        "'transformer.ln_f.bias' is torch.int64, not floating point"),
    "an untied head": (lambda t, c: t.update({"lm_head.weight": torch.zeros(29, 8)}), "'lm_head.weight' differs"),
    "both layouts at once": (lambda t, c: t.update({"wte.weight": t["transformer.wte.weight"]}),
                             "'wte.weight' is there both with and without"),
    "another architecture": (lambda t, c: c.update(model_type="llama", architectures=["LlamaForCausalLM"]),
                             "model_type 'llama' is not GPT-2"),
    "another MLP width": (lambda t, c: c.update(n_inner=16), "n_inner = 16"),
    "another GELU": (lambda t, c: c.update(activation_function="relu"), "activation_function 'relu'"),
}


@pytest.mark.parametrize("case", CASES)
def test_anything_else_is_refused_naming_the_tensor_or_key(tmp_path, case):
    change, message = CASES[case]
    assert re.search(message, refuse(tmp_path, change)), case


def test_folders_without_weights_or_with_a_broken_index_are_refused(tmp_path):
    folder = tmp_path / "hf"
    write_folder(folder, writer(), shards=2)
    index = json.loads((folder / INDEX).read_text())
    (folder / next(iter(index["weight_map"].values()))).unlink()
    with pytest.raises(GPT2FolderError, match=r"its shard 'model-00001-of-00002.safetensors' is not a file"):
        import_gpt2(folder)
    for f in folder.glob("model*"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(GPT2FolderError, match=r"no model.safetensors or .*it holds pytorch_model.bin"):
        import_gpt2(folder)
    with pytest.raises(GPT2FolderError, match="no such folder"):
        import_gpt2(tmp_path / "nothing")


def test_reading_holds_the_tensors_once_not_the_file_as_well(tmp_path):
    """Read tensor by tensor into their own memory: the peak resident memory grows by about the size
    of the tensors (reading the whole file first and then copying out of it would double that)."""
    from minidpo.training import PeakMemory
    size_mb = 64
    write_safetensors(tmp_path / "big.safetensors", {f"w{i}": torch.ones(size_mb * 2**20 // 16) for i in range(4)})

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    before = rss_mb()
    with PeakMemory("cpu") as peak:
        tensors, _ = read_safetensors(tmp_path / "big.safetensors")
    if peak.mb is None:
        pytest.skip("no /proc peak-memory counter here")
    assert sum(t.numel() * 4 for t in tensors.values()) == size_mb * 2**20 and float(tensors["w3"][-1]) == 1.0
    assert peak.mb - before < 1.4 * size_mb, (peak.mb, before)
