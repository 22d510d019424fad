"""The token files fopeify packed: chunks of seq-len + 1 int32 tokens (train and held-out) and the chunk
order of every optimizer step (fopeify's seeded per-epoch shuffle, written out so one implementation of it
exists). Step s trains on order[s·N : (s+1)·N] with N = batch × grad-accum; rank r of W takes the r-th of W
equal contiguous parts."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch

from .job import Job, JobError


def read_i32(path: str, count: int) -> np.ndarray:
    size = os.path.getsize(path) if os.path.exists(path) else -1
    if size != 4 * count:
        raise JobError(f"{path} should hold {count} int32 values ({4 * count} bytes), found {size} bytes", "BAD_CONFIG")
    return np.fromfile(path, dtype="<i4", count=count)


class TokenData:
    def __init__(self, job: Job) -> None:
        s = job.settings
        self.chunk_len = job.chunk_len
        if self.chunk_len != s.seq_len + 1:
            raise JobError(f"chunks of {self.chunk_len} tokens do not fit seq-len {s.seq_len}", "BAD_CONFIG")
        self.train = read_i32(job.train_file, job.train_chunks * self.chunk_len).reshape(job.train_chunks, self.chunk_len)
        self.held_out = read_i32(job.held_out_file, job.held_out_chunks * self.chunk_len).reshape(job.held_out_chunks, self.chunk_len)
        self.per_step = s.samples_per_step
        self.order = read_i32(job.order_file, s.steps * self.per_step)
        if self.order.size and (self.order.min() < 0 or self.order.max() >= job.train_chunks):
            raise JobError(f"{job.order_file} names chunks outside the training data", "BAD_CONFIG")

    def step_chunks(self, step: int, rank: int, world: int) -> np.ndarray:
        """This rank's chunks `[n, seq-len + 1]` of a 0-based optimizer step."""
        if self.per_step % world:
            raise JobError(f"batch × grad-accum = {self.per_step} sequences per step cannot be split over {world} processes; make it a multiple of the process count")
        part = self.per_step // world
        start = step * self.per_step + rank * part
        return self.train[self.order[start : start + part]]


def micro_batches(chunks: np.ndarray, batch: int) -> List[torch.Tensor]:
    """Consecutive micro-batches of at most `batch` chunks, as int64 tensors."""
    return [torch.from_numpy(chunks[i : i + batch].astype(np.int64)) for i in range(0, len(chunks), batch)]
