"""Per-task permutation importance of the ranker's input fields, and its heatmap.

The importance of a field for a task is the drop in that task's AUC when the field's values are
permuted across the rows of a (validation) split: the field keeps its distribution but loses its
link to the labels and to the other fields. Fields are the user-feature columns, the candidate item
and the history (whole rows, so a user's history stays one history). A field the model ignores, or
that carries no signal, scores about 0; a negative score is noise of that size.

DTN's observation (Bi et al.) is that one field's importance differs across tasks; the heatmap shows
fields x tasks so that divergence is visible at a glance. :func:`importance_across_runs` puts the
runs of several seeds together: the mean drop with a 95% t interval over seeds (each seed's drop is
the mean of its repeats), so that a difference between tasks can be told from noise.

What the protocol fixes: with sampled negatives every user has exactly ``1 / (1 + negatives)`` click
rate, so no user field can predict click on its own; it can matter for click only through its
interaction with the candidate and the history. Conditional tasks (``like|click``: the like head on
clicked impressions) have no such constraint, and real impressions (synthetic data) none either.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sidkit.errors import ConfigError, DataError
from sidkit.ranking.metrics import MeanCI, mean_ci, roc_auc
from sidkit.ranking.models import MultiTaskRanker
from sidkit.ranking.training import predict
from sidkit.ranking.types import RankingSplit


@dataclass(frozen=True, eq=False)
class FeatureImportance:
    """Permutation importance, fields x tasks.

    Attributes:
        fields: field names, e.g. ("user id", "age", ..., "candidate", "history").
        tasks: task names, the model's order.
        base_auc: task -> AUC with nothing permuted.
        drop: (len(fields), len(tasks)) mean AUC drop over the repeats (positive = the field helps).
        std: (len(fields), len(tasks)) standard deviation of the drop over the repeats (0 for one repeat).
        repeats: permutations per field.
    """

    fields: tuple[str, ...]
    tasks: tuple[str, ...]
    base_auc: dict[str, float]
    drop: np.ndarray
    std: np.ndarray
    repeats: int

    def get(self, field: str, task: str) -> float:
        """The mean AUC drop of one field for one task."""
        return float(self.drop[self.fields.index(field), self.tasks.index(task)])

    def to_rows(self) -> list[dict[str, object]]:
        """One row per (field, task): field, task, drop, std, base_auc."""
        return [{"field": f, "task": t, "drop": float(self.drop[i, k]), "std": float(self.std[i, k]),
                 "base_auc": self.base_auc[t]}
                for i, f in enumerate(self.fields) for k, t in enumerate(self.tasks)]


def _aucs(model: MultiTaskRanker, split: RankingSplit, batch_size: int,
          conditional: Sequence[tuple[str, str]] = ()) -> dict[str, float]:
    scores = predict(model, split, batch_size)
    out = {}
    targets = [(task, task, None) for task in model.tasks] + [(f"{t}|{g}", t, g) for t, g in conditional]
    for name, task, given in targets:
        mask = np.ones(len(split), dtype=bool) if given is None else np.asarray(split.labels[given]) == 1
        auc = roc_auc(np.asarray(split.labels[task])[mask], scores[task][mask])
        if auc is None:
            raise DataError(f"task {name!r} has one label class in this split, so it has no AUC",
                            where="permutation_importance(split)", fix="use a split with both classes per task")
        out[name] = auc
    return out


def _permuted(split: RankingSplit, field: int, num_user_fields: int, order: np.ndarray) -> RankingSplit:
    """The split with field ``field`` (user columns, then candidate, then history) permuted by ``order``."""
    if field < num_user_fields:
        user_features = split.user_features.copy()
        user_features[:, field] = user_features[order, field]
        return replace(split, user_features=user_features)
    if field == num_user_fields:
        return replace(split, item=split.item[order])
    return replace(split, history=split.history[order])


def permutation_importance(model: MultiTaskRanker, split: RankingSplit, *,
                           user_field_names: Sequence[str] | None = None, repeats: int = 1, seed: int = 0,
                           batch_size: int = 8192, conditional: Sequence[tuple[str, str]] = ()) -> FeatureImportance:
    """Per task, the AUC drop when each field's values are permuted across the rows of ``split``.

    Args:
        model: a trained ranker.
        split: validation impressions with labels for every task of the model (both classes each).
        user_field_names: a name per user_features column; default ``user0``, ``user1``, ...
        repeats: permutations per field; the drop is their mean.
        seed: seeds the permutations.
        batch_size: impressions per prediction step.
        conditional: (task, given) pairs scored too, e.g. ("like", "click") for ``like|click``.

    Only the split's ordinary impressions (its ``all`` slice) count: the extra new-item negatives of
    ``new-matched`` are left out.

    Returns:
        FeatureImportance over fields (user columns, ``candidate``, ``history``) x the model's tasks.
    """
    if int(repeats) <= 0:
        raise ConfigError(f"repeats must be a positive integer, got {repeats}", where="permutation_importance")
    if split.slices and not split.main.all():
        keep = split.main
        split = RankingSplit(split.item[keep], split.user_features[keep], split.history[keep],
                             {k: np.asarray(v)[keep] for k, v in split.labels.items()}, split.time[keep],
                             split.user[keep])
    if len(split) < 2:
        raise DataError(f"the split has {len(split)} rows; permuting needs at least 2",
                        where="permutation_importance(split)")
    num_user = int(split.user_features.shape[1])
    names = tuple(user_field_names) if user_field_names is not None else tuple(f"user{j}" for j in range(num_user))
    if len(names) != num_user:
        raise ConfigError(f"{len(names)} user field names for {num_user} user_features columns",
                          where="permutation_importance(user_field_names)", fix="name every column once")
    fields = (*names, "candidate", "history")
    tasks = (*model.tasks, *(f"{t}|{g}" for t, g in conditional))
    base = _aucs(model, split, batch_size, conditional)
    rng = np.random.default_rng(seed)
    drops = np.zeros((repeats, len(fields), len(tasks)))
    for r in range(repeats):
        for f in range(len(fields)):
            aucs = _aucs(model, _permuted(split, f, num_user, rng.permutation(len(split))), batch_size, conditional)
            drops[r, f] = [base[t] - aucs[t] for t in tasks]
    return FeatureImportance(fields=fields, tasks=tasks, base_auc=base, drop=drops.mean(axis=0),
                             std=drops.std(axis=0), repeats=int(repeats))


@dataclass(frozen=True, eq=False)
class ImportanceAcrossRuns:
    """Permutation importance of several runs (seeds) of one model: fields x tasks.

    Attributes:
        drop: field -> task -> mean AUC drop over runs with its 95% t interval (n = runs).
        repeat_std: (fields, tasks) mean over runs of the standard deviation between repeats.
        runs, repeats: the runs put together and the permutations per field in each.
    """

    fields: tuple[str, ...]
    tasks: tuple[str, ...]
    drop: dict[str, dict[str, MeanCI]]
    repeat_std: np.ndarray
    runs: int
    repeats: int

    def mean(self) -> FeatureImportance:
        """The means as a FeatureImportance (for the heatmap)."""
        means = np.array([[self.drop[f][t].mean or 0.0 for t in self.tasks] for f in self.fields])
        return FeatureImportance(self.fields, self.tasks, {}, means, self.repeat_std, self.repeats)


def importance_across_runs(results: Sequence[FeatureImportance]) -> ImportanceAcrossRuns:
    """Mean and 95% t interval over runs of each field's AUC drop per task (fields and tasks must agree)."""
    if not results:
        raise ConfigError("no importance results to put together", where="importance_across_runs")
    first = results[0]
    for other in results[1:]:
        if other.fields != first.fields or other.tasks != first.tasks:
            raise ConfigError("importance results of different fields or tasks", where="importance_across_runs",
                              fix="put together runs of one model on one dataset")
    stacked = np.stack([r.drop for r in results])  # (runs, fields, tasks)
    drop = {f: {t: mean_ci(stacked[:, i, k].tolist()) for k, t in enumerate(first.tasks)}
            for i, f in enumerate(first.fields)}
    return ImportanceAcrossRuns(first.fields, first.tasks, drop, np.mean([r.std for r in results], axis=0),
                                len(results), first.repeats)


def importance_heatmap(importances: dict[str, FeatureImportance] | FeatureImportance, *, dpi: int = 80) -> bytes:
    """A PNG heatmap of AUC drop, fields (rows) x tasks (columns), one panel per model.

    Drawn on matplotlib's Agg canvas (``Figure`` directly, no pyplot state). Colours share one scale
    across panels, so models compare directly.
    """
    try:  # only the drawing needs matplotlib, not the importance itself
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigError("the importance heatmap needs matplotlib, which is not installed",
                          where="importance_heatmap", fix="pip install matplotlib") from None
    panels = {"": importances} if isinstance(importances, FeatureImportance) else dict(importances)
    if not panels:
        raise ConfigError("no importances to draw", where="importance_heatmap")
    top = max(float(np.abs(p.drop).max()) for p in panels.values()) or 1e-6
    first = next(iter(panels.values()))
    figure = Figure(figsize=(1.2 + 1.7 * len(panels) * max(1, len(first.tasks)) / 2, 0.9 + 0.35 * len(first.fields)),
                    dpi=dpi, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for axis, (title, result) in zip(axes, panels.items(), strict=True):
        image = axis.imshow(result.drop, cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto")
        axis.set_xticks(range(len(result.tasks)), result.tasks)
        axis.set_yticks(range(len(result.fields)), result.fields if axis is axes[0] else [""] * len(result.fields))
        axis.set_title(title, fontsize=9)
        for i in range(len(result.fields)):
            for k in range(len(result.tasks)):
                value = float(result.drop[i, k])
                ink = "white" if abs(value) > 0.6 * top else "black"  # readable on dark cells
                axis.text(k, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color=ink)
    assert image is not None
    figure.colorbar(image, ax=list(axes), label="AUC drop when permuted", shrink=0.9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def importance_html(png: bytes, alt: str = "per-task permutation importance") -> str:
    """An ``<img>`` tag with the PNG inline (base64), for the HTML report."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
