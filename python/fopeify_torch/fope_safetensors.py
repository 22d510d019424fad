"""A minimal safetensors reader (the `safetensors` package is not always installable): an 8-byte
little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}`, then raw
little-endian data. Works with torch >= 1.13 (`torch.frombuffer`)."""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import torch

from .fope_spec import FopeCheckpointError

INDEX_FILE = "model.safetensors.index.json"

DTYPES: Dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_SIZES: Dict[str, int] = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: List[int]
    file: str
    begin: int
    """Absolute byte offset of the data in the file."""
    end: int


def read_header(path: str) -> Dict[str, TensorInfo]:
    """Tensor infos of one safetensors file (validated: offsets inside the file, sizes match shapes)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise FopeCheckpointError(f"{path} is not a safetensors file (shorter than 8 bytes)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > size - 8:
                raise FopeCheckpointError(f"{path}: header length {header_len} exceeds the file")
            header = json.loads(fh.read(header_len).decode("utf-8"))
    except OSError as err:
        raise FopeCheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FopeCheckpointError(f"{path}: the safetensors header is not valid JSON") from err
    if not isinstance(header, dict):
        raise FopeCheckpointError(f"{path}: the safetensors header is not a JSON object")
    base = 8 + header_len
    out: Dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in DTYPES:
            raise FopeCheckpointError(f"{path}: tensor {name} has unsupported dtype {dtype!r}")
        shape = [int(d) for d in entry.get("shape", [])]
        begin, end = (int(x) for x in entry.get("data_offsets", [0, 0]))
        n = 1
        for d in shape:
            n *= d
        if end - begin != n * _SIZES[dtype] or base + end > size or begin < 0:
            raise FopeCheckpointError(f"{path}: tensor {name} has data offsets [{begin}, {end}] that do not fit its shape {shape} or the file")
        out[name] = TensorInfo(name=name, dtype=dtype, shape=shape, file=path, begin=base + begin, end=base + end)
    return out


def shard_files(folder: str) -> List[str]:
    """The folder's safetensors shards: those the index names, else `model.safetensors`, else every `*.safetensors`."""
    index = os.path.join(folder, INDEX_FILE)
    if os.path.exists(index):
        try:
            with open(index, "r", encoding="utf-8") as fh:
                weight_map = json.load(fh).get("weight_map")
        except (OSError, ValueError) as err:
            raise FopeCheckpointError(f"{index} is not valid JSON") from err
        if not isinstance(weight_map, dict):
            raise FopeCheckpointError(f"{index} has no weight_map")
        files = sorted(set(str(f) for f in weight_map.values()))
        for f in files:
            if "/" in f or "\\" in f or f.startswith(".") or not os.path.exists(os.path.join(folder, f)):
                raise FopeCheckpointError(f"{INDEX_FILE} names shard {f}, which is missing from {folder}")
        return [os.path.join(folder, f) for f in files]
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return [single]
    found = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors") and not f.startswith("."))
    if not found:
        raise FopeCheckpointError(f"{folder} holds no safetensors weights")
    return [os.path.join(folder, f) for f in found]


class SafetensorsFolder:
    """Every tensor of a model folder by name; data is read one tensor at a time."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.tensors: Dict[str, TensorInfo] = {}
        for path in shard_files(folder):
            for name, info in read_header(path).items():
                self.tensors[name] = info

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> Iterator[str]:
        return iter(self.tensors)

    def shape(self, name: str) -> List[int]:
        return list(self.tensors[name].shape)

    def read(self, name: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        info = self.tensors.get(name)
        if info is None:
            raise FopeCheckpointError(f"tensor {name} is not in {self.folder}")
        with open(info.file, "rb") as fh:
            fh.seek(info.begin)
            data = bytearray(fh.read(info.end - info.begin))
        if len(data) != info.end - info.begin:
            raise FopeCheckpointError(f"{info.file} is truncated (tensor {name})")
        if not data:
            t = torch.zeros(info.shape, dtype=DTYPES[info.dtype])
        else:
            t = torch.frombuffer(data, dtype=DTYPES[info.dtype]).reshape(info.shape)
        return t if dtype is None else t.to(dtype)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    if t.numel() == 0:
        return b""
    flat = t.reshape(-1).view(torch.uint8)
    try:
        return flat.numpy().tobytes()
    except (RuntimeError, TypeError):  # torch without numpy
        return bytes(flat.tolist())


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors as one safetensors file (names sorted, header padded to 8 bytes, as the reference writer)."""
    names = {dt: name for name, dt in DTYPES.items()}
    header: Dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    blobs: List[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in names:
            raise FopeCheckpointError(f"cannot write tensor {name} of dtype {t.dtype}")
        raw = _tensor_bytes(t)
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for b in blobs:
            fh.write(b)
