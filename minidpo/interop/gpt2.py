"""GPT-2 weights in and out of the hand-written GPT: Hugging Face's folders, read and written.

A GPT-2 folder holds `config.json`, the weights (`model.safetensors`, or shards listed in
`model.safetensors.index.json`) and the tokenizer (`vocab.json` + `merges.txt`, `tokenizer.json`:
see hf_tokenizer.py). The hub's own GPT-2 checkpoints were saved from the base model, so their
tensors are named `wte.weight`, `h.0.attn.c_attn.weight` ...; a checkpoint saved from
`GPT2LMHeadModel` puts `transformer.` before each name and may store `lm_head.weight` (then equal to
`wte`: GPT-2 ties them, as ours does). Some carry the causal-mask buffers `attn.bias` and
`attn.masked_bias`: not weights, skipped. Float16, bfloat16 and float32 tensors are read as float32.

GPT-2 stores each linear layer as a `Conv1D`: weight (in, out), y = x @ W + b, where ours is an
`nn.Linear`: weight (out, in), y = x @ Wᵀ + b. So the four matrices of a block are transposed on
the way in and on the way out; q, k and v stay packed in `c_attn` in both (the same column order).
GPT-2 uses the tanh approximation of GELU (`gelu_new`), so an imported model gets `gelu="tanh"`.

    minidpo name                 GPT-2 name (`transformer.` optional)    transform
    wte.weight                   wte.weight                              -
    wpe.weight                   wpe.weight                              -
    blocks.N.ln_1.{weight,bias}  h.N.ln_1.{weight,bias}                  -
    blocks.N.attn.c_attn.weight  h.N.attn.c_attn.weight                  transpose
    blocks.N.attn.c_proj.weight  h.N.attn.c_proj.weight                  transpose
    blocks.N.ln_2, mlp.c_fc, mlp.c_proj  (same pattern)                  Linear weights transposed
    ln_f.{weight,bias}           ln_f.{weight,bias}                      -
    (lm_head.weight: tied)       lm_head.weight, if stored: = wte        -

Anything else is refused with one line naming the tensor (or the config key, or the file).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..model import GPT, GPTConfig
from .hf_tokenizer import TokenizerFilesError, json_object, read_hf_tokenizer, tokenizer_files
from .safetensors import read_safetensors, write_safetensors

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SKIPPED = (".attn.bias", ".attn.masked_bias")  # the causal-mask buffers
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX = "model.safetensors.index.json"
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")


class GPT2FolderError(ValueError):
    pass


def hf_name(ours: str) -> str:
    return "transformer." + ours.replace("blocks.", "h.")


def ours_name(name: str) -> str:
    """Our name of a GPT-2 tensor name, with or without the `transformer.` prefix."""
    name = name.removeprefix("transformer.")
    return "blocks." + name[2:] if name.startswith("h.") else name


# --- config.json -------------------------------------------------------------------------------
def config_from_hf(hf: dict, where: str = "config.json") -> GPTConfig:
    """Our GPTConfig from a GPT-2 config.json; anything this GPT cannot compute is refused."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise GPT2FolderError(f"{where}: model_type {hf['model_type']!r} is not GPT-2 (minidpo's GPT is GPT-2's "
                              "architecture, and only that)")
    other = [a for a in hf.get("architectures") or [] if a not in ARCHITECTURES]
    if other:
        raise GPT2FolderError(f"{where}: architecture {other[0]!r} is not GPT-2 ({' or '.join(ARCHITECTURES)})")
    missing = [k for k in ("vocab_size", "n_layer", "n_head", "n_embd") if k not in hf]
    if missing or not ("n_positions" in hf or "n_ctx" in hf):
        raise GPT2FolderError(f"{where}: missing key {(missing or ['n_positions'])[0]!r} (not a GPT-2 config)")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise GPT2FolderError(f"{where}: activation_function {act!r} is not a GELU this GPT has")
    differs = {"n_inner": (hf.get("n_inner"), (None, 4 * hf["n_embd"])),
               "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), (1e-5,)),
               "scale_attn_weights": (hf.get("scale_attn_weights", True), (True,)),
               "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), (False,)),
               "add_cross_attention": (hf.get("add_cross_attention", False), (False,))}
    for key, (value, ok) in differs.items():
        if value not in ok:
            raise GPT2FolderError(f"{where}: {key} = {value!r}; this GPT computes only {ok[-1]!r}")
    try:
        return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", hf.get("n_ctx")),
                         n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                         gelu="exact" if act == "gelu" else "tanh").validate()
    except ValueError as e:
        raise GPT2FolderError(f"{where}: {e}") from None


def config_to_hf(cfg: GPTConfig, end_id: int | None = None) -> dict:
    """config.json as transformers' GPT2Config reads it (every key it uses for GPT2LMHeadModel)."""
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "n_inner": None, "activation_function": "gelu_new" if cfg.gelu == "tanh" else "gelu",
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, "add_cross_attention": False,
            "use_cache": True, "tie_word_embeddings": True, "torch_dtype": "float32",
            **({"bos_token_id": end_id, "eos_token_id": end_id} if end_id is not None else {})}


# --- the weights -------------------------------------------------------------------------------
def weight_files(folder: Path) -> list[Path]:
    """The safetensors file(s) holding a folder's weights: model.safetensors, or the shards its
    index lists. A folder without either is refused, naming what it does hold."""
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    if (folder / INDEX).is_file():
        try:
            weight_map = json.loads((folder / INDEX).read_text(encoding="utf-8-sig"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
            raise GPT2FolderError(f"{folder / INDEX}: not a safetensors index with a weight_map ({e})") from None
        for s in shards:
            if not isinstance(s, str) or Path(s).name != s or not (folder / s).is_file():
                raise GPT2FolderError(f"{folder / INDEX}: its shard {s!r} is not a file in {folder}")
        return [folder / s for s in shards]
    if not folder.is_dir():
        raise GPT2FolderError(f"--weights {folder}: no such folder")
    pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".h5", ".msgpack")]
    raise GPT2FolderError(f"{folder}: no model.safetensors or {INDEX}" +
                          (f" (it holds {pickles[0]}: minidpo reads safetensors only, never pickles; save the model "
                           "with safe_serialization=True)" if pickles else " (a GPT-2 folder keeps its weights there)"))


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weights, as stored (shards merged; a name twice is refused)."""
    tensors = {}
    for f in weight_files(folder):
        part, _ = read_safetensors(f)
        for name in part:
            if name in tensors:
                raise GPT2FolderError(f"{f}: tensor {name!r} is in another shard too")
        tensors.update(part)
    return tensors


def expected_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Our name -> the shape GPT-2 stores it in (Conv1D weights transposed)."""
    with torch.device("meta"):
        state = GPT(cfg).state_dict()
    return {n: tuple(t.shape[::-1]) if n.endswith(TRANSPOSED) else tuple(t.shape)
            for n, t in state.items() if n != "lm_head.weight"}


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: GPTConfig, where: str = "checkpoint",
                  dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Our state_dict from GPT-2's tensors, either layout: prefixes dropped, buffers skipped,
    Conv1D weights transposed, every tensor in `dtype`, the head tied. Takes the tensors out of
    `tensors` one by one, so no second copy of the model is held."""
    shapes, state, head = expected_shapes(cfg), {}, None
    for name in list(tensors):
        t = tensors.pop(name)
        if name.endswith(SKIPPED) and ours_name(name).startswith("blocks."):
            continue
        if name == "lm_head.weight":
            head = t
            continue
        ours = ours_name(name)
        if ours not in shapes:
            raise GPT2FolderError(f"{where}: unexpected tensor {name!r} (not in a {cfg.n_layer}-layer GPT-2)")
        if ours in state:
            raise GPT2FolderError(f"{where}: tensor {name!r} is there both with and without 'transformer.'")
        if t.dtype not in FLOATS:
            raise GPT2FolderError(f"{where}: tensor {name!r} is {t.dtype}, not floating point")
        if tuple(t.shape) != shapes[ours]:
            raise GPT2FolderError(f"{where}: tensor {name!r} has shape {tuple(t.shape)}, where config.json "
                                  f"asks for {shapes[ours]}")
        state[ours] = (t.t() if ours.endswith(TRANSPOSED) else t).to(dtype).contiguous()
    missing = [n for n in shapes if n not in state]
    if missing:
        raise GPT2FolderError(f"{where}: missing tensor {hf_name(missing[0])!r} (or {missing[0].replace('blocks.', 'h.')!r})")
    if head is not None and (head.shape != state["wte.weight"].shape or not torch.equal(head.to(dtype), state["wte.weight"])):
        raise GPT2FolderError(f"{where}: tensor 'lm_head.weight' differs from wte.weight (this GPT ties them)")
    state["lm_head.weight"] = state["wte.weight"]
    return state


def state_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """GPT-2's tensors from our model, as GPT2LMHeadModel saves them (`transformer.` names, the
    tied head left out: transformers ties it back)."""
    return {hf_name(name): (t.t().contiguous() if name.endswith(TRANSPOSED) else t)
            for name, t in model.state_dict().items() if name != "lm_head.weight"}


def read_config(folder: Path) -> GPTConfig:
    f = folder / "config.json"
    if not f.is_file():
        weight_files(folder)  # a folder with no weights either says that first
        raise GPT2FolderError(f"{f} not found (a GPT-2 folder holds config.json beside its weights)")
    return config_from_hf(json_object(f, GPT2FolderError), str(f))


def import_gpt2(folder, device="cpu", dtype=torch.float32) -> GPT:
    """A GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors or its shards).
    The model is built on the meta device and takes the file's tensors as its own: the weights are
    in memory once."""
    folder = Path(folder)
    cfg = read_config(folder)
    files = weight_files(folder)
    state = state_from_hf(read_weights(folder), cfg, str(files[0] if len(files) == 1 else folder / INDEX), dtype)
    with torch.device("meta"):
        model = GPT(cfg)
    model.load_state_dict(state, assign=True)
    model.lm_head.weight = model.wte.weight  # `assign` made two Parameters of the one tensor: tie them again
    return model.to(device).eval()


# --- in and out of a run folder ----------------------------------------------------------------
def folder_tokenizer(folder, ranks_file):
    """The tokenizer of a GPT-2 folder (its vocab.json + merges.txt, or tokenizer.json), to be kept in
    the run folder as `ranks_file` (tiktoken's format; `import_into_run` writes it). An export of a
    minidpo run gives our tokenizer back, which must be the shipped one."""
    from ..tokenizer import Tokenizer
    weight_files(Path(folder))  # a folder that is no GPT-2 folder says so before its tokenizer is read
    read_config(Path(folder))
    try:
        ranks, kind = read_hf_tokenizer(folder)
    except OSError as e:
        raise TokenizerFilesError(f"{e.filename}: cannot read it ({e.strerror})") from None
    if kind == "minidpo":
        shipped = Tokenizer.load()
        if Tokenizer(ranks).fingerprint != shipped.fingerprint:
            raise TokenizerFilesError(f"{folder}: minidpo's special tokens over other merges than the shipped "
                                      "tokenizer's: give --tokenizer FILE with those merges")
        return shipped
    tok = Tokenizer(ranks, name="minidpo-gpt2", kind="gpt2")
    tok.path, tok.ranks = str(ranks_file), ranks
    return tok


def import_into_run(run, folder) -> None:
    """`python -m minidpo import-gpt2`: the GPT-2 folder's weights as the run's sft.pt (the model DPO
    starts from and its reference), recorded like any stage: its key holds the hash of the weights
    and config.json and the tokenizer's, so `dpo --data YOURS.jsonl --val-data ...` then runs on it."""
    from ..checkpoint import file_hash, save_checkpoint, write_json
    from ..tokenizer import save_ranks
    folder = Path(folder)
    files = weight_files(folder)  # (refuses a folder without weights before anything is written)
    cfg = read_config(folder)
    if cfg.vocab_size != run.tok.vocab_size:
        raise GPT2FolderError(f"{folder / 'config.json'}: vocab_size {cfg.vocab_size} does not match the "
                              f"tokenizer's {run.tok.vocab_size} ({run.tok.n_ordinary} merge ranks and "
                              f"{run.tok.vocab_size - run.tok.n_ordinary} special tokens)")
    if getattr(run.tok, "ranks", None) is not None:  # converted from the folder's vocab.json + merges.txt
        save_ranks(run.tok.ranks, run.tok.path)

    def go():
        model = import_gpt2(folder)
        save_checkpoint(run.path("sft.pt"), model.state_dict(), {"stage": "import-gpt2", "model": vars(model.config),
                                                                 "source": str(folder)})
        write_json(run.path("sft_metrics.json"), {"imported_from": str(folder), "params": model.num_params()})
        print(f"imported {folder.name}/: {model.config.n_layer} layers, {model.num_params() / 1e6:.1f} M parameters")
    digest = hashlib.sha256("".join(file_hash(f) for f in [*files, folder / "config.json"]).encode()).hexdigest()
    run.cached("sft", {"import_gpt2": True}, {"weights": digest}, go, code="interop.gpt2")


def export_gpt2(model: GPT, folder, tok=None) -> None:
    """Write `model` as a Hugging Face GPT-2 folder: model.safetensors + config.json, and with `tok`
    its tokenizer files (hf_tokenizer.tokenizer_files)."""
    from ..checkpoint import atomic_write, write_json
    folder = Path(folder)
    write_safetensors(folder / "model.safetensors", state_to_hf(model), {"format": "pt"})
    write_json(folder / "config.json", config_to_hf(model.config, tok.end_id if tok is not None else None))
    if tok is not None:
        for name, content in tokenizer_files(tok, model.config.block_size).items():
            if isinstance(content, str):
                atomic_write(folder / name, lambda f, text=content: f.write(text.encode("utf-8")))
            else:
                write_json(folder / name, content)


POLICIES = ("sft", "dpo", "rlhf", "ppo", "grpo")


def export_run(run_folder, policy: str, tok, to) -> Path:
    """`python -m minidpo export`: RUN/POLICY.pt as a new Hugging Face GPT-2 folder `to`, written in
    a temporary folder beside it and renamed when complete (a failed export leaves nothing)."""
    from ..checkpoint import load_gpt
    to, run_folder = Path(to), Path(run_folder)
    if to.exists():
        raise GPT2FolderError(f"--to {to} exists: export writes a new folder (choose another, or delete it)")
    if not run_folder.is_dir():
        raise GPT2FolderError(f"--out {run_folder}: no such run folder")
    model = load_gpt(run_folder / f"{policy}.pt", vocab_size=tok.vocab_size)[0].eval()
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        export_gpt2(model, tmp, tok)
        os.rename(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return to


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

