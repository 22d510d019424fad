"""What the trainer writes: metrics.jsonl (src/train/output.ts's records), checkpoints and the result.

Checkpoints are `<checkpoints>/step-NNNNNNNN/` (fopeify's names) holding trainable.safetensors,
optimizer.safetensors (AdamW moments `m/<name>`, `v/<name>`, the RNG state) and state.json; each is written
into a temporary sibling and renamed, so a crash never leaves a half-written one. The result folder (all
weights in float32, LoRA factors unmerged, and result.json) is written the same way."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from fopeify_torch.fope_safetensors import SafetensorsFolder, read_header, write_safetensors

CHECKPOINT_FORMAT = "fopeify-torch-checkpoint"
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
RESULT_WEIGHTS = "weights.safetensors"
RESULT_FILE = "result.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def temp_sibling(target: str) -> str:
    """fopeify's temporary-name pattern (src/io/output-folder.ts), so its stale-temp cleanup knows them."""
    d, base = os.path.split(target)
    host = hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]
    return os.path.join(d, f".{base}.fopeify-tmp-{os.getpid()}-{int(time.time() * 1000)}-{host}-0")


def write_folder_atomically(target: str, files: Dict[str, Any]) -> None:
    """Write `files` (name -> tensors dict or JSON-able object) into a temporary folder, then rename it to target."""
    tmp = temp_sibling(target)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        for name, content in files.items():
            if name.endswith(".safetensors"):
                tensors, meta = content
                write_safetensors(os.path.join(tmp, name), tensors, meta)
            else:
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                    json.dump(content, fh, indent=2)
                    fh.write("\n")
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if os.path.exists(target):
            old = temp_sibling(target + "-old")
            os.rename(target, old)
        os.rename(tmp, target)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def list_checkpoints(root: str) -> List[Tuple[int, str]]:
    if not os.path.isdir(root):
        return []
    out = []
    for n in os.listdir(root):
        if n.startswith("step-") and n[5:].isdigit() and os.path.isfile(os.path.join(root, n, STATE_FILE)):
            out.append((int(n[5:]), os.path.join(root, n)))
    return sorted(out)


def prune_checkpoints(root: str, keep: int) -> None:
    for _, d in list_checkpoints(root)[: max(0, len(list_checkpoints(root)) - keep)]:
        shutil.rmtree(d, ignore_errors=True)


def save_checkpoint(root: str, state: Dict[str, Any], trainable: Dict[str, torch.Tensor], m: Dict[str, torch.Tensor], v: Dict[str, torch.Tensor], optimizer_step: int) -> str:
    target = os.path.join(root, checkpoint_name(int(state["step"])))
    os.makedirs(root, exist_ok=True)
    moments = {f"m/{n}": t for n, t in m.items()}
    moments.update({f"v/{n}": t for n, t in v.items()})
    moments["rng/torch"] = torch.get_rng_state()
    write_folder_atomically(
        target,
        {
            TRAINABLE_FILE: (trainable, {"format": "pt", "fopeify": "torch-finetune-checkpoint"}),
            OPTIMIZER_FILE: (moments, {"optimizer_step": str(optimizer_step)}),
            STATE_FILE: {"format": CHECKPOINT_FORMAT, "version": 1, **state},
        },
    )
    return target


def load_checkpoint(folder: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, torch.Tensor], Dict[str, torch.Tensor], int]:
    """(state, trainable, m, v, optimizer step) of a checkpoint; restores the torch RNG state."""
    with open(os.path.join(folder, STATE_FILE), "r", encoding="utf-8") as fh:
        state = json.load(fh)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{folder} is not a checkpoint of the torch engine (format {state.get('format')!r}); resume it with the engine that wrote it")
    weights = _read_all(folder, TRAINABLE_FILE)
    moments = _read_all(folder, OPTIMIZER_FILE)
    torch.set_rng_state(moments.pop("rng/torch"))
    m = {n[2:]: t for n, t in moments.items() if n.startswith("m/")}
    v = {n[2:]: t for n, t in moments.items() if n.startswith("v/")}
    step_meta = _metadata(os.path.join(folder, OPTIMIZER_FILE)).get("optimizer_step", str(state["step"]))
    return state, weights, m, v, int(step_meta)


def _metadata(path: str) -> Dict[str, str]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return dict(header.get("__metadata__") or {})


def _read_all(folder: str, file: str) -> Dict[str, torch.Tensor]:
    """Every tensor of one safetensors file in `folder`."""
    infos = read_header(os.path.join(folder, file))
    st = SafetensorsFolder.__new__(SafetensorsFolder)  # one file of a folder that holds others
    st.folder, st.tensors = folder, dict(infos)
    return {n: st.read(n) for n in infos}


def read_metrics(path: str) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    if not os.path.exists(path):
        return out
    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out


def rewrite_metrics(path: str, records: List[Dict[str, Any]]) -> None:
    tmp = temp_sibling(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def append_metrics(path: str, record: Dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def write_result(folder: str, weights: Dict[str, torch.Tensor], result: Dict[str, Any]) -> None:
    write_folder_atomically(folder, {RESULT_WEIGHTS: (weights, {"format": "pt", "fopeify": "torch-finetune-result"}), RESULT_FILE: result})


def latest_checkpoint(root: str) -> Optional[str]:
    found = list_checkpoints(root)
    return found[-1][1] if found else None
