"""Capacity-matched rankers: widen (or narrow) a model until it has another model's parameter count.

A comparison of two architectures at their default sizes mixes the architecture with its capacity
(DTN has about four times MMoE's parameters on ML-100K). :func:`match_capacity` scales one model's
MLP layer sizes by a common factor, the first layer taking every width from 1 up, and keeps the
width whose whole model (embedding tables included, which both models share) has the parameter
count closest to a target:

- ``mmoe`` / ``ple``: ``ModelConfig.expert_dims`` (the default (128, 64) becomes (h, h/2));
- ``dnn`` / ``shared-bottom``: ``ModelConfig.hidden_dims``.

Towers, gates and embeddings keep their sizes. ``RankSettings(match_params="dtn")`` (``sidkit rank
--match-params dtn``) does this for every run, on that run's own representation and data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.models import ModelConfig, build_model

#: The ModelConfig field each model's width lives in.
WIDTH_FIELDS = {"mmoe": "expert_dims", "ple": "expert_dims", "dnn": "hidden_dims", "shared-bottom": "hidden_dims"}
_MAX_WIDTH = 1 << 15


@dataclass(frozen=True)
class CapacityMatch:
    """The result of :func:`match_capacity`.

    Attributes:
        model: the model name that was resized.
        config: its ModelConfig with the resized layers.
        field: the ModelConfig field that changed (``expert_dims`` or ``hidden_dims``).
        dims: the new layer sizes (``config.<field>``).
        params: the resized model's parameter count.
        target: the parameter count asked for.
    """

    model: str
    config: ModelConfig
    field: str
    dims: tuple[int, ...]
    params: int
    target: int

    @property
    def relative_gap(self) -> float:
        """(params - target) / target: how far the match is, as a share of the target."""
        return (self.params - self.target) / self.target


def parameter_count(model: nn.Module) -> int:
    """Every parameter of ``model``, embedding tables included."""
    return sum(p.numel() for p in model.parameters())


def model_parameters(name: str, representation: ItemRepresentation, num_user_embeddings: int, tasks: Sequence[str],
                     config: ModelConfig, *, num_user_fields: int = 1) -> int:
    """The parameter count of ``build_model(name, ...)`` with these arguments."""
    return parameter_count(build_model(name, representation, num_user_embeddings, tasks, config,
                                       num_user_fields=num_user_fields))


def scaled_dims(dims: Sequence[int], width: int) -> tuple[int, ...]:
    """``dims`` scaled so that the first layer is ``width`` wide, the others in proportion (at least 1)."""
    first = dims[0]
    return tuple(max(1, round(d * width / first)) for d in dims)


def match_capacity(name: str, representation: ItemRepresentation, num_user_embeddings: int, tasks: Sequence[str],
                   config: ModelConfig, target: int, *, num_user_fields: int = 1) -> CapacityMatch:
    """Resize ``name``'s MLP layers (see the module docstring) so that the whole model has about ``target``
    parameters, the other arguments as for :func:`sidkit.ranking.models.build_model`.

    The count grows with the first layer's width h, so doubling h and then bisecting finds the last
    width at or below the target and the first above it; the closer of the two is returned. The match is as close
    as one unit of h allows (for MMoE on ML-100K near DTN's size, a few thousand of about 2M).

    Raises:
        ConfigError: a model without a resizable MLP, or a target below the model at width 1 (its
            embeddings alone are larger) or above it at width 32,768.
    """
    field = WIDTH_FIELDS.get(name)
    if field is None:
        raise ConfigError(f"cannot resize {name!r} to a parameter count", where="match_params",
                          fix=f"resize one of {', '.join(WIDTH_FIELDS)} (match them to another model's count)")
    base = tuple(getattr(config, field))

    def resized(width: int) -> ModelConfig:
        dims = scaled_dims(base, width)
        return replace(config, expert_dims=dims) if field == "expert_dims" else replace(config, hidden_dims=dims)

    def count(width: int) -> int:
        return model_parameters(name, representation, num_user_embeddings, tasks, resized(width),
                                num_user_fields=num_user_fields)

    low, low_count = 1, count(1)
    if target < low_count:
        raise ConfigError(f"{name} cannot have {target:,} parameters: it has {low_count:,} at width 1",
                          where="match_params", fix="match to a larger model")
    high, high_count = max(2, base[0]), count(max(2, base[0]))
    while high_count < target:  # doubling: never builds a model much larger than the target
        if high >= _MAX_WIDTH:
            raise ConfigError(f"{name} cannot have {target:,} parameters: it has {high_count:,} at width {high:,}",
                              where="match_params", fix="match to a smaller model")
        low, low_count = high, high_count
        high = min(2 * high, _MAX_WIDTH)
        high_count = count(high)
    while high - low > 1:  # invariant: count(low) <= target <= count(high)
        middle = (low + high) // 2
        middle_count = count(middle)
        if middle_count <= target:
            low, low_count = middle, middle_count
        else:
            high, high_count = middle, middle_count
    width, params = (low, low_count) if target - low_count <= high_count - target else (high, high_count)
    return CapacityMatch(name, resized(width), field, scaled_dims(base, width), params, int(target))
