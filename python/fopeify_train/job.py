"""job.json, the contract between fopeify (TypeScript, which writes it) and this trainer."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

JOB_FORMAT = "fopeify-torch-job"


class JobError(ValueError):
    """A user-facing error about the job (one line, with one of fopeify's error codes)."""

    def __init__(self, message: str, code: str = "BAD_ARGUMENT") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Settings:
    """The resolved TrainSettings (src/train/recipe.ts) the trainer uses."""

    seq_len: int
    steps: int
    batch: int
    grad_accum: int
    lr: float
    betas: Tuple[float, float]
    weight_decay: float
    warmup_steps: int
    schedule: str
    min_lr_ratio: float
    max_grad_norm: float
    eval_every: int
    save_every: int

    @property
    def samples_per_step(self) -> int:
        return self.batch * self.grad_accum

    @property
    def tokens_per_step(self) -> int:
        return self.samples_per_step * self.seq_len


@dataclass(frozen=True)
class Job:
    folder: str
    settings: Settings
    model_dir: str
    trainable: List[str]
    lora_bases: List[str]
    lora_scale: float
    lora_init: Optional[str]
    chunk_len: int
    train_file: str
    train_chunks: int
    order_file: str
    held_out_file: str
    held_out_chunks: int
    metrics_file: str
    checkpoints_dir: str
    result_dir: str
    keep_checkpoints: int
    parallel: str
    passkey_file: Optional[str]
    """--eval-passkey: the prompts of every passkey evaluation (fopeify draws them, as the tfjs trainer does)."""
    passkey_evals: int
    raw: Dict[str, Any]


def _settings(s: Dict[str, Any]) -> Settings:
    betas = s["betas"]
    return Settings(
        seq_len=int(s["seqLen"]),
        steps=int(s["steps"]),
        batch=int(s["batch"]),
        grad_accum=int(s["gradAccum"]),
        lr=float(s["lr"]),
        betas=(float(betas[0]), float(betas[1])),
        weight_decay=float(s["weightDecay"]),
        warmup_steps=int(s["warmupSteps"]),
        schedule=str(s["schedule"]),
        min_lr_ratio=float(s["minLrRatio"]),
        max_grad_norm=float(s["maxGradNorm"]),
        eval_every=int(s["evalEvery"]),
        save_every=int(s["saveEvery"]),
    )


def read_job(folder: str) -> Job:
    """Read `<folder>/job.json`; paths in it are relative to the job folder (the folder may move between machines)."""
    path = os.path.join(folder, "job.json")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError as err:
        raise JobError(f"{folder} is not a fopeify torch job (no job.json)") from err
    except ValueError as err:
        raise JobError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict) or raw.get("format") != JOB_FORMAT:
        raise JobError(f"{path} is not a {JOB_FORMAT} file")
    at = lambda p: os.path.normpath(os.path.join(folder, p))  # noqa: E731
    data = raw["data"]
    lora = raw.get("lora")
    passkey = raw.get("passkey")
    return Job(
        folder=folder,
        settings=_settings(raw["settings"]),
        model_dir=at(raw["model_dir"]),
        trainable=list(raw["trainable"]),
        lora_bases=list(lora["bases"]) if lora else [],
        lora_scale=float(lora["scale"]) if lora else 0.0,
        lora_init=at(lora["init"]) if lora else None,
        chunk_len=int(data["chunk_len"]),
        train_file=at(data["train"]),
        train_chunks=int(data["train_chunks"]),
        order_file=at(data["order"]),
        held_out_file=at(data["held_out"]),
        held_out_chunks=int(data["held_out_chunks"]),
        metrics_file=at(raw["metrics"]),
        checkpoints_dir=at(raw["checkpoints_dir"]),
        result_dir=at(raw["result_dir"]),
        keep_checkpoints=int(raw.get("keep_checkpoints", 2)),
        parallel=str(raw.get("parallel", "auto")),
        passkey_file=at(passkey["file"]) if passkey else None,
        passkey_evals=int(passkey["evals"]) if passkey else 0,
        raw=raw,
    )
