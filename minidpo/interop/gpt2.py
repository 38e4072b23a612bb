"""GPT-2 weights in and out of the hand-written GPT: Hugging Face's layout, read and written.

A GPT-2 checkpoint (`model.safetensors` + `config.json`, as on the Hugging Face hub) names its
tensors `transformer.wte.weight`, `transformer.h.N.attn.c_attn.weight` ... and stores every linear
layer as a `Conv1D`: weight of shape (in, out), y = x @ W + b, where ours is `nn.Linear`, weight
(out, in), y = x @ Wᵀ + b. So each of the four matrices per block is transposed on the way in and on
the way out; q, k and v stay packed in `c_attn` in both (the same column order); the output head is
tied to `wte` in both (HF may store `lm_head.weight`: it must then equal `wte`). GPT-2 uses the tanh
approximation of GELU (`gelu_new`), so an imported model gets `gelu="tanh"`. The causal-mask buffers
some checkpoints carry (`attn.bias`, `attn.masked_bias`) are not weights and are skipped.

    minidpo name                 GPT-2 name                               transform
    wte.weight                   transformer.wte.weight                   -
    wpe.weight                   transformer.wpe.weight                   -
    blocks.N.ln_1.{weight,bias}  transformer.h.N.ln_1.{weight,bias}       -
    blocks.N.attn.c_attn.weight  transformer.h.N.attn.c_attn.weight       transpose
    blocks.N.attn.c_proj.weight  transformer.h.N.attn.c_proj.weight       transpose
    blocks.N.ln_2, mlp.c_fc, mlp.c_proj  (same pattern)                   Linear weights transposed
    ln_f.{weight,bias}           transformer.ln_f.{weight,bias}           -
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..model import GPT, GPTConfig
from .safetensors import SafetensorsError, read_safetensors, write_safetensors

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SKIPPED = (".attn.bias", ".attn.masked_bias")


def hf_name(ours: str) -> str:
    return "transformer." + ours.replace("blocks.", "h.")


def config_from_hf(hf: dict) -> GPTConfig:
    """Our GPTConfig from a GPT-2 config.json (n_layer, n_head, n_embd, n_positions, vocab_size)."""
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"config.json: activation_function {act!r} is not a GELU this GPT has")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", hf.get("n_ctx")),
                     n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                     gelu="exact" if act == "gelu" else "tanh").validate()


def config_to_hf(cfg: GPTConfig) -> dict:
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "activation_function": "gelu_new" if cfg.gelu == "tanh" else "gelu",
            "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}


def state_from_hf(tensors: dict[str, torch.Tensor], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Our state_dict from GPT-2's tensors (transposing the Conv1D weights, tying the head)."""
    state = {}
    for name, t in tensors.items():
        if name.endswith(SKIPPED) or name == "lm_head.weight":
            continue
        if not name.startswith("transformer."):
            raise ValueError(f"{where}: unexpected tensor {name!r} (not GPT-2's layout)")
        ours = name[len("transformer."):].replace("h.", "blocks.", 1) if name.startswith("transformer.h.") \
            else name[len("transformer."):]
        state[ours] = t.t().contiguous() if ours.endswith(TRANSPOSED) else t
    if "lm_head.weight" in tensors and not torch.equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"]):
        raise ValueError(f"{where}: lm_head.weight differs from transformer.wte.weight (this GPT ties them)")
    state["lm_head.weight"] = state["wte.weight"]
    return state


def state_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """GPT-2's tensors from our model (the tied head written once, as `transformer.wte.weight`)."""
    return {hf_name(name): (t.t().contiguous() if name.endswith(TRANSPOSED) else t)
            for name, t in model.state_dict().items() if name != "lm_head.weight"}


def import_gpt2(folder, device="cpu", dtype=torch.float32) -> GPT:
    """A GPT from a Hugging Face GPT-2 folder (model.safetensors + config.json)."""
    folder = Path(folder)
    weights, config = folder / "model.safetensors", folder / "config.json"
    for f in (weights, config):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found (a GPT-2 folder holds model.safetensors and config.json)")
    try:
        cfg = config_from_hf(json.loads(config.read_text(encoding="utf-8")))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{config}: not a GPT-2 config ({e})") from None
    tensors, _ = read_safetensors(weights)
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state_from_hf(tensors, str(weights)).items()},
                                                strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: missing {missing[:3]}, unexpected {unexpected[:3]} for a {cfg.n_layer}-layer GPT")
    return model.to(device).eval()


def export_gpt2(model: GPT, folder) -> None:
    """Write `model` as a Hugging Face GPT-2 folder (model.safetensors + config.json)."""
    from ..checkpoint import write_json
    folder = Path(folder)
    write_safetensors(folder / "model.safetensors", state_to_hf(model), {"format": "pt"})
    write_json(folder / "config.json", config_to_hf(model.config))


def import_into_run(run, folder) -> None:
    """`python -m minidpo import-gpt2`: the GPT-2 folder's weights as the run's sft.pt (the model DPO
    starts from and its reference), recorded like any stage: its key holds the weights' hash and
    the tokenizer's, so `dpo --data YOURS.jsonl --val-data ...` then runs on it."""
    from ..checkpoint import save_checkpoint, write_json
    from ..checkpoint import file_hash
    folder = Path(folder)

    def go():
        model = import_gpt2(folder)
        if model.config.vocab_size != run.tok.vocab_size:
            raise ValueError(f"{folder}: vocab_size {model.config.vocab_size} does not match the tokenizer's "
                             f"{run.tok.vocab_size} (GPT-2's ranks file has 50256 merges and one special token)")
        save_checkpoint(run.path("sft.pt"), model.state_dict(), {"stage": "import-gpt2", "model": vars(model.config),
                                                                 "source": str(folder)})
        write_json(run.path("sft_metrics.json"), {"imported_from": str(folder), "params": model.num_params()})
        print(f"imported {folder}: {model.config.n_layer} layers, {model.num_params() / 1e6:.1f} M parameters")
    weights = folder / "model.safetensors"
    run.cached("sft", {"import_gpt2": True}, {"weights": file_hash(weights) if weights.is_file() else "missing"},
               go, code="interop.gpt2")
