"""Training and prediction for the multi-task rankers.

``train_model`` minimizes the weighted sum of per-task binary cross-entropies with Adam, evaluates
the validation split after every epoch, and tracks two early-stopping scores: the validation AUC on
all impressions, and its mean with the AUC on context-matched new items (validation's own held-out
items), so that model choice can see cold-start quality. It stops when neither improved for
``patience`` epochs and leaves the model holding the best weights of ``TrainConfig.select``. ``predict`` gives
per-task probabilities.

Speed on a few CPU cores comes from turning each split into index tensors once (no copies: the
numpy arrays are shared), gathering a whole batch with one indexing op per input, and large
batches. Threads are left to the caller (``torch.set_num_threads``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sidkit import distributed
from sidkit.errors import ConfigError, DataError
from sidkit.progress import Bar
from sidkit.ranking.metrics import grouped_auc, roc_auc
from sidkit.ranking.models import MultiTaskRanker
from sidkit.ranking.types import MATCHED_SLICE, RankingData, RankingSplit

#: What early stopping maximizes: the validation AUC on all impressions, or its mean with the AUC on
#: context-matched new items (when validation has them).
SELECTIONS: tuple[str, ...] = ("all", "all+new")


@dataclass(frozen=True, eq=False)
class TrainConfig:
    """How to train a ranker.

    Attributes:
        epochs: the most passes over the training split.
        batch_size: training impressions per step.
        learning_rate: Adam step size.
        weight_decay: Adam L2 penalty (on every parameter, embeddings included).
        task_weights: task -> weight of its loss; tasks left out weigh 1.
        patience: epochs in which no selection's validation score improved before stopping.
        select: whose best weights are restored: ``all`` (default), the mean over tasks of the
            validation AUC on all impressions; ``all+new``, its mean with the AUC on ``new-matched``
            (the validation hold-out's new items; ``all`` alone when validation has none). Both are
            tracked (``TrainResult.best_epochs``) and training lasts until neither improves.
        seed: seeds dropout and the shuffling of the training split.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... (the model is moved there).
        eval_batch_size: impressions per step when predicting.
        progress: show a progress bar; None = when stderr is a terminal (see sidkit.progress).
    """

    epochs: int = 30
    batch_size: int = 2048
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    task_weights: Mapping[str, float] = field(default_factory=dict)
    patience: int = 2
    select: str = "all"
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 8192
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}",
                                  where=f"TrainConfig.{name}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}",
                              where="TrainConfig.learning_rate", fix="e.g. 1e-3")
        if self.select not in SELECTIONS:
            raise ConfigError(f"unknown selection {self.select!r}", where="TrainConfig.select",
                              fix=f"use one of {', '.join(SELECTIONS)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}", where="TrainConfig.weight_decay")
        bad = {task: w for task, w in self.task_weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise ConfigError(f"task weights must be finite and >= 0, got {bad}", where="TrainConfig.task_weights")
        object.__setattr__(self, "task_weights", dict(self.task_weights))


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: training loss, validation metrics, and speed.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean weighted sum of task losses over the epoch's impressions.
        task_loss: task -> mean training binary cross-entropy.
        valid_auc: task -> validation AUC on all impressions, None when the labels hold one class.
        valid_loss: task -> validation binary cross-entropy, None when the validation split is empty.
        valid_mean_auc: mean of the tasks' AUCs that exist, None when none does.
        valid_new_auc: task -> validation AUC on ``new-matched`` (None without new items there).
        score: what early stopping compared (see ``TrainConfig.select``).
        improved: the selections (``all``, ``all+new``) whose best score this epoch set.
        seconds: wall time of the training pass (validation excluded).
        impressions_per_second: training impressions / seconds.
    """

    epoch: int
    train_loss: float
    task_loss: dict[str, float]
    valid_auc: dict[str, float | None]
    valid_loss: dict[str, float | None]
    valid_mean_auc: float | None
    seconds: float
    impressions_per_second: float
    valid_new_auc: dict[str, float | None] = field(default_factory=dict)
    score: float | None = None
    improved: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainResult:
    """The outcome of ``train_model``; the model itself now holds the weights of ``best_epoch``.

    Attributes:
        best_epoch: the epoch whose weights were restored.
        best_valid_mean_auc: its validation mean AUC (None when no task's validation labels hold both
            classes: then the best epoch is the one of lowest validation loss).
        history: one record per epoch run.
        stopped_early: True when patience ran out before ``epochs``.
        best_epochs: selection (``all``, ``all+new``) -> its best epoch; training runs until neither
            improved for ``patience`` epochs, so each is the optimum of its own rule.
        seconds: total wall time, validation included.
    """

    best_epoch: int
    best_valid_mean_auc: float | None
    history: tuple[EpochRecord, ...]
    stopped_early: bool
    seconds: float
    best_epochs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _SplitTensors:
    item: torch.Tensor  # (M,)
    user_features: torch.Tensor  # (M, F)
    history: torch.Tensor  # (M, H)
    labels: torch.Tensor | None  # (M, K) in task order
    main: np.ndarray | None = None  # (M,) bool, the "all" slice
    matched: np.ndarray | None = None  # (M,) bool, the new-matched slice
    group: np.ndarray | None = None  # (M,) int64 groups of new-matched

    def __len__(self) -> int:
        return int(self.item.shape[0])


def _as_index(array: np.ndarray, device: torch.device) -> torch.Tensor:
    # from_numpy shares memory with the split (no copy on CPU) when it already is contiguous int64.
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


def _tensors(split: RankingSplit, tasks: Sequence[str] | None, device: torch.device) -> _SplitTensors:
    labels = None
    if tasks is not None:
        columns = [np.asarray(split.labels[task], dtype=np.float32) for task in tasks]
        labels = torch.from_numpy(np.stack(columns, axis=1)).to(device)
    matched = split.slices.get(MATCHED_SLICE)
    return _SplitTensors(_as_index(split.item, device), _as_index(split.user_features, device),
                         _as_index(split.history, device), labels, split.main,
                         None if matched is None or not np.any(matched) else np.asarray(matched, dtype=bool),
                         split.group)


def _resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"cannot parse device {name!r}: {error}", where="TrainConfig.device",
                          fix="use 'cpu', 'cuda' or 'cuda:<index>'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available", where="TrainConfig.device",
                          fix="use device='cpu' or install a CUDA build of torch on a machine with a GPU")
    return device


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_split(model: MultiTaskRanker, split: RankingSplit, name: str, tasks: Sequence[str] | None) -> None:
    """Labels for every task, equal lengths, and indices inside the model's tables."""
    rows = len(split)
    if tasks is not None:
        missing = [task for task in tasks if task not in split.labels]
        if missing:
            raise DataError(f"labels for tasks {missing} are missing; the split has {sorted(split.labels)}",
                            where=f"{name} split",
                            fix="build the model with tasks=data.tasks, or add those label columns")
        short = {task: len(split.labels[task]) for task in tasks if len(split.labels[task]) != rows}
        if short:
            raise DataError(f"label lengths {short} differ from the {rows} impressions", where=f"{name} split")
    if split.user_features.ndim != 2 or split.history.ndim != 2:
        raise DataError(f"user_features and history must be 2-d, got {split.user_features.shape} and "
                        f"{split.history.shape}", where=f"{name} split")
    if split.user_features.shape[0] != rows or split.history.shape[0] != rows:
        raise DataError(f"{rows} items but {split.user_features.shape[0]} user_features rows and "
                        f"{split.history.shape[0]} history rows", where=f"{name} split")
    if rows == 0:
        return
    items = model.features.items
    limits = {"item": (split.item, items.num_items - 1), "history": (split.history, items.pad_item),
              "user_features": (split.user_features, model.features.users.embedding.num_embeddings - 1)}
    for column, (values, top) in limits.items():
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > top:
            raise DataError(f"{column} holds values in [{low}, {high}], outside [0, {top}]", where=f"{name} split",
                            fix="build the model from the representation and num_user_embeddings of this data")


def _predict_logits(model: MultiTaskRanker, tensors: _SplitTensors, batch_size: int) -> torch.Tensor:
    """(M, K) logits, in eval mode; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [model(tensors.item[start:start + batch_size], tensors.user_features[start:start + batch_size],
                           tensors.history[start:start + batch_size])
                     for start in range(0, len(tensors), batch_size)]
    finally:
        model.train(was_training)
    if not parts:
        return torch.zeros((0, model.num_tasks))
    return torch.cat(parts).float()


def predict(model: MultiTaskRanker, split: RankingSplit, batch_size: int = 8192) -> dict[str, np.ndarray]:
    """Task -> (M,) float32 probabilities for every impression of ``split``, on the model's device."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}", where="predict")
    _check_split(model, split, "predicted", None)
    tensors = _tensors(split, None, _model_device(model))
    probabilities = torch.sigmoid(_predict_logits(model, tensors, batch_size)).cpu().numpy()
    return {task: probabilities[:, k].astype(np.float32) for k, task in enumerate(model.tasks)}


def _evaluate(model: MultiTaskRanker, tensors: _SplitTensors, batch_size: int, epoch: int
              ) -> tuple[dict[str, float | None], dict[str, float | None], dict[str, float | None]]:
    """Validation AUC on all impressions, binary cross-entropy, and AUC on new-matched, per task
    (None for a one-class task, an empty split, or no new items)."""
    assert tensors.labels is not None
    none = dict.fromkeys(model.tasks)
    if len(tensors) == 0:
        return none, dict(none), dict(none)
    logits = _predict_logits(model, tensors, batch_size)
    if not torch.isfinite(logits).all():
        raise ConfigError(f"the model's validation outputs hold NaN or inf after epoch {epoch}",
                          where="train_model", fix="lower TrainConfig.learning_rate")
    main = np.ones(len(tensors), dtype=bool) if tensors.main is None else tensors.main
    labels, scores = tensors.labels.cpu().numpy(), logits.cpu().numpy()
    if not main.any():
        return none, dict(none), dict(none)
    losses = F.binary_cross_entropy_with_logits(logits[torch.from_numpy(main)], tensors.labels[torch.from_numpy(main)],
                                                reduction="none").mean(dim=0).cpu()
    auc = {task: roc_auc(labels[main, k], scores[main, k]) for k, task in enumerate(model.tasks)}
    new: dict[str, float | None] = dict(none)
    if tensors.matched is not None and tensors.group is not None:
        m = tensors.matched
        new = {task: grouped_auc(labels[m, k], scores[m, k], tensors.group[m], weight="pairs")[0]
               for k, task in enumerate(model.tasks)}
    return auc, {task: float(losses[k]) for k, task in enumerate(model.tasks)}, new


def _mean_auc(valid_auc: Mapping[str, float | None]) -> float | None:
    present = [value for value in valid_auc.values() if value is not None]
    return float(np.mean(present)) if present else None


def _stopping_score(mean_auc: float | None, valid_loss: Mapping[str, float | None], epoch: int,
                    new_auc: Mapping[str, float | None] | None = None) -> float:
    """Higher is better: the mean AUC (averaged with the mean new-matched AUC when given); minus the mean
    loss when no task has both classes; else the epoch."""
    if mean_auc is not None:
        new_mean = _mean_auc(new_auc or {})
        return mean_auc if new_mean is None else 0.5 * (mean_auc + new_mean)
    losses = [value for value in valid_loss.values() if value is not None]
    return -float(np.mean(losses)) if losses else float(epoch)  # empty validation split: keep the last epoch


def train_model(model: MultiTaskRanker, data: RankingData, config: TrainConfig | None = None, *,
                on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train``, stop early on ``data.valid``, restore the best weights.

    The loss is sum_k w_k * BCE_k over the model's tasks (``config.task_weights``, default 1). After
    each epoch the validation mean AUC across tasks is compared with the best so far; ``patience``
    epochs without improvement stop training. The same seed gives the same weights (on CPU).
    ``on_epoch`` receives each epoch's record as soon as it is done (for logs of long runs).

    Raises:
        DataError: a task of the model has no labels, or indices fall outside the model's tables.
        ConfigError: an unusable setting, e.g. a CUDA device without CUDA.
    """
    config = config or TrainConfig()
    tasks = model.tasks
    unknown = sorted(set(config.task_weights) - set(tasks))
    if unknown:
        raise ConfigError(f"task_weights name tasks {unknown} the model does not have {list(tasks)}",
                          where="TrainConfig.task_weights", fix="weigh only the model's tasks")
    if data.num_items != model.features.items.num_items:
        raise DataError(f"the data has {data.num_items} items, the model's representation "
                        f"{model.features.items.num_items}", where="train_model",
                        fix="build the model from the representation of this data's catalog")
    if len(data.train) == 0:
        raise DataError("the training split is empty", where="train_model")
    _check_split(model, data.train, "train", tasks)
    _check_split(model, data.valid, "valid", tasks)

    device = _resolve_device(config.device)
    model.to(device)
    train = _tensors(data.train, tasks, device)
    valid = _tensors(data.valid, tasks, device)
    assert train.labels is not None
    weights = torch.tensor([config.task_weights.get(task, 1.0) for task in tasks], device=device)

    torch.manual_seed(config.seed)  # dropout
    shuffle = torch.Generator().manual_seed(config.seed)
    # The fused kernel updates all parameters in a few calls instead of several ops per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                 fused=device.type in ("cpu", "cuda"))
    parallel = distributed.context()  # under torchrun: data-parallel (see sidkit.distributed)
    parallel.broadcast_module(model)

    rows, batch = len(train), config.batch_size
    steps = math.ceil(rows / batch)
    history: list[EpochRecord] = []
    best_scores = dict.fromkeys(SELECTIONS, -math.inf)
    best_epochs = dict.fromkeys(SELECTIONS, 0)
    best_state = None
    since_best = 0
    started = time.perf_counter()
    with Bar("training", config.epochs * steps, enabled=config.progress if parallel.is_main else False) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            epoch_start = time.perf_counter()
            order = torch.randperm(rows, generator=shuffle).to(device)
            loss_sum = torch.zeros(len(tasks), device=device)
            seen = 0
            for step, start in enumerate(range(0, rows, batch)):
                index = order[start:start + batch]
                if index.numel() < 2 * parallel.world_size and rows > 1:
                    bar.advance()
                    continue  # a last batch of one row (per rank) would break batch norm
                global_rows = index.numel()
                index, share = parallel.shard(index)
                logits = model(train.item[index], train.user_features[index], train.history[index])
                task_losses = F.binary_cross_entropy_with_logits(logits, train.labels[index],
                                                                 reduction="none").mean(dim=0)
                loss = (task_losses * weights).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                parallel.average_gradients(model.parameters(), share, global_rows)
                optimizer.step()
                parallel.broadcast_module(model, buffers_only=True)
                loss_sum += task_losses.detach() * index.numel()
                seen += index.numel()
                if bar.enabled and (step % 20 == 0 or step == steps - 1):
                    bar.note(f"epoch {epoch} loss {float(loss.detach()):.4f}")
                bar.advance()
            seconds = time.perf_counter() - epoch_start
            loss_sum = parallel.sum(loss_sum)
            seen = int(parallel.sum(torch.tensor(seen, device=device)))
            task_loss = (loss_sum / max(seen, 1)).cpu()
            valid_auc, valid_loss, valid_new = _evaluate(model, valid, config.eval_batch_size, epoch)
            mean_auc = _mean_auc(valid_auc)
            scores = {"all": _stopping_score(mean_auc, valid_loss, epoch),
                      "all+new": _stopping_score(mean_auc, valid_loss, epoch, valid_new)}
            improved = tuple(name for name, score in scores.items() if score > best_scores[name])
            history.append(EpochRecord(
                epoch=epoch, train_loss=float((task_loss * weights.cpu()).sum()),
                task_loss={task: float(task_loss[k]) for k, task in enumerate(tasks)},
                valid_auc=valid_auc, valid_loss=valid_loss, valid_mean_auc=mean_auc, seconds=seconds,
                impressions_per_second=seen / seconds if seconds > 0 else float("inf"),
                valid_new_auc=valid_new, score=scores[config.select], improved=improved))
            bar.note(f"epoch {epoch} loss {history[-1].train_loss:.4f} valid auc "
                     f"{'n/a' if mean_auc is None else f'{mean_auc:.4f}'}")
            if on_epoch is not None and parallel.is_main:
                on_epoch(history[-1])
            for name in improved:
                best_scores[name], best_epochs[name] = scores[name], epoch
                if name == config.select:
                    best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            # Patience runs out only when no selection improved: every selection's optimum is in the run.
            since_best = 0 if history[-1].improved else since_best + 1
            if since_best >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_epoch = best_epochs[config.select]
    return TrainResult(best_epoch=best_epoch, best_valid_mean_auc=history[best_epoch - 1].valid_mean_auc,
                       history=tuple(history), stopped_early=len(history) < config.epochs, best_epochs=best_epochs,
                       seconds=time.perf_counter() - started)

