"""The safetensors format, read and written in a page: how Hugging Face ships weights.

    [8 bytes: N, the header's length, little-endian unsigned]
    [N bytes: a JSON object  {name: {"dtype": "F32", "shape": [768, 2304], "data_offsets": [begin, end]},
                              ..., "__metadata__": {str: str}}]
    [the tensors' raw little-endian bytes; each tensor at data_offsets, relative to the end of the header]

No pickle, nothing executed: a file can only ever give back numbers. Every malformed file is a
`SafetensorsError` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


class SafetensorsError(ValueError):
    pass


def read_header(f, path: Path, size: int) -> tuple[dict, dict, int]:
    """(tensor entries by name, __metadata__, where the data begins) from an open file of `size` bytes."""
    if size < 8:
        raise SafetensorsError(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", f.read(8))
    if 8 + n > size:
        raise SafetensorsError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise SafetensorsError(f"{path}: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata, 8 + n


def read_safetensors(path, names=None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors by name, the file's __metadata__) from a .safetensors file; `names`: only those.

    Read tensor by tensor straight into each tensor's own memory (`readinto`), so a 500 MB file costs
    500 MB, not twice that, and reads at disk speed."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read it ({e.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        header, metadata, start = read_header(f, path, size)
        body = size - start
        tensors = {}
        for name, info in header.items():
            if names is not None and name not in names:
                continue
            try:
                dtype, shape, (begin, end) = DTYPES[info["dtype"]], [int(d) for d in info["shape"]], info["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise SafetensorsError(f"{path}: tensor {name!r} has no valid dtype, shape and data_offsets") from None
            count = 1
            for d in shape:
                count *= d
            if not 0 <= begin <= end <= body or end - begin != count * torch.empty((), dtype=dtype).element_size():
                raise SafetensorsError(f"{path}: tensor {name!r}: data_offsets {begin}..{end} do not hold {shape} of {info['dtype']}")
            t = torch.empty(shape, dtype=dtype)
            f.seek(start + begin)
            if end > begin and f.readinto(memoryview(t.view(-1).view(torch.uint8).numpy())) != end - begin:
                raise SafetensorsError(f"{path}: tensor {name!r}: the file ends inside its data")
            tensors[name] = t
    return tensors, metadata


def write_safetensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (contiguous CPU copies, in name order) atomically; the header is padded with
    spaces to a multiple of 8 bytes, as the reference implementation does."""
    from ..checkpoint import atomic_write
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in NAMES:
            raise SafetensorsError(f"{name}: dtype {t.dtype} has no safetensors name")
        blob = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()  # numpy has no bf16
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    atomic_write(Path(path), lambda f: (f.write(struct.pack("<Q", len(text))), f.write(text),
                                        [f.write(b) for b in blobs]))
