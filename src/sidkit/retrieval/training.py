"""The training loop the neural retrievers share: AdamW, epochs with early stopping, mixed precision.

After every epoch a validation score (higher is better, e.g. validation Recall@10) decides: the best
epoch's weights are kept, and training stops after ``patience`` epochs without a better score.
``precision`` "bfloat16" runs forward and loss under ``torch.autocast`` (weights, gradients and the
optimizer stay float32); "auto" picks bfloat16 on CUDA and on CPUs with native bfloat16 GEMMs
(AVX-512 BF16 / AMX), float32 elsewhere.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sidkit.errors import ConfigError
from sidkit.progress import Bar
from sidkit.tokenizers.linear import fast_bfloat16

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss, the validation score after it, its seconds and examples."""

    epoch: int
    train_loss: float
    valid_score: float
    seconds: float
    examples: int


@dataclass(frozen=True)
class TrainingHistory:
    """Every epoch, the best one (whose weights the model holds), and the precision used."""

    epochs: tuple[EpochRecord, ...]
    best_epoch: int
    seconds: float
    precision: str

    @property
    def examples_per_second(self) -> float:
        """Training examples per second of training time (validation excluded)."""
        train_seconds = sum(e.seconds for e in self.epochs)
        return sum(e.examples for e in self.epochs) / max(train_seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "seconds": self.seconds, "precision": self.precision,
                "examples_per_second": self.examples_per_second,
                "epochs": [e.__dict__ for e in self.epochs]}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (float32 means no autocast)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", where="--precision", fix=f"use one of {PRECISIONS}")
    if precision == "auto":
        return torch.bfloat16 if fast_bfloat16(device.type) else torch.float32
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def train_with_early_stopping(model: nn.Module, *, batches: Callable[[int], Iterable[Any]],
                              examples_per_epoch: Callable[[int], int], loss: Callable[[Any], torch.Tensor],
                              validate: Callable[[], float], epochs: int, patience: int, learning_rate: float,
                              weight_decay: float, device: torch.device, precision: torch.dtype,
                              description: str, progress: bool | None = None,
                              log: Callable[[str], None] | None = None) -> TrainingHistory:
    """Train ``model`` in place and leave it with its best validation epoch's weights.

    Args:
        batches: epoch -> the epoch's batches (whatever ``loss`` takes).
        examples_per_epoch: epoch -> the examples in them (for the rate shown and recorded).
        loss: batch -> scalar loss.
        validate: the validation score of the model as it is now (called in eval mode, no grad).
        epochs, patience: the most epochs, and epochs without improvement before stopping.
        precision: torch.bfloat16 (autocast) or torch.float32.
        description: the progress bar's label (its text shows examples/s) and the log lines' prefix.
        log: receives one line per epoch (loss, validation score, seconds, rate).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    use_autocast = precision == torch.bfloat16
    started = time.perf_counter()
    records: list[EpochRecord] = []
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        model.train()
        total, steps, epoch_started = 0.0, 0, time.perf_counter()
        count = examples_per_epoch(epoch)
        with Bar(f"{description} epoch {epoch}", count, enabled=progress, rate_unit="seq") as bar:
            for batch in batches(epoch):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
                    value = loss(batch)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                total += float(value.detach())
                steps += 1
                bar.advance(_batch_size(batch))
        seconds = time.perf_counter() - epoch_started
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            score = float(validate())
        records.append(EpochRecord(epoch, total / max(steps, 1), score, seconds, count))
        if log is not None:
            log(f"{description} epoch {epoch}: loss {records[-1].train_loss:.4f}, validation {score:.4f}, "
                f"{seconds:.0f} s train ({count / max(seconds, 1e-9):.0f} seq/s), "
                f"{time.perf_counter() - epoch_started - seconds:.0f} s validation")
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainingHistory(tuple(records), best_epoch, time.perf_counter() - started,
                           "bfloat16" if use_autocast else "float32")


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0])
