"""What the neural tokenizers share: architecture and training settings, weights, history, saving.

A neural tokenizer owns one torch module (``self.net``) whose ``state_dict`` is its weights; this
base adds the training history to the saved tensors and writes ``history.json`` beside them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sidkit.checks import check_int
from sidkit.errors import ConfigError, DataError
from sidkit.io import write_json
from sidkit.tokenizers.base import DEFAULT_BATCH_SIZE, Tokenizer, check_embeddings
from sidkit.tokenizers.history import TrainingHistory
from sidkit.tokenizers.rq_kmeans import _level_sizes, codebook_size_json, codebook_size_param
from sidkit.tokenizers.training import TrainConfig

HISTORY_FILE = "history.json"
NET_PREFIX = "net."


class NeuralTokenizer(Tokenizer):
    """Base of RQVAE, RQPVAE and DRQVAE: an MLP encoder D -> hidden_dims -> latent_dim, a mirrored decoder.

    Args:
        levels, codebook_size: L levels of K codes (one int, or one per level).
        latent_dim: Q, the dimension of the latent (quantization) space.
        hidden_dims: widths of the encoder's hidden layers; the decoder mirrors them.
        epochs, batch_size, learning_rate, weight_decay, validation_share, patience, bfloat16:
            training, see :class:`sidkit.tokenizers.training.TrainConfig`.
        progress: show a progress bar (None: when stderr is a terminal; elsewhere a log line per
            epoch group, see :mod:`sidkit.progress`).
        seed: random seed of initialization, the validation split and the data order.

    Subclasses spell all of these out in their own signatures (no ``**options``), so that
    ``help()``, completion and ``get_params`` show every setting.
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *, latent_dim: int = 32,
                 hidden_dims: Sequence[int] = (512, 256, 128), epochs: int = 100, batch_size: int = 256,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, validation_share: float = 0.1,
                 patience: int | None = 10, bfloat16: bool | None = None, progress: bool | None = None,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self._sizes = _level_sizes(levels, codebook_size)
        self.codebook_size = codebook_size_param(codebook_size)
        self.latent_dim = _positive_int(latent_dim, "latent_dim")
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
            raise ConfigError(f"hidden_dims must be a list of layer widths, got {hidden_dims!r}", where="hidden_dims",
                              fix="pass e.g. (512, 256, 128)")
        self.hidden_dims = tuple(_positive_int(width, "hidden_dims") for width in hidden_dims)
        self.train_config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                        weight_decay=weight_decay, validation_share=validation_share,
                                        patience=patience, bfloat16=bfloat16)
        self.progress = progress
        self.net: nn.Module | None = None
        self.history: TrainingHistory | None = None
        """Per-epoch losses, perplexity and active codes of the last ``fit`` (kept by save/load)."""

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def get_config(self) -> dict[str, Any]:
        c = self.train_config
        return {"levels": len(self._sizes), "codebook_size": codebook_size_json(self.codebook_size),
                "latent_dim": self.latent_dim, "hidden_dims": list(self.hidden_dims), "epochs": c.epochs,
                "batch_size": c.batch_size, "learning_rate": c.learning_rate, "weight_decay": c.weight_decay,
                "validation_share": c.validation_share, "patience": c.patience, "bfloat16": c.bfloat16,
                "progress": self.progress, "seed": self.seed}

    def latent(self, X: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The (N, Q) float32 latent vectors that level 0 quantizes, for (N, D) embeddings ``X``.

        RQ-VAE and RQP-VAE: the encoder output; DRQ-VAE: the VAE's latent mean. The analytic overlap
        diagnostics measure codeword geometry in this space.
        """
        dim = self._check_fitted()
        x = check_embeddings(X, where="latent(X)", expected_dim=dim)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                batch = torch.from_numpy(np.array(x[start:start + batch_size], dtype=np.float32)).to(self.device)
                parts.append(self._latent_batch(batch).float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)

    @abstractmethod
    def _latent_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) input -> (B, Q) latent vectors that level 0 quantizes."""

    @abstractmethod
    def _build_net(self, dim: int) -> nn.Module:
        """A fresh (untrained) network for D = ``dim`` inputs, on the CPU."""

    def _new_net(self, dim: int, *, device: torch.device, seed: int) -> nn.Module:
        """A freshly initialized network on ``device``; its weights depend on ``seed`` alone."""
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(seed)
            net = self._build_net(dim)
        return net.to(device)

    def _trained_net(self) -> nn.Module:
        if self.net is None:
            self._check_fitted()
            raise AssertionError("fitted tokenizer without a network")
        return self.net

    def _state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {NET_PREFIX + name: value for name, value in self._trained_net().state_dict().items()}
        if self.history is not None:
            tensors.update(self.history.to_tensors())
        return tensors

    def _load_state_dict(self, tensors: Mapping[str, torch.Tensor], *, dim: int) -> None:
        device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
        net = self._build_net(dim).to(device)
        state = {name[len(NET_PREFIX):]: value for name, value in tensors.items() if name.startswith(NET_PREFIX)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise DataError(f"the saved weights do not fit a {type(self).__name__} with this config: "
                            f"{str(error)[:500]}", where="weights", fix="save the model again") from error
        net.train(False)
        self.net = net
        self.history = TrainingHistory.from_tensors(tensors)

    def _save_extra(self, directory: Path) -> None:
        """Beside the weights: ``history.json``, the training history in readable form."""
        if self.history is not None:
            write_json(directory / HISTORY_FILE, self.history.to_dict())

    def _training_tensor(self, x: np.ndarray, device: torch.device) -> torch.Tensor:
        """The (N, D) training data as float32 on ``device`` (a copy: training holds it in memory)."""
        return torch.tensor(np.asarray(x, dtype=np.float32), device=device)


@torch.no_grad()
def training_mean(data: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(D,) float32 mean of the (N, D) ``data`` over ``rows`` (CPU int64), summed in chunks in float64."""
    total = torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
    for chunk in rows.split(65_536):
        total += data[chunk.to(data.device)].double().sum(0)
    return (total / max(len(rows), 1)).float()


def _positive_int(value: Any, name: str) -> int:
    return check_int(value, where=name)
