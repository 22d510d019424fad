"""The training loop: one optimizer step is batch × grad-accum packed chunks (split over the processes),
the loss is the mean causal-LM cross-entropy, then AdamW with the schedule and clipping of src/train/.
Rank 0 writes metrics.jsonl, checkpoints and the result; every rank computes the same loss and update."""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from fopeify_torch.fope_checkpoint import load_causal_lm
from fopeify_torch.fope_core import CausalLM

from .data import TokenData, micro_batches
from .job import Job, JobError
from .lora import attach_lora, set_trainable
from .optim import AdamW, learning_rate, local
from .parallel import Placement, all_reduce_sum, attention_for, barrier, distribute, full_tensor
from .state import (
    append_metrics,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_metrics,
    rewrite_metrics,
    save_checkpoint,
    write_result,
    _read_all,
)

FAULT_ENV = "FOPEIFY_TORCH_FAIL_AT"
"""`rank:step`: that rank raises at that (1-based) step. A test hook for the failing-rank path."""


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0
    seconds_before: float = 0.0
    final_loss: Optional[float] = None
    passkey_evals: int = 0


def build_model(job: Job) -> CausalLM:
    """The prepared model (float32), with LoRA factors attached and only the job's trainable set trainable."""
    model = load_causal_lm(job.model_dir, dtype=torch.float32)
    if job.lora_bases:
        assert job.lora_init is not None
        init = _read_all(os.path.dirname(job.lora_init), os.path.basename(job.lora_init))
        attach_lora(model, job.lora_bases, init, job.lora_scale)
    model.train()
    return model


def chunk_loss(module: nn.Module, ids: torch.Tensor, attention: Callable[..., Any]) -> torch.Tensor:
    """Mean cross-entropy of predicting ids[:, 1:] from ids[:, :-1]."""
    logits = module(ids[:, :-1], None, attention)
    return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def autocast(place: Placement) -> contextlib.AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if place.cuda else contextlib.nullcontext()


def to_full(param: torch.Tensor, local_value: torch.Tensor) -> torch.Tensor:
    """A parameter-shaped tensor whole on every rank (moments of FSDP2 shards are gathered like the parameter)."""
    mesh = getattr(param, "device_mesh", None)
    if mesh is None:
        return local_value.detach().to("cpu", torch.float32)
    from torch.distributed.tensor import DTensor  # torch >= 2.4

    d = DTensor.from_local(local_value, mesh, param.placements, shape=param.shape, stride=param.stride())
    return d.full_tensor().detach().to("cpu", torch.float32)


def to_local(param: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """This rank's part of a whole parameter-shaped tensor."""
    mesh = getattr(param, "device_mesh", None)
    if mesh is None:
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(local(param).device), mesh, param.placements).to_local()


def read_passkey_prompts(job: Job) -> List[List[Tuple[List[int], int]]]:
    """The (ids, prompt length) of every prompt of every passkey evaluation, in the run's order."""
    if job.passkey_file is None:
        return []
    try:
        with open(job.passkey_file, "r", encoding="utf-8") as fh:
            evals = json.load(fh)["evals"]
        out = [[(list(map(int, p["ids"])), int(p["prompt_length"])) for p in prompts] for prompts in evals]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise JobError(f"{job.passkey_file} is not a passkey prompt file of fopeify: {err}", "BAD_CONFIG") from err
    if len(out) != job.passkey_evals:
        raise JobError(f"{job.passkey_file} holds {len(out)} evaluations, job.json says {job.passkey_evals}", "BAD_CONFIG")
    return out


class Trainer:
    def __init__(self, job: Job, place: Placement, stop_after: Optional[int]) -> None:
        self.job = job
        self.place = place
        self.stop_after = stop_after
        self.data = TokenData(job)
        self.model = build_model(job)
        self.params = set_trainable(self.model, job.trainable)
        self.module = distribute(self.model, place)
        self.attention = attention_for(place)
        s = job.settings
        self.optimizer = AdamW(self.params, s.betas, 1e-8, s.weight_decay)
        self.progress = Progress()
        self.started = time.time()
        self.fault = self._fault()
        self.passkey = read_passkey_prompts(job)

    def _fault(self) -> Optional[int]:
        spec = os.environ.get(FAULT_ENV, "")
        if ":" not in spec:
            return None
        rank, step = spec.split(":", 1)
        return int(step) if int(rank) == self.place.rank else None

    # --- checkpoints -------------------------------------------------------------------------

    def resume(self) -> None:
        folder = latest_checkpoint(self.job.checkpoints_dir)
        if folder is None:
            raise JobError(f"--resume: no checkpoint in {self.job.checkpoints_dir}")
        state, weights, m, v, opt_step = load_checkpoint(folder)
        if set(weights) != set(self.params):
            raise JobError(f"--resume: {folder} holds other trainable tensors than this job trains")
        with torch.no_grad():
            for name, p in self.params.items():
                local(p.data).copy_(to_local(p, weights[name]))
                self.optimizer.m[name].copy_(to_local(p, m[name]))
                self.optimizer.v[name].copy_(to_local(p, v[name]))
        self.optimizer.step = opt_step
        self.progress = Progress(int(state["step"]), int(state["tokens"]), float(state["seconds"]), passkey_evals=int(state.get("passkey_evals", 0)))
        if self.place.is_main:
            rewrite_metrics(self.job.metrics_file, [r for r in read_metrics(self.job.metrics_file) if r["step"] <= self.progress.step])

    def checkpoint(self) -> None:
        p = self.progress
        trainable = {n: full_tensor(t) for n, t in self.params.items()}
        m = {n: to_full(self.params[n], t) for n, t in self.optimizer.m.items()}
        v = {n: to_full(self.params[n], t) for n, t in self.optimizer.v.items()}
        if self.place.is_main:
            state = {"step": p.step, "passkey_evals": p.passkey_evals, "samples": p.step * self.job.settings.samples_per_step, "tokens": p.tokens, "seconds": self.elapsed(), "world_size": self.place.world}
            save_checkpoint(self.job.checkpoints_dir, state, trainable, m, v, self.optimizer.step)
            prune_checkpoints(self.job.checkpoints_dir, max(1, self.job.keep_checkpoints))
        barrier(self.place)

    def elapsed(self) -> float:
        return self.progress.seconds_before + (time.time() - self.started)

    # --- steps ---------------------------------------------------------------------------------

    def train_step(self, step: int) -> float:
        """Forward and backward over this rank's chunks of a 0-based step; returns the mean loss over all ranks."""
        s = self.job.settings
        chunks = self.data.step_chunks(step, self.place.rank, self.place.world)
        micro = micro_batches(chunks, s.batch)
        n = len(chunks)
        total = 0.0
        for i, ids in enumerate(micro):
            last = i == len(micro) - 1
            sync = self.module.no_sync() if hasattr(self.module, "no_sync") and not last else contextlib.nullcontext()
            with sync:
                with autocast(self.place):
                    loss = chunk_loss(self.module, ids.to(self.place.device), self.attention)
                (loss * (ids.shape[0] / n)).backward()
            total += float(loss.detach()) * ids.shape[0]
        return all_reduce_sum(total / n, self.place) / self.place.world

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean held-out loss (every rank runs every chunk: sharded modules need all ranks in each forward)."""
        self.model.eval()
        try:
            held = micro_batches(self.data.held_out, 1)
            total = 0.0
            for ids in held:
                with autocast(self.place):
                    total += float(chunk_loss(self.model, ids.to(self.place.device), self.attention))
            return total / len(held)
        finally:
            self.model.train()

    @torch.no_grad()
    def passkey_accuracy(self) -> float:
        """Teacher-forced passkey accuracy over the next evaluation's prompts: a prompt is right iff the argmax
        at every answer position is the answer token (src/train/passkey.ts's rule, on the same prompts)."""
        n = self.progress.passkey_evals
        if n >= len(self.passkey):
            raise JobError(f"passkey evaluation {n + 1} has no prompts in {self.job.passkey_file} (rewrite the job with fopeify)", "BAD_CONFIG")
        self.progress.passkey_evals += 1
        prompts = self.passkey[n]
        self.model.eval()
        try:
            correct = 0
            for ids, prompt_length in prompts:
                x = torch.tensor([ids], dtype=torch.int64, device=self.place.device)
                with autocast(self.place):
                    logits = self.model(x, None, self.attention)
                predicted = logits[0, prompt_length - 1 : len(ids) - 1].float().argmax(dim=-1).tolist()
                correct += int(predicted == ids[prompt_length:])
            return correct / len(prompts) if prompts else 0.0
        finally:
            self.model.train()

    def run(self) -> bool:
        """Train to the end (True) or until --stop-after (False, after a checkpoint)."""
        s = self.job.settings
        p = self.progress
        run_steps = 0
        while p.step < s.steps:
            t0 = time.time()
            if self.fault == p.step + 1:
                raise RuntimeError(f"injected failure at step {p.step + 1} ({FAULT_ENV})")
            lr = learning_rate(s, p.step)
            loss = self.train_step(p.step)
            if not math.isfinite(loss):
                raise JobError(f"the training loss is {loss} at step {p.step + 1} (lower --lr, or check the weights)", "NON_FINITE")
            norm = self.optimizer.apply(lr, s.max_grad_norm, sharded=self.place.strategy == "fsdp")
            for q in self.params.values():
                q.grad = None
            p.step += 1
            run_steps += 1
            p.tokens += s.tokens_per_step
            p.final_loss = loss
            secs = time.time() - t0
            record: Dict[str, Any] = {
                "step": p.step,
                "loss": loss,
                "lr": lr,
                "tokens_per_s": s.tokens_per_step / max(secs, 1e-6),
                "grad_norm": norm,
                "tokens": p.tokens,
                "elapsed_s": self.elapsed(),
            }
            if s.eval_every > 0 and (p.step % s.eval_every == 0 or p.step == s.steps):
                ev = self.evaluate()
                record["eval_loss"] = ev
                record["eval_ppl"] = math.exp(ev)
                if self.passkey:
                    record["passkey_accuracy"] = self.passkey_accuracy()
            if self.place.is_main:
                append_metrics(self.job.metrics_file, record)
            stop = self.stop_after is not None and run_steps >= self.stop_after and p.step < s.steps
            if stop or (s.save_every > 0 and p.step % s.save_every == 0 and p.step < s.steps):
                self.checkpoint()
            if stop:
                return False
        self.finish()
        return True

    def finish(self) -> None:
        weights = {n: full_tensor(t) for n, t in self.model.state_dict().items()}
        if self.place.is_main:
            p = self.progress
            result = {
                "format": "fopeify-torch-result",
                "steps_done": p.step,
                "tokens": p.tokens,
                "final_loss": p.final_loss,
                "seconds": self.elapsed(),
                "torch": torch.__version__,
                "strategy": self.place.strategy,
                "world_size": self.place.world,
                "device": str(self.place.device.type),
            }
            write_result(self.job.result_dir, weights, result)
        barrier(self.place)


