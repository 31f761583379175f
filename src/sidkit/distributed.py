"""Data-parallel training under ``torchrun``: process group, batch sharding and gradient averaging.

Launch any sidkit training (a neural tokenizer's ``fit``, ``ranking.training.train_model``, or
``sidkit fit``) with ``torchrun --nproc_per_node N``: the training loops call :func:`context`, which
joins the process group that torchrun describes (gloo on CPU, nccl on CUDA, one GPU per local rank).

What each step does with W ranks (DDP's semantics, written out so that the networks keep their own
``training_loss`` methods instead of a ``forward`` that DDP could wrap):

- every rank holds the same model and draws the same global batch (same seed); rank r takes the r-th
  contiguous share of it (:meth:`DistributedContext.shard`);
- after ``backward``, gradients are averaged over ranks, weighted by rows, in one flat all-reduce
  (:meth:`DistributedContext.average_gradients`): the update equals the single-process one on the
  global batch, up to float summation order;
- buffers and parameters that do not learn by gradient (EMA codebooks, dead-code counters, batch-norm
  statistics) are broadcast from rank 0 after each step, like DDP's ``broadcast_buffers``;
- one-time, data-dependent initialization (k-means codebooks) runs on rank 0 only, and the whole
  model is then broadcast (:meth:`DistributedContext.run_on_main`, :meth:`DistributedContext.broadcast_module`).
  Every collective op is called by every rank: a collective that only some ranks reach hangs the job,
  so an error on rank 0 is sent to all ranks and raised everywhere.

Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) :func:`context` is a single-process
context whose methods do nothing, so the loops need no special case.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from sidkit.errors import SidkitError

T = TypeVar("T")
DEFAULT_TIMEOUT = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job.

    Attributes:
        rank: global rank, 0 .. world_size - 1.
        world_size: number of processes (1: not distributed).
        local_rank: rank on this machine (its GPU index under nccl).
        backend: "gloo", "nccl", or "" when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that saves files and prints."""
        return self.rank == 0

    def shard(self, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
        """This rank's contiguous share of a global batch: (rows to compute on, how many count).

        Lower ranks take the remainder, so rank 0 always has rows. A rank whose share is empty (a
        batch smaller than the world) still computes on the batch's first row, so that every rank
        runs the same collectives, but counts 0 rows: its gradient then weighs nothing.
        """
        if not self.enabled:
            return rows, int(rows.shape[0])
        n = rows.shape[0]
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        share = base + (1 if self.rank < extra else 0)
        if share == 0:
            return rows[:1], 0
        return rows[start:start + share], share

    def average_gradients(self, parameters: Iterable[torch.Tensor], local_rows: int, total_rows: int) -> None:
        """Replace each gradient by the row-weighted mean over ranks, sum_r (n_r / n) grad_r, in place.

        A parameter that got no gradient on any rank keeps none (so the optimizer skips it, as it
        would in one process); one that got a gradient on some ranks only counts zeros elsewhere.
        """
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        device = params[0].device
        weight = local_rows / max(total_rows, 1)
        flat = torch.cat([(p.grad.detach().reshape(-1) * weight if p.grad is not None
                           else torch.zeros(p.numel(), device=device, dtype=p.dtype)) for p in params]
                         + [torch.tensor([float(p.grad is not None) for p in params], device=device)])
        dist.all_reduce(flat)
        offset = 0
        for index, p in enumerate(params):
            values = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            has_grad = bool(flat[-len(params) + index] > 0)
            p.grad = values.clone() if has_grad else None

    def broadcast_module(self, module: Any, *, buffers_only: bool = False) -> None:
        """Copy rank 0's buffers (and parameters, unless ``buffers_only``; then only those that do not
        learn by gradient) to every rank. ``module``: anything with torch.nn.Module's ``parameters()``
        and ``buffers()``."""
        if not self.enabled:
            return
        with torch.no_grad():
            tensors = list(module.buffers())
            tensors += [p for p in module.parameters() if not (buffers_only and p.requires_grad)]
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only; an exception there is raised on every rank (never a hang)."""
        if not self.enabled:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # sent to the other ranks below, then raised here too
                error = exc
        status = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(status, src=0)
        if error is not None:
            raise error
        if status[0] is not None:
            raise SidkitError(f"rank 0 failed: {status[0]}", where=f"rank {self.rank}",
                              fix="see rank 0's error above")
        return result

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over ranks (a new tensor; ``values`` is left alone)."""
        total = values.detach().clone()
        if self.enabled:
            dist.all_reduce(total)
        return total


def context() -> DistributedContext:
    """The current job: joins torchrun's process group on first use; single-process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(),
                                  int(os.environ.get("LOCAL_RANK", "0")), str(dist.get_backend()))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    return init_from_env()


def init_from_env(backend: str | None = None, *, timeout: dt.timedelta = DEFAULT_TIMEOUT) -> DistributedContext:
    """Join the process group that torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    ``backend`` defaults to nccl when CUDA is available, else gloo. Under nccl the current CUDA device
    becomes ``cuda:LOCAL_RANK``, so ``device="cuda"`` means this rank's own GPU. Call it before moving
    data to a GPU; a no-op single-process context when ``WORLD_SIZE`` is unset or 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise SidkitError("this torch build has no torch.distributed", where="torchrun",
                          fix="install a torch build with distributed support, or run one process")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        if chosen == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=chosen, timeout=timeout)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, str(dist.get_backend()))


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        # A gloo barrier followed at once by teardown is racy (gloo issue 155): a rank that returns
        # first can close its connections while the other still drains the barrier's last messages,
        # and a rank then aborts ("terminate called without an active exception"). So after the gloo
        # barrier every rank also meets on the key-value store, which gloo does not use, and only then
        # closes its connections.
        dist.barrier()
        store_rendezvous(dist.distributed_c10d._get_default_store(), "sidkit/shutdown", dist.get_world_size(),
                         dist.get_rank())
        dist.destroy_process_group()


def store_rendezvous(store: Any, key: str, world_size: int, rank: int, *,
                     timeout: dt.timedelta = DEFAULT_TIMEOUT, poll_s: float = 0.005) -> None:
    """Block until all ``world_size`` ranks have called this with the same ``key`` on ``store``.

    Two counters: every rank waits until all have arrived; rank 0 (which may host the store and
    take it down when it exits) also waits until every rank has stopped reading the first counter.
    ``store``: a ``torch.distributed.Store`` (anything with ``add(key, amount) -> int``).
    """
    _count_up_to(store, f"{key}/arrived", world_size, timeout, poll_s, add=1)
    store.add(f"{key}/left", 1)
    if rank == 0:
        _count_up_to(store, f"{key}/left", world_size, timeout, poll_s, add=0)


def _count_up_to(store: Any, key: str, target: int, timeout: dt.timedelta, poll_s: float, *, add: int) -> None:
    count = int(store.add(key, add))
    deadline = time.monotonic() + timeout.total_seconds()
    while count < target:
        if time.monotonic() > deadline:
            raise SidkitError(f"only {count} of {target} ranks reached {key!r} within {timeout}",
                              where="torch.distributed shutdown",
                              fix="check the other ranks' logs: one of them failed or is still running")
        time.sleep(poll_s)
        count = int(store.add(key, 0))
