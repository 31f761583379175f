"""Building blocks of the rankers: item and user encoders, the feature block, MLPs, experts and gates.

Models in ``sidkit.ranking.models`` are compositions of these layers. Shapes use B for the batch,
H for the history length, T for the tokens per item, F for the user fields, E for experts, K for tasks.

The one item encoder serves the candidate and every history item, so a Semantic-ID token learned
from one item's impressions also moves every item (new ones included) that shares the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidkit.errors import ConfigError
from sidkit.features.types import PAD_TOKEN, ItemRepresentation

UserPooling = Literal["sum", "concat"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "prelu": nn.PReLU,
}


def _check_positive(value: int, name: str, where: str) -> None:
    if int(value) <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value}", where=where)


def bag_sum(tokens: torch.Tensor, weight: torch.Tensor, pad: int = PAD_TOKEN) -> torch.Tensor:
    """(R, L) table rows -> (R, dim): per row, the sum of ``weight`` rows over its non-``pad`` entries.

    Padding entries are dropped before the lookup (one bag per row, given by offsets) rather than
    passed as ``padding_idx``: that skips their work, keeps the padding row's gradient at zero,
    and measured about 1.5x faster than ``embedding_bag(..., padding_idx=0)``, forward plus backward.
    """
    flat = tokens.reshape(-1)
    keep = flat != pad
    offsets = torch.zeros(tokens.shape[0] + 1, dtype=torch.long, device=tokens.device)
    torch.cumsum(keep.view(tokens.shape).sum(dim=1), dim=0, out=offsets[1:])
    return F.embedding_bag(flat[keep], weight, offsets, mode="sum", include_last_offset=True)


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """A fresh activation module by name (``relu``, ``gelu``, ``silu``, ``tanh``, ``prelu``).

    ``inplace`` applies to ReLU only; use it where the input is a fresh layer output that no
    backward needs (after Linear or BatchNorm), which saves one allocation per layer.
    """
    if name == "relu" and inplace:
        return nn.ReLU(inplace=True)
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}", where="activation",
                          fix=f"use one of {', '.join(sorted(ACTIVATIONS))}") from None


class ItemEncoder(nn.Module):
    """Embeds items as the sum of their tokens' embeddings (plus a projection of dense content).

    The token table is a non-persistent buffer: it is data, rebuilt from the representation, so
    state dicts (and best-weight snapshots during training) hold only learned weights.

    Args:
        representation: the items' token bags (row N = padding item) and optional dense vectors.
        dim: embedding dimension.
        init_std: standard deviation of the initial token embeddings.
    """

    tokens: torch.Tensor
    dense: torch.Tensor | None

    def __init__(self, representation: ItemRepresentation, dim: int, init_std: float = 0.05) -> None:
        super().__init__()
        _check_positive(dim, "embedding dim", "ItemEncoder")
        self.dim = int(dim)
        self.num_items = representation.num_items
        self.pad_item = representation.pad_item
        self.register_buffer("tokens", torch.from_numpy(representation.tokens.copy()), persistent=False)
        self.embedding = nn.Embedding(representation.num_embeddings, self.dim, padding_idx=PAD_TOKEN)
        nn.init.normal_(self.embedding.weight, std=init_std)
        with torch.no_grad():
            self.embedding.weight[PAD_TOKEN].zero_()
        self.dense_projection: nn.Linear | None = None
        dense = None if representation.dense is None else torch.from_numpy(representation.dense.copy())
        self.register_buffer("dense", dense, persistent=False)
        if dense is not None:
            self.dense_projection = nn.Linear(dense.shape[1], self.dim)

    def _token_sum(self, tokens: torch.Tensor) -> torch.Tensor:
        """(R, L) token rows -> (R, dim) sums; padding tokens are skipped."""
        return bag_sum(tokens, self.embedding.weight)

    def forward(self, item_index: torch.Tensor) -> torch.Tensor:
        """(B,) or (B, H) int64 item rows -> (B, dim) or (B, H, dim) item embeddings.

        The padding item embeds to zero tokens (plus the dense projection's bias when dense content
        is used): pool histories with :meth:`mean_history`, which masks padding items out.
        """
        tokens = self.tokens[item_index]  # (..., T)
        out = self._token_sum(tokens.reshape(-1, tokens.shape[-1])).view(*item_index.shape, self.dim)
        if self.dense_projection is not None:
            assert self.dense is not None
            out = out + self.dense_projection(self.dense[item_index])
        return out

    def mean_history(self, history: torch.Tensor) -> torch.Tensor:
        """(B, H) int64 item rows padded with the padding item -> (B, dim) mean over real items.

        Equal to the masked mean of ``forward(history)`` over non-padding items (zero for an empty
        history), computed as one bag of all H * T tokens: the padding item holds only padding
        tokens, so it adds nothing, and the (B, H, T, dim) tensor is never built.
        """
        batch = history.shape[0]
        real = history != self.pad_item  # (B, H)
        count = real.sum(dim=1, keepdim=True)  # (B, 1)
        scale = 1.0 / count.clamp(min=1).to(self.embedding.weight.dtype)
        tokens = self.tokens[history].reshape(batch, -1)  # (B, H * T)
        pooled = self._token_sum(tokens) * scale
        if self.dense_projection is not None:
            assert self.dense is not None
            # The projection is affine: the mean of projections is the projection of the mean,
            # except that an empty history must stay zero (no bias).
            dense_mean = (self.dense[history] * real.unsqueeze(-1)).sum(dim=1) * scale
            pooled = pooled + self.dense_projection(dense_mean) * (count > 0)
        return pooled


class UserEncoder(nn.Module):
    """Embeds the user's F fields from one shared table (row 0 = padding, fixed at zero).

    Args:
        num_embeddings: rows of the user table, padding row 0 included.
        dim: embedding dimension.
        num_fields: F, the user-feature columns (needed for ``concat``, and by MemoNet's discrete fields).
        pooling: ``sum`` -> (B, dim); ``concat`` -> (B, F * dim), keeping which field is which.
        init_std: standard deviation of the initial embeddings.
    """

    def __init__(self, num_embeddings: int, dim: int, num_fields: int = 1, pooling: UserPooling = "sum",
                 init_std: float = 0.05) -> None:
        super().__init__()
        _check_positive(num_embeddings, "num_user_embeddings", "UserEncoder")
        _check_positive(dim, "embedding dim", "UserEncoder")
        _check_positive(num_fields, "num_user_fields", "UserEncoder")
        if pooling not in ("sum", "concat"):
            raise ConfigError(f"unknown user pooling {pooling!r}", where="UserEncoder", fix="use 'sum' or 'concat'")
        self.dim = int(dim)
        self.num_fields = int(num_fields)
        self.pooling = pooling
        self.embedding = nn.Embedding(num_embeddings, self.dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    @property
    def num_outputs(self) -> int:
        """Fields of width ``dim`` that :meth:`fields` returns."""
        return self.num_fields if self.pooling == "concat" else 1

    def fields(self, user_features: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 -> (B, num_outputs, dim)."""
        if self.pooling == "sum":
            return bag_sum(user_features, self.embedding.weight, pad=0).unsqueeze(1)
        if user_features.shape[1] != self.num_fields:
            raise ConfigError(f"user_features has {user_features.shape[1]} columns, the encoder {self.num_fields}",
                              where="UserEncoder(pooling='concat')",
                              fix="build the model with num_user_fields equal to the data's user_features columns")
        return self.embedding(user_features)

    def forward(self, user_features: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 -> (B, num_outputs * dim)."""
        return self.fields(user_features).flatten(1)


class FeatureBlock(nn.Module):
    """The ranker input: concat[user, candidate, mean history, candidate * mean history].

    Every field has width ``dim``, so models that want fields apart (feature-interaction modules)
    can call :meth:`fields`; ``forward`` is its flattened form.

    Args:
        item_encoder: shared by the candidate and the history.
        user_encoder: embeds the user fields.
        history_product: include the candidate * mean-history field (the explicit interaction).
    """

    def __init__(self, item_encoder: ItemEncoder, user_encoder: UserEncoder, history_product: bool = True) -> None:
        super().__init__()
        if item_encoder.dim != user_encoder.dim:
            raise ConfigError(f"item dim {item_encoder.dim} differs from user dim {user_encoder.dim}",
                              where="FeatureBlock", fix="build both encoders with the same dim")
        self.items = item_encoder
        self.users = user_encoder
        self.history_product = history_product
        self.dim = item_encoder.dim
        self.num_fields = user_encoder.num_outputs + (3 if history_product else 2)
        self.output_dim = self.num_fields * self.dim

    def fields(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """item (B,), user_features (B, F), history (B, H) -> (B, num_fields, dim)."""
        candidate = self.items(item)
        pooled = self.items.mean_history(history)
        parts = [self.users.fields(user_features), candidate.unsqueeze(1), pooled.unsqueeze(1)]
        if self.history_product:
            parts.append((candidate * pooled).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """item (B,), user_features (B, F), history (B, H) -> (B, output_dim)."""
        return self.fields(item, user_features, history).flatten(1)

    def num_discrete_fields(self, num_user_fields: int, history_items: int = 1) -> int:
        """V, the discrete fields of :meth:`discrete_fields` for ``num_user_fields`` user columns."""
        return int(num_user_fields) + self.items.tokens.shape[1] * (1 + int(history_items))

    def discrete_fields(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor, *,
                        history_items: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The impression as discrete feature values and their embeddings, for memories of value crosses.

        Fields: each user-feature column, each token slot of the candidate (its hashed id, or each
        Semantic-ID prefix / level), and each token slot of the ``history_items`` latest history items.
        Values are table rows (0 = padding: no value).

        Returns:
            values (B, V) int64 and embeddings (B, V, dim) from the user and item tables.
        """
        candidate = self.items.tokens[item]  # (B, T)
        recent = self.items.tokens[history[:, :history_items]].flatten(1)  # (B, history_items * T)
        item_values = torch.cat([candidate, recent], dim=1)
        values = torch.cat([user_features, item_values], dim=1)
        embeddings = torch.cat([self.users.embedding(user_features), self.items.embedding(item_values)], dim=1)
        return values, embeddings


class FastDropout(nn.Module):
    """Dropout whose CPU mask comes from numpy's PCG64 bits instead of torch's bernoulli_.

    On CPU, ``torch.bernoulli_`` (mt19937) took about a third of an MMoE training step; 16 random bits
    per element from numpy, compared with a threshold, give the same mask distribution (drop
    probability ``p`` rounded to a multiple of 2^-16) several times faster. The bit generator is seeded
    lazily from torch's global RNG at the first training forward, so ``torch.manual_seed`` still
    fixes the masks. Off CPU it is ``torch.nn.functional.dropout``. Identity in eval mode.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {p}", where="FastDropout")
        self.p = float(p)
        self._threshold = round(self.p * 65536) - 32768
        self._bits: np.random.PCG64 | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        if self._bits is None:
            self._bits = np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item()))
        # Raw 64-bit draws viewed as four int16 each: several times faster than Generator.bytes.
        bits = self._bits.random_raw(-(-x.numel() // 4)).view(np.int16)[:x.numel()]
        mask = (bits >= self._threshold).astype(np.float32)
        mask *= 1.0 / (1.0 - self.p)
        return x * torch.from_numpy(mask).view(x.shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation -> [Dropout], once per entry of ``dims``.

    (B, input_dim) -> (B, output_dim), output_dim = dims[-1] (input_dim when dims is empty).
    """

    def __init__(self, input_dim: int, dims: Sequence[int], dropout: float = 0.0, activation: str = "relu",
                 batch_norm: bool = False) -> None:
        super().__init__()
        _check_positive(input_dim, "input_dim", "MLP")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {dropout}", where="MLP")
        layers: list[nn.Module] = []
        width = int(input_dim)
        for size in dims:
            _check_positive(size, "layer size", "MLP dims")
            layers.append(nn.Linear(width, int(size)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(make_activation(activation, inplace=True))  # acts on the Linear / BN output
            if dropout > 0:
                layers.append(FastDropout(dropout))
            width = int(size)
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Experts(nn.Module):
    """E expert MLPs of the same shape over one input: (B, input_dim) -> (B, E, output_dim)."""

    # One MLP per expert, run in turn: a fused version (one (in, E * width) product, then batched
    # products) measured slower on CPU, forward plus backward, at batch 2048.

    def __init__(self, input_dim: int, num_experts: int, dims: Sequence[int], dropout: float = 0.0,
                 activation: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        _check_positive(num_experts, "number of experts", "Experts")
        if not dims:
            raise ConfigError("experts need at least one layer", where="expert dims", fix="e.g. (128, 64)")
        self.experts = nn.ModuleList(MLP(input_dim, dims, dropout, activation, batch_norm)
                                     for _ in range(num_experts))
        self.num_experts = int(num_experts)
        self.output_dim = int(dims[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)


class Gate(nn.Module):
    """A softmax gate: (B, input_dim) -> (B, E) non-negative weights that sum to 1 per row."""

    def __init__(self, input_dim: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)


def mix_experts(gate: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """gate (B, E), expert outputs (B, E, D) -> (B, D), the gate-weighted sum of the experts."""
    # Elementwise, not bmm: B products of (1, E) x (E, D) are far slower on CPU.
    return (gate.unsqueeze(-1) * experts).sum(dim=1)


class TaskTowers(nn.Module):
    """One tower per task, each an MLP ending in one logit (the sigmoid is applied by the loss / predict).

    ``forward`` takes one shared input (B, D) or one input per task, and returns (B, K) logits in
    task order.
    """

    def __init__(self, input_dim: int, num_tasks: int, dims: Sequence[int], dropout: float = 0.0,
                 activation: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        _check_positive(num_tasks, "number of tasks", "TaskTowers")
        self.towers = nn.ModuleList(
            nn.Sequential(mlp := MLP(input_dim, dims, dropout, activation, batch_norm), nn.Linear(mlp.output_dim, 1))
            for _ in range(num_tasks))

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs] * len(self.towers)
        return torch.cat([tower(x) for tower, x in zip(self.towers, inputs, strict=True)], dim=1)


class ExtractionLevel(nn.Module):
    """One PLE level (a customized gate control unit): task experts, shared experts and their gates.

    Each task's gate mixes its own experts and the shared experts; unless this is the last level, a
    shared gate mixes every expert to feed the next level's shared path.

    Args:
        input_dim: width of every input (task and shared paths).
        num_tasks: K.
        task_experts: experts per task.
        shared_experts: shared experts.
        dims: expert MLP layer sizes.
        last: the last level has no shared gate.
    """

    def __init__(self, input_dim: int, num_tasks: int, task_experts: int, shared_experts: int,
                 dims: Sequence[int], dropout: float = 0.0, activation: str = "relu", batch_norm: bool = False,
                 last: bool = False) -> None:
        super().__init__()
        self.task_experts = nn.ModuleList(Experts(input_dim, task_experts, dims, dropout, activation, batch_norm)
                                          for _ in range(num_tasks))
        self.shared_experts = Experts(input_dim, shared_experts, dims, dropout, activation, batch_norm)
        self.task_gates = nn.ModuleList(Gate(input_dim, task_experts + shared_experts) for _ in range(num_tasks))
        self.shared_gate = None if last else Gate(input_dim, num_tasks * task_experts + shared_experts)
        self.output_dim = self.shared_experts.output_dim

    def forward(self, task_inputs: Sequence[torch.Tensor], shared_input: torch.Tensor
                ) -> tuple[list[torch.Tensor], torch.Tensor | None, list[torch.Tensor], torch.Tensor | None]:
        """K task inputs and the shared input, each (B, input_dim) ->

        (K task outputs (B, output_dim), shared output (B, output_dim) or None at the last level,
        K task gates (B, task_experts + shared_experts), shared gate (B, all experts) or None).
        """
        shared = self.shared_experts(shared_input)  # (B, S, D)
        own = [experts(x) for experts, x in zip(self.task_experts, task_inputs, strict=True)]  # K x (B, E, D)
        task_gates = [gate(x) for gate, x in zip(self.task_gates, task_inputs, strict=True)]
        task_outputs = [mix_experts(g, torch.cat([mine, shared], dim=1))
                        for g, mine in zip(task_gates, own, strict=True)]
        if self.shared_gate is None:
            return task_outputs, None, task_gates, None
        shared_gate = self.shared_gate(shared_input)
        shared_output = mix_experts(shared_gate, torch.cat([*own, shared], dim=1))
        return task_outputs, shared_output, task_gates, shared_gate
