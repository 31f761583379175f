"""Multi-task rankers composed from ``sidkit.ranking.layers``: DNN, shared-bottom, MMoE and PLE.

Every model takes ``(item (B,), user_features (B, F), history (B, H))`` and returns (B, K) logits,
one sigmoid tower per task in ``model.tasks`` order. Build them with :func:`build_model`; a new
model registers itself with :func:`register_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.layers import (
    ACTIVATIONS,
    MLP,
    Experts,
    ExtractionLevel,
    FeatureBlock,
    Gate,
    ItemEncoder,
    TaskTowers,
    UserEncoder,
    UserPooling,
    mix_experts,
)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a ranker. Each model reads the fields it needs; the rest are ignored.

    Attributes:
        embedding_dim: width of every item and user embedding.
        user_pooling: ``sum`` (one user field) or ``concat`` (F fields; pass ``num_user_fields``).
        history_product: add the candidate * mean-history field to the input.
        hidden_dims: the DNN's per-task MLP, and the shared bottom of ``shared-bottom``.
        expert_dims: layer sizes of every MMoE / PLE expert.
        tower_dims: hidden layers of each task tower (a final layer to one logit follows).
        num_experts: MMoE experts.
        task_experts: PLE experts per task and level.
        shared_experts: PLE shared experts per level.
        levels: PLE extraction levels.
        dropout: dropout after each hidden layer.
        activation: hidden activation (``relu``, ``gelu``, ``silu``, ``tanh``, ``prelu``).
        batch_norm: batch normalization after each hidden linear layer (as torch-rechub's MLP).
        init_std: standard deviation of the initial embeddings; small, so that rows no impression
            trains (the hashed ids of new items) stay near zero instead of adding noise.
        seed: seeds the parameter initialization in :func:`build_model`.
    """

    embedding_dim: int = 32
    user_pooling: UserPooling = "sum"
    history_product: bool = True
    hidden_dims: tuple[int, ...] = (256, 128)
    expert_dims: tuple[int, ...] = (128, 64)
    tower_dims: tuple[int, ...] = (64,)
    num_experts: int = 8
    task_experts: int = 3
    shared_experts: int = 2
    levels: int = 2
    dropout: float = 0.1
    activation: str = "relu"
    batch_norm: bool = False
    init_std: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_dims", "expert_dims", "tower_dims"):
            dims = tuple(int(d) for d in getattr(self, name))
            if (not dims and name != "tower_dims") or any(d <= 0 for d in dims):
                raise ConfigError(f"{name} must be positive layer sizes, got {getattr(self, name)}",
                                  where=f"ModelConfig.{name}", fix="e.g. (128, 64)")
            object.__setattr__(self, name, dims)
        for name in ("embedding_dim", "num_experts", "task_experts", "shared_experts", "levels"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}",
                                  where=f"ModelConfig.{name}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}", where="ModelConfig.dropout")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}", where="ModelConfig.activation",
                              fix=f"use one of {', '.join(sorted(ACTIVATIONS))}")
        if self.user_pooling not in ("sum", "concat"):
            raise ConfigError(f"unknown user pooling {self.user_pooling!r}", where="ModelConfig.user_pooling",
                              fix="use 'sum' or 'concat'")
        if self.init_std <= 0:
            raise ConfigError(f"init_std must be positive, got {self.init_std}", where="ModelConfig.init_std")


class MultiTaskRanker(nn.Module):
    """Base of the rankers: a feature block, task names, and the last forward's gate weights.

    Attributes:
        features: the shared input layer (item encoder used for candidate and history).
        tasks: task names, the column order of the logits.
        last_gates: gate name -> (B, E) softmax weights of the last forward, detached; empty for
            models without gates. MMoE names gates by task; PLE by ``level{l}/{task}`` and
            ``level{l}/shared``.
    """

    def __init__(self, features: FeatureBlock, tasks: Sequence[str]) -> None:
        super().__init__()
        tasks = tuple(tasks)
        if not tasks:
            raise ConfigError("a ranker needs at least one task", where="tasks", fix='e.g. ("click",)')
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"task names repeat: {tasks}", where="tasks", fix="give each task one name")
        self.features = features
        self.tasks = tasks
        self.last_gates: dict[str, torch.Tensor] = {}

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """item (B,), user_features (B, F), history (B, H) int64 -> (B, K) logits."""
        raise NotImplementedError


class DNN(MultiTaskRanker):
    """One independent MLP tower per task over the shared features (a single-task DNN when K = 1)."""

    def __init__(self, features: FeatureBlock, tasks: Sequence[str], config: ModelConfig) -> None:
        super().__init__(features, tasks)
        self.towers = TaskTowers(features.output_dim, self.num_tasks, config.hidden_dims, config.dropout,
                                 config.activation, config.batch_norm)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.towers(self.features(item, user_features, history))


class SharedBottom(MultiTaskRanker):
    """A shared MLP bottom, then one tower per task."""

    def __init__(self, features: FeatureBlock, tasks: Sequence[str], config: ModelConfig) -> None:
        super().__init__(features, tasks)
        self.bottom = MLP(features.output_dim, config.hidden_dims, config.dropout, config.activation,
                          config.batch_norm)
        self.towers = TaskTowers(self.bottom.output_dim, self.num_tasks, config.tower_dims, config.dropout,
                                 config.activation, config.batch_norm)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.towers(self.bottom(self.features(item, user_features, history)))


class MMoE(MultiTaskRanker):
    """Multi-gate mixture of experts: y_k = h_k(sum_i g_k(x)_i f_i(x)), g_k = softmax(W_k x)."""

    def __init__(self, features: FeatureBlock, tasks: Sequence[str], config: ModelConfig) -> None:
        super().__init__(features, tasks)
        width = features.output_dim
        self.experts = Experts(width, config.num_experts, config.expert_dims, config.dropout, config.activation,
                               config.batch_norm)
        self.gates = nn.ModuleList(Gate(width, config.num_experts) for _ in self.tasks)
        self.towers = TaskTowers(self.experts.output_dim, self.num_tasks, config.tower_dims, config.dropout,
                                 config.activation, config.batch_norm)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = self.features(item, user_features, history)
        experts = self.experts(x)  # (B, E, D)
        gates = [gate(x) for gate in self.gates]  # K x (B, E)
        self.last_gates = {task: g.detach() for task, g in zip(self.tasks, gates, strict=True)}
        return self.towers([mix_experts(g, experts) for g in gates])


class PLE(MultiTaskRanker):
    """Progressive layered extraction: ``levels`` extraction levels of task and shared experts, then towers."""

    def __init__(self, features: FeatureBlock, tasks: Sequence[str], config: ModelConfig) -> None:
        super().__init__(features, tasks)
        levels = []
        width = features.output_dim
        for level in range(config.levels):
            levels.append(ExtractionLevel(width, self.num_tasks, config.task_experts, config.shared_experts,
                                          config.expert_dims, config.dropout, config.activation, config.batch_norm,
                                          last=level == config.levels - 1))
            width = levels[-1].output_dim
        self.levels = nn.ModuleList(levels)
        self.towers = TaskTowers(width, self.num_tasks, config.tower_dims, config.dropout, config.activation,
                                 config.batch_norm)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = self.features(item, user_features, history)
        task_inputs: list[torch.Tensor] = [x] * self.num_tasks
        shared_input: torch.Tensor | None = x
        gates: dict[str, torch.Tensor] = {}
        for index, level in enumerate(self.levels):
            assert shared_input is not None  # only the last level drops the shared path
            task_inputs, shared_input, task_gates, shared_gate = level(task_inputs, shared_input)
            gates.update({f"level{index}/{task}": g.detach() for task, g in zip(self.tasks, task_gates, strict=True)})
            if shared_gate is not None:
                gates[f"level{index}/shared"] = shared_gate.detach()
        self.last_gates = gates
        return self.towers(task_inputs)


ModelBuilder = Callable[[FeatureBlock, tuple[str, ...], ModelConfig], MultiTaskRanker]

_MODELS: dict[str, ModelBuilder] = {
    "dnn": DNN,
    "shared-bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
}


def register_model(name: str, builder: ModelBuilder) -> None:
    """Make ``build_model(name, ...)`` call ``builder(features, tasks, config)``."""
    if name in _MODELS:
        raise ConfigError(f"a model named {name!r} is already registered", where="register_model",
                          fix="choose another name")
    _MODELS[name] = builder


def model_names() -> tuple[str, ...]:
    """Names :func:`build_model` accepts."""
    return tuple(_MODELS)


def build_model(name: str, representation: ItemRepresentation, num_user_embeddings: int, tasks: Sequence[str],
                config: ModelConfig | None = None, *, num_user_fields: int = 1) -> MultiTaskRanker:
    """A ranker by name (``dnn``, ``shared-bottom``, ``mmoe``, ``ple``), initialized from ``config.seed``.

    Args:
        name: the model name.
        representation: the items' token bags; the one item encoder serves candidate and history.
        num_user_embeddings: rows of the user table (``RankingData.num_user_embeddings``).
        tasks: task names, the order of the logits (``RankingData.tasks``).
        config: architecture; defaults to ``ModelConfig()``.
        num_user_fields: user_features columns, needed when ``config.user_pooling == "concat"``.
    """
    builder = _MODELS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}", where="build_model(name)",
                          fix=f"use one of {', '.join(model_names())}")
    config = config or ModelConfig()
    # A private RNG stream: the same seed gives the same weights whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        items = ItemEncoder(representation, config.embedding_dim, init_std=config.init_std)
        users = UserEncoder(num_user_embeddings, config.embedding_dim, num_user_fields, config.user_pooling,
                            init_std=config.init_std)
        features = FeatureBlock(items, users, history_product=config.history_product)
        return builder(features, tuple(tasks), config)

from sidkit.ranking import dtn as _dtn  # noqa: E402, F401  registers "dtn"; last, as dtn imports this module
