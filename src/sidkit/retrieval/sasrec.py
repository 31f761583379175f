"""SASRec with full softmax cross-entropy: the strong item-id baseline (Klenitskiy & Vasilev 2023).

A causal transformer over the item ids of a user's last H items (learned positions, pre-norm blocks);
the state after each position scores every catalogue item by a dot product with the shared item
embedding table, and training minimizes the cross-entropy of the true next item against the whole
catalogue (no sampled negatives), at every position of windows of H + 1 consecutive items.
Inference ranks the full catalogue from the state after the last history item.

Items held out of training are never a target, so full softmax pushes their scores down as
negatives: SASRec cannot rank a new item above chance, which is what the ``new`` slice shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidkit.errors import ConfigError
from sidkit.progress import Bar
from sidkit.ranking.layers import FastDropout
from sidkit.retrieval.data import Examples, NextItemData, sequence_windows
from sidkit.retrieval.layers import EncoderBlock
from sidkit.retrieval.metrics import recall_at, top_k_items
from sidkit.retrieval.softmax import full_softmax_cross_entropy
from sidkit.retrieval.training import TrainingHistory, resolve_precision, train_with_early_stopping


@dataclass(frozen=True)
class SasrecConfig:
    """Size and training of :class:`Sasrec`.

    Attributes:
        width, heads, layers, hidden, dropout: the transformer (item embeddings are ``width`` wide).
        epochs, patience: the most epochs, and epochs without a better validation Recall@10 before stopping.
            The cap is a guard, not the stopping rule: on ML-1M (about 60 CPU s per epoch at one thread,
            every training target once) validation still rose at epoch 12, so 50 lets patience end training.
        windows_per_user: at most this many windows per user per epoch (None: all, so every training
            target once per epoch).
        batch_size: windows per step. learning_rate, weight_decay: AdamW.
        eval_batch_size: examples scored per batch.
        precision: "auto", "float32" or "bfloat16".
    """

    width: int = 64
    heads: int = 2
    layers: int = 2
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 50
    patience: int = 2
    windows_per_user: int | None = None
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    eval_batch_size: int = 1024
    precision: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        for name in ("width", "heads", "layers", "hidden", "epochs", "patience", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"sasrec {name} must be a positive integer, got {value!r}", where=f"sasrec.{name}")
        if self.width % self.heads:
            raise ConfigError(f"sasrec width {self.width} is not a multiple of heads {self.heads}",
                              where="sasrec.heads")


class SasrecModel(nn.Module):
    """Item embeddings (N + 1 rows, the last for padding), positions, causal blocks."""

    def __init__(self, num_items: int, history: int, config: SasrecConfig) -> None:
        super().__init__()
        self.num_items = num_items
        self.items = nn.Embedding(num_items + 1, config.width, padding_idx=num_items)
        self.positions = nn.Embedding(history, config.width)
        self.blocks = nn.ModuleList(EncoderBlock(config.width, config.heads, config.hidden, config.dropout)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.drop = FastDropout(config.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[num_items].zero_()

    def states(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, T) item rows (``num_items`` = padding, on the left) -> (B, T, W) states."""
        t = rows.shape[1]
        positions = torch.arange(self.positions.num_embeddings - t, self.positions.num_embeddings, device=rows.device)
        x = self.drop(self.items(rows) + self.positions(positions))
        valid = rows != self.num_items
        causal = torch.ones((t, t), dtype=torch.bool, device=rows.device).tril()
        # Keys: earlier and real; a padded query may see itself, so no row is empty (its output is unused).
        mask = (causal & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=rows.device)
        mask = mask.unsqueeze(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """(..., W) -> (..., N) dot products with every item."""
        return F.linear(states, self.items.weight[:self.num_items])

    def loss(self, windows: torch.Tensor, label_start: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of each window's next items (labels before ``label_start`` ignored)."""
        inputs, labels = windows[:, :-1], windows[:, 1:]
        keep = (labels != self.num_items) & (torch.arange(labels.shape[1], device=labels.device)[None, :]
                                             >= label_start[:, None])
        states = self.states(inputs)[keep]
        # = F.cross_entropy(self.scores(states).float(), labels[keep]), fused and chunked (3x faster on CPU).
        return full_softmax_cross_entropy(states, self.items.weight[:self.num_items], labels[keep])


class Sasrec:
    """SASRec retriever (full-catalogue ranking).

    Args:
        config: size and training. seed: initialization, windows and dropout.
        device: torch device. progress: progress bars (None: when stderr is a terminal).
        log: receives one line per epoch.
    """

    def __init__(self, config: SasrecConfig | None = None, *, seed: int = 0, device: str = "cpu",
                 progress: bool | None = None, log: Callable[[str], None] | None = None) -> None:
        self.config = config or SasrecConfig()
        self.config.check()
        self.seed = seed
        self.device = torch.device(device)
        self.progress = progress
        self.log = log
        self.model: SasrecModel | None = None
        self.history_: TrainingHistory | None = None

    @property
    def num_parameters(self) -> int:
        return 0 if self.model is None else sum(p.numel() for p in self.model.parameters())

    def fit(self, data: NextItemData) -> Sasrec:
        """Train on ``data.train`` with early stopping on validation Recall@10; returns self."""
        config = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5A5]))
        self.model = model = SasrecModel(data.num_items, data.history, config).to(self.device)
        self._candidates = torch.from_numpy(data.candidates).to(self.device)
        pad = data.num_items
        windows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def epoch_windows(epoch: int) -> tuple[np.ndarray, np.ndarray]:
            if epoch not in windows:
                windows.clear()
                _, rows, label_start = sequence_windows(data.train, length=data.history + 1, rng=rng,
                                                        per_user=config.windows_per_user)
                windows[epoch] = (np.where(rows < 0, pad, rows), label_start)
            return windows[epoch]

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            rows, label_start = epoch_windows(epoch)
            for start in range(0, len(rows), config.batch_size):
                stop = start + config.batch_size
                yield (torch.from_numpy(rows[start:stop]).to(self.device),
                       torch.from_numpy(label_start[start:stop]).to(self.device))

        def validate() -> float:
            if len(data.valid) == 0:
                return 0.0
            return recall_at(self._recommend(data.valid, 10, progress=False), data.valid.targets, 10)

        self.history_ = train_with_early_stopping(
            model, batches=batches, examples_per_epoch=lambda epoch: len(epoch_windows(epoch)[0]),
            loss=lambda batch: model.loss(*batch), validate=validate, epochs=config.epochs,
            patience=config.patience, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            device=self.device, precision=resolve_precision(config.precision, self.device), description="sasrec",
            progress=self.progress, log=self.log)
        return self

    def recommend(self, examples: Examples, k: int, *, candidates: np.ndarray | None = None) -> np.ndarray:
        """(E, k) catalogue rows, best first, over every candidate the example does not exclude;
        ``candidates`` ((N,) bool) narrows the candidates further (e.g. to the unseen items)."""
        if self.model is None:
            raise ConfigError("sasrec is not trained", where="Sasrec.recommend", fix="call fit(data) first")
        return self._recommend(examples, k, progress=self.progress, candidates=candidates)

    @torch.no_grad()
    def _recommend(self, examples: Examples, k: int, *, progress: bool | None,
                   candidates: np.ndarray | None = None) -> np.ndarray:
        assert self.model is not None
        model = self.model
        model.eval()
        pool = self._candidates
        if candidates is not None:
            pool = pool & torch.from_numpy(np.asarray(candidates, dtype=bool)).to(self.device)
        out = np.full((len(examples), k), -1, dtype=np.int64)
        size = self.config.eval_batch_size
        with Bar("sasrec ranking", len(examples), enabled=progress, rate_unit="users") as bar:
            for start in range(0, len(examples), size):
                part = examples.take(np.arange(start, min(start + size, len(examples))))
                rows = torch.from_numpy(np.where(part.histories < 0, model.num_items, part.histories)).to(self.device)
                scores = model.scores(model.states(rows)[:, -1]).float()
                allowed = pool & ~torch.from_numpy(part.exclusion_mask(model.num_items)).to(self.device)
                out[start:start + len(part)] = top_k_items(scores, allowed, k).cpu().numpy()
                bar.advance(len(part))
        return out
