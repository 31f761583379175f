"""What happened while a neural tokenizer trained: loss parts, perplexity and active codes per epoch.

Saved with the model twice: as tensors in ``weights.safetensors`` (so that any loader restores
``tokenizer.history``) and as a readable ``history.json`` beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sidkit.errors import DataError

PREFIX = "history."


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training.

    Attributes:
        epoch: 0-based index.
        train: mean over the epoch's steps of the loss (``"loss"``) and each named loss part.
        validation: mean loss of the held-out items after the epoch; None without a held-out set.
        perplexity: per level, exp(entropy) of the codes the training batches took this epoch
            (empty for a network without codes).
        active: per level, codes taken by at least one training item this epoch.
        seconds: wall time of the epoch, validation included.
    """

    epoch: int
    train: Mapping[str, float]
    validation: float | None
    perplexity: tuple[float, ...]
    active: tuple[int, ...]
    seconds: float

    def summary(self) -> str:
        """One line for a progress bar: loss parts, validation loss, perplexity per level."""
        text = " ".join(f"{name} {value:.4g}" for name, value in self.train.items())
        if self.validation is not None:
            text += f" | val {self.validation:.4g}"
        if self.perplexity:
            text += " | ppl " + "/".join(f"{p:.0f}" for p in self.perplexity)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "train": dict(self.train), "validation": self.validation,
                "perplexity": list(self.perplexity), "active": list(self.active), "seconds": self.seconds}


@dataclass(frozen=True)
class TrainingHistory:
    """All epochs of one training run.

    Attributes:
        epochs: one record per epoch trained.
        best_epoch: the epoch whose weights were kept (lowest validation loss); None when nothing
            was held out (the last epoch's weights are kept).
        stopped_early: True if training stopped before the configured number of epochs.
        precision: dtype of the training steps' MLP GEMMs, "float32" or "bfloat16" (see
            :class:`sidkit.tokenizers.training.TrainConfig`).
    """

    epochs: tuple[EpochRecord, ...]
    best_epoch: int | None
    stopped_early: bool
    precision: str = "float32"

    def __len__(self) -> int:
        return len(self.epochs)

    def series(self, name: str) -> list[float]:
        """A training loss part (for example ``"recon"``) over the epochs."""
        return [record.train[name] for record in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "precision": self.precision,
                "epochs": [record.to_dict() for record in self.epochs]}

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The history as float64/int64 tensors named ``history.*`` (rows are epochs)."""
        names = list(self.epochs[0].train) if self.epochs else []
        levels = len(self.epochs[0].perplexity) if self.epochs else 0
        tensors = {f"{PREFIX}train.{name}": torch.tensor([r.train[name] for r in self.epochs], dtype=torch.float64)
                   for name in names}
        tensors[f"{PREFIX}validation"] = torch.tensor(
            [math.nan if r.validation is None else r.validation for r in self.epochs], dtype=torch.float64)
        tensors[f"{PREFIX}perplexity"] = torch.tensor([list(r.perplexity) for r in self.epochs],
                                                      dtype=torch.float64).reshape(len(self.epochs), levels)
        tensors[f"{PREFIX}active"] = torch.tensor([list(r.active) for r in self.epochs],
                                                  dtype=torch.int64).reshape(len(self.epochs), levels)
        tensors[f"{PREFIX}seconds"] = torch.tensor([r.seconds for r in self.epochs], dtype=torch.float64)
        tensors[f"{PREFIX}best_epoch"] = torch.tensor([-1 if self.best_epoch is None else self.best_epoch])
        tensors[f"{PREFIX}stopped_early"] = torch.tensor([int(self.stopped_early)])
        tensors[f"{PREFIX}bfloat16"] = torch.tensor([int(self.precision == "bfloat16")])
        return tensors

    @staticmethod
    def from_tensors(tensors: Mapping[str, torch.Tensor]) -> TrainingHistory | None:
        """Inverse of :meth:`to_tensors`; None when ``tensors`` hold no history."""
        if f"{PREFIX}seconds" not in tensors:
            return None
        try:
            seconds = tensors[f"{PREFIX}seconds"].tolist()
            validation = tensors[f"{PREFIX}validation"].tolist()
            perplexity = tensors[f"{PREFIX}perplexity"].tolist()
            active = tensors[f"{PREFIX}active"].tolist()
            parts = {key[len(PREFIX) + len("train."):]: tensor.tolist() for key, tensor in tensors.items()
                     if key.startswith(f"{PREFIX}train.")}
            best = int(tensors[f"{PREFIX}best_epoch"][0])
            stopped = bool(tensors[f"{PREFIX}stopped_early"][0])
            low = f"{PREFIX}bfloat16" in tensors and bool(tensors[f"{PREFIX}bfloat16"][0])
            records = tuple(
                EpochRecord(epoch=i, train={name: values[i] for name, values in parts.items()},
                            validation=None if math.isnan(validation[i]) else validation[i],
                            perplexity=tuple(perplexity[i]), active=tuple(int(a) for a in active[i]),
                            seconds=seconds[i])
                for i in range(len(seconds)))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DataError(f"the saved training history is incomplete: {error}", where="weights",
                            fix="save the model again") from error
        return TrainingHistory(records, None if best < 0 else best, stopped,
                               precision="bfloat16" if low else "float32")

    @staticmethod
    def without(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``tensors`` less the history entries."""
        return {key: value for key, value in tensors.items() if not key.startswith(PREFIX)}
