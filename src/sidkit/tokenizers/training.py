"""The one training loop of the neural tokenizers: AdamW, mini-batches, early stopping, history.

A network to train has ``training_loss(x, generator) -> StepOutput``; in ``train()`` mode it may
update its own state (EMA codebooks, dead-code resets), in ``eval()`` mode it must not. The loop:

- holds out ``validation_share`` of the items (a seeded draw) and stops when their loss has not
  improved for ``patience`` epochs, then restores the weights of the best epoch;
- visits the training items in a seeded random order each epoch (same seed, same order, same model);
- shows a progress bar with the loss parts and, for quantizers, the per-level perplexity;
- records a :class:`sidkit.tokenizers.history.TrainingHistory`, one entry per epoch.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from sidkit import distributed
from sidkit.errors import ConfigError, SidkitError
from sidkit.progress import Bar
from sidkit.threads import single_thread
from sidkit.tokenizers.history import EpochRecord, TrainingHistory
from sidkit.tokenizers.linear import fast_bfloat16, fused_mlp_works, gemm_dtype
from sidkit.tokenizers.optim import FusedAdamW

# Training steps whose forward GEMMs do fewer multiply-adds than this run on one intra-op thread on
# CPU. A step is many small torch ops, each ending at a barrier of its threads, and a thread that
# waits for a busy core holds every op up by a scheduler slice (milliseconds). Below this size a
# step's forward GEMMs take about 10 ms on one thread (4.3 GFLOP of bfloat16 at the ~400 GFLOP/s
# measured here), so the waits cost more than a second thread saves. The default networks are far
# below it (RQ-VAE on 384-d MovieLens at batch 256: 0.19e9), and there a second thread made epochs
# slower in wall and in CPU time (docs/benchmarks.md, "Threads").
PARALLEL_STEP_MACS = 2**31


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, batches, epochs and early stopping.

    Attributes:
        epochs: most passes over the training items.
        batch_size: items per step.
        learning_rate, weight_decay: AdamW settings.
        validation_share: share of items held out for early stopping, in [0, 1); 0 trains on all
            items for exactly ``epochs`` epochs.
        patience: stop after this many epochs without a validation loss lower than the best by
            more than ``min_delta`` (relative); None never stops early.
        min_delta: relative improvement that counts.
        bfloat16: run the MLP GEMMs of the training steps in bfloat16 (float32 accumulation, weights,
            optimizer, quantizer and losses; validation and encoding stay float32). None (the
            default) turns it on where it is native on a CPU (AVX-512 BF16 or AMX:
            :func:`sidkit.tokenizers.linear.fast_bfloat16`), where steps take about 0.7x the time and
            reconstruction is unchanged within seed noise (docs/tokenizers.md); float32 elsewhere,
            CUDA included. False always trains in float32; True always in bfloat16 (slower where
            bfloat16 is emulated). The precision used is kept in ``TrainingHistory.precision``.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    validation_share: float = 0.1
    patience: int | None = 10
    min_delta: float = 1e-4
    bfloat16: bool | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", where=name,
                                  fix=f"pass a positive {name}, e.g. {100 if name == 'epochs' else 256}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ConfigError(f"patience must be a positive integer or None, got {self.patience!r}",
                              where="patience", fix="use for example 10, or None to train every epoch")
        for name, low, high in (("learning_rate", 0.0, math.inf), ("weight_decay", 0.0, math.inf),
                                ("validation_share", 0.0, 1.0), ("min_delta", 0.0, math.inf)):
            value = getattr(self, name)
            lower_ok = value > low if name == "learning_rate" else value >= low
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (lower_ok and value < high):
                raise ConfigError(f"{name} must be a number in {'(' if name == 'learning_rate' else '['}"
                                  f"{low}, {high}), got {value!r}", where=name, fix=f"pass a {name} in that range")
        if self.bfloat16 is not None and not isinstance(self.bfloat16, bool):
            raise ConfigError(f"bfloat16 must be True, False or None (automatic), got {self.bfloat16!r}",
                              where="bfloat16", fix="pass True, False or None")


@dataclass(frozen=True, eq=False)
class StepOutput:
    """What a network returns for one batch.

    Attributes:
        loss: scalar to minimize.
        parts: named scalar terms of the loss, for the bar and the history (detached or not).
        codes: (B, L) int64 codes of the batch, for per-level usage; None for a network without codes.
    """

    loss: torch.Tensor
    parts: Mapping[str, torch.Tensor] = field(default_factory=dict)
    codes: torch.Tensor | None = None


class TrainableNet(Protocol):
    """A torch module with a per-batch loss (see the module docstring)."""

    def training_loss(self, x: torch.Tensor, generator: torch.Generator) -> StepOutput: ...

    def parameters(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


def train_network(net: TrainableNet, x: torch.Tensor, config: TrainConfig, *, seed: int,
                  codebook_sizes: tuple[int, ...] = (), description: str = "training",
                  progress: bool | None = None,
                  initialize: Callable[[torch.Tensor], None] | None = None) -> TrainingHistory:
    """Train ``net`` on (N, D) ``x`` (already on the training device); returns the per-epoch history.

    ``codebook_sizes`` gives K_l when the network returns codes (for perplexity and active codes).
    ``initialize`` is called once with the (CPU, int64) training rows before the first step, for
    data-dependent initialization that must not see the held-out items.
    Randomness: data order and the validation split come from CPU generators seeded by ``seed``;
    ``generator`` passed to the network is a CPU generator seeded from ``seed`` too.
    """
    n = x.shape[0]
    order_gen = torch.Generator().manual_seed(seed)
    net_gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    train_rows, val_rows = split_rows(n, config.validation_share, order_gen)
    parallel = distributed.context()  # under torchrun: data-parallel (see sidkit.distributed)
    if initialize is not None:
        parallel.run_on_main(functools.partial(initialize, train_rows))  # k-means once, on rank 0
    parallel.broadcast_module(net)
    # Fused AdamW: one kernel for all parameters, without torch.optim's per-parameter Python walk.
    optimizer = FusedAdamW([p for p in net.parameters() if p.requires_grad], lr=config.learning_rate,
                           weight_decay=config.weight_decay)
    steps = math.ceil(len(train_rows) / config.batch_size)
    offsets = torch.tensor([sum(codebook_sizes[:level]) for level in range(len(codebook_sizes))],
                           dtype=torch.int64, device=x.device)
    precision = training_dtype(config.bfloat16, x.device)
    records: list[EpochRecord] = []
    best_loss, best_epoch, best_state, stale = math.inf, None, None, 0
    stopped_early = False
    with (step_threads(net, config.batch_size, x.device),
          Bar(description, config.epochs * steps, enabled=progress if parallel.is_main else False) as bar):
        for epoch in range(config.epochs):
            started = time.perf_counter()
            net.train()
            names: list[str] = []
            totals = torch.zeros(0, dtype=torch.float64, device=x.device)
            # One count vector for all levels: level l's codes are offset by K_0 + ... + K_{l-1}.
            all_counts = torch.zeros(sum(codebook_sizes), dtype=torch.int64, device=x.device)
            perm = train_rows[torch.randperm(len(train_rows), generator=order_gen)].to(x.device)
            for step in range(steps):
                batch = perm[step * config.batch_size:(step + 1) * config.batch_size]
                local, share = parallel.shard(batch)
                with gemm_dtype(precision):
                    out = net.training_loss(x[local], net_gen)
                optimizer.zero_grad()
                out.loss.backward()
                parallel.average_gradients(net.parameters(), share, len(batch))
                optimizer.step()
                parallel.broadcast_module(net, buffers_only=True)
                # The loss parts of the step as one vector: two ops per step instead of four per part.
                parts = {"loss": out.loss, **out.parts}
                if not names:
                    names = list(parts)
                    totals = torch.zeros(len(names), dtype=torch.float64, device=x.device)
                totals.add_(torch.stack([parts[name].detach() for name in names]), alpha=share / len(batch))
                if out.codes is not None:
                    all_counts += torch.bincount((out.codes + offsets).view(-1), minlength=all_counts.numel())
                bar.advance()
            totals = parallel.sum(totals)
            counts = list(parallel.sum(all_counts).split(list(codebook_sizes))) if codebook_sizes else []
            train_parts = {name: float(total) / steps for name, total in zip(names, totals.tolist(), strict=True)}
            _check_finite(train_parts["loss"], epoch)
            val_loss = validation_loss(net, x, val_rows, config.batch_size, net_gen) if len(val_rows) else None
            record = EpochRecord(epoch=epoch, train=train_parts, validation=val_loss,
                                 perplexity=tuple(perplexity(c) for c in counts),
                                 active=tuple(int((c > 0).sum()) for c in counts),
                                 seconds=time.perf_counter() - started)
            records.append(record)
            bar.note(record.summary())
            if val_loss is None:
                continue
            if val_loss < best_loss * (1.0 - config.min_delta) or best_epoch is None:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if config.patience is not None and stale >= config.patience:
                    stopped_early = True
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.train(False)
    return TrainingHistory(tuple(records), best_epoch, stopped_early,
                           precision=str(precision).removeprefix("torch."))


def step_macs(net: TrainableNet, batch_size: int) -> int:
    """Multiply-adds of a step's forward GEMMs, about: ``batch_size`` x the entries of the 2-D weights
    (each MLP weight and codebook is multiplied once per row going forward)."""
    return batch_size * sum(int(p.numel()) for p in net.parameters() if p.dim() == 2)


def step_threads(net: TrainableNet, batch_size: int, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The thread setting of the training steps: one thread on CPU below PARALLEL_STEP_MACS, else as set."""
    if device.type == "cpu" and step_macs(net, batch_size) < PARALLEL_STEP_MACS:
        return single_thread()
    return contextlib.nullcontext()


def training_dtype(bfloat16: bool | None, device: torch.device) -> torch.dtype:
    """The dtype of the training steps' MLP GEMMs: ``bfloat16`` if set, else bfloat16 on a CPU that has it
    natively (and passes the fused-MLP check) and float32 everywhere else."""
    if bfloat16 is None:
        bfloat16 = device.type == "cpu" and fast_bfloat16("cpu") and fused_mlp_works(torch.bfloat16)
    return torch.bfloat16 if bfloat16 else torch.float32


def split_rows(n: int, share: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of ``range(n)`` into (training rows, held-out rows), both sorted int64 (CPU).

    Holds out round(share * n) rows, but always leaves at least one row to train on.
    """
    held = min(round(share * n), n - 1) if share > 0 else 0
    perm = torch.randperm(n, generator=generator)
    return perm[held:].sort().values, perm[:held].sort().values


@torch.no_grad()
def validation_loss(net: TrainableNet, x: torch.Tensor, rows: torch.Tensor, batch_size: int,
                    generator: torch.Generator) -> float:
    """Mean loss over the held-out ``rows``, in eval mode (no state updates), weighted by batch size."""
    net.train(False)
    total = 0.0
    device_rows = rows.to(x.device)
    for start in range(0, len(rows), batch_size):
        batch = x[device_rows[start:start + batch_size]]
        total += float(net.training_loss(batch, generator).loss) * len(batch)
    net.train(True)
    return total / len(rows)


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of a (K,) count vector; 0 for no counts."""
    total = counts.sum()
    if int(total) == 0:
        return 0.0
    p = counts[counts > 0].double() / float(total)
    return float(torch.exp(-(p * p.log()).sum()))


def _check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise SidkitError(f"training diverged: the loss is {loss} in epoch {epoch}", where="fit",
                          fix="lower learning_rate, or check the embeddings for extreme values")

