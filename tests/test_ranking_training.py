"""Ranker training: the loss falls, the best epoch is restored, one seed gives one result, bad input fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError, DataError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.metrics import roc_auc
from sidkit.ranking.models import ModelConfig, build_model
from sidkit.ranking.training import EpochRecord, TrainConfig, TrainResult, predict, train_model
from sidkit.ranking.types import RankingData, RankingSplit

NUM_ITEMS, TOPICS, USERS, HISTORY = 60, 4, 30, 5
TASKS = ("click", "like")
SMALL = ModelConfig(embedding_dim=8, hidden_dims=(16,), expert_dims=(16, 8), tower_dims=(8,), num_experts=3,
                    task_experts=2, shared_experts=1, dropout=0.1, init_std=0.3)
FAST = TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, patience=3, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and the machine may be shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _representation() -> ItemRepresentation:
    """Token 1 + topic: items of a topic share a token; token 5 + item gives each its own row."""
    topic = np.arange(NUM_ITEMS) % TOPICS
    tokens = np.zeros((NUM_ITEMS + 1, 2), dtype=np.int64)
    tokens[:-1, 0] = 1 + topic
    tokens[:-1, 1] = 1 + TOPICS + np.arange(NUM_ITEMS)
    return ItemRepresentation("topic+id", tokens, 1 + TOPICS + NUM_ITEMS)


def _split(rows: int, seed: int) -> RankingSplit:
    """Users like one topic; they click items of it (and like half of those clicks)."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, USERS, rows)
    taste = user % TOPICS
    item = rng.integers(0, NUM_ITEMS, rows)
    click = (item % TOPICS == taste) ^ (rng.random(rows) < 0.1)
    like = click & (rng.random(rows) < 0.5)
    # The history holds items of the user's topic, a random number of them, padded with NUM_ITEMS.
    history = taste[:, None] + TOPICS * rng.integers(0, NUM_ITEMS // TOPICS, (rows, HISTORY))
    history[np.arange(HISTORY)[None, :] >= rng.integers(0, HISTORY + 1, rows)[:, None]] = NUM_ITEMS
    user_features = np.stack([1 + user, 1 + USERS + user % 2], axis=1)
    return RankingSplit(item=item, user_features=user_features, history=history,
                        labels={"click": click.astype(np.float32), "like": like.astype(np.float32)},
                        time=np.arange(rows), user=user)


def _data(train_rows: int = 1500) -> RankingData:
    return RankingData(train=_split(train_rows, 0), valid=_split(400, 1), test=_split(400, 2), num_items=NUM_ITEMS,
                       num_user_embeddings=1 + USERS + 2, tasks=TASKS, train_items=np.ones(NUM_ITEMS, bool),
                       heldout_items=np.zeros(NUM_ITEMS, bool))


def _model(name: str = "mmoe", config: ModelConfig = SMALL, tasks: tuple[str, ...] = TASKS):
    return build_model(name, _representation(), 1 + USERS + 2, tasks, config)


@pytest.mark.parametrize("name", ["dnn", "shared-bottom", "mmoe", "ple"])
def test_training_lowers_the_loss_and_learns(name: str) -> None:
    data = _data()
    model = _model(name)
    result = train_model(model, data, FAST)
    assert isinstance(result, TrainResult) and all(isinstance(r, EpochRecord) for r in result.history)
    losses = [record.train_loss for record in result.history]
    assert losses[-1] < losses[0]
    probabilities = predict(model, data.test)
    assert set(probabilities) == set(TASKS)
    assert probabilities["click"].dtype == np.float32 and probabilities["click"].shape == (len(data.test),)
    assert ((probabilities["click"] >= 0) & (probabilities["click"] <= 1)).all()
    assert (roc_auc(data.test.labels["click"], probabilities["click"]) or 0.0) > 0.75


def test_same_seed_same_training() -> None:
    data = _data(600)
    first, second = _model(), _model()
    result_a = train_model(first, data, FAST)
    torch.manual_seed(99)  # whatever ran before must not matter
    result_b = train_model(second, data, FAST)
    assert [r.train_loss for r in result_a.history] == [r.train_loss for r in result_b.history]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = _model()
    result_c = train_model(other, data, TrainConfig(**{**FAST.__dict__, "seed": 1}))
    assert [r.train_loss for r in result_c.history] != [r.train_loss for r in result_a.history]


def test_best_validation_weights_are_restored() -> None:
    data = _data(600)
    model = _model()
    result = train_model(model, data, TrainConfig(**{**FAST.__dict__, "epochs": 4, "patience": 4}))
    best = max(result.history, key=lambda r: r.valid_mean_auc or 0.0)
    assert result.best_epoch == best.epoch
    assert result.best_valid_mean_auc == best.valid_mean_auc
    probabilities = predict(model, data.valid)
    restored = np.mean([roc_auc(data.valid.labels[t], probabilities[t]) or 0.0 for t in TASKS])
    assert restored == pytest.approx(best.valid_mean_auc, abs=1e-3)  # float32 sigmoid ties
    assert not model.training


def test_patience_stops_training() -> None:
    data = _data(300)
    # A learning rate of 1e-9 never improves the validation AUC after the first epoch... or barely:
    # patience 1 then stops as soon as one epoch is no better.
    result = train_model(_model(), data, TrainConfig(epochs=20, batch_size=64, learning_rate=1e-9, patience=1,
                                                     progress=False))
    assert result.stopped_early and len(result.history) < 20


def test_task_weights_scale_the_loss() -> None:
    data = _data(300)
    config = TrainConfig(**{**FAST.__dict__, "epochs": 1, "task_weights": {"like": 0.0}})
    result = train_model(_model(), data, config)
    record = result.history[0]
    assert record.train_loss == pytest.approx(record.task_loss["click"], rel=1e-5)


def test_missing_task_labels_name_the_task() -> None:
    data = _data(300)
    model = _model(tasks=("click", "purchase"))
    with pytest.raises(DataError, match=r"purchase.*train split"):
        train_model(model, data, FAST)


def test_indices_outside_the_tables_are_refused() -> None:
    data = _data(300)
    small = build_model("mmoe", _representation(), 5, TASKS, SMALL)  # user table too small
    with pytest.raises(DataError, match="user_features"):
        train_model(small, data, FAST)


def test_bad_train_config_fields() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ConfigError, match="task weights"):
        TrainConfig(task_weights={"click": -1.0})
    with pytest.raises(ConfigError, match="does not have"):
        train_model(_model(), _data(300), TrainConfig(task_weights={"purchase": 1.0}, progress=False))


def test_cuda_device_without_cuda_is_a_config_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train_model(_model(), _data(300), TrainConfig(device="cuda", progress=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda() -> None:
    data = _data(600)
    model = _model()
    result = train_model(model, data, TrainConfig(**{**FAST.__dict__, "device": "cuda"}))
    assert next(model.parameters()).device.type == "cuda"
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert predict(model, data.test)["click"].shape == (len(data.test),)


def test_progress_bar_runs() -> None:
    result = train_model(_model(), _data(300), TrainConfig(epochs=1, batch_size=64, progress=True))
    assert len(result.history) == 1


def test_one_class_validation_falls_back_to_the_loss() -> None:
    data = _data(300)
    valid = data.valid
    ones = {task: np.ones(len(valid), np.float32) for task in TASKS}
    one_class = RankingSplit(valid.item, valid.user_features, valid.history, ones, valid.time, valid.user)
    data = RankingData(data.train, one_class, data.test, data.num_items, data.num_user_embeddings, data.tasks,
                       data.train_items, data.heldout_items)
    result = train_model(_model(), data, FAST)
    assert result.best_valid_mean_auc is None
    assert all(record.valid_auc == {"click": None, "like": None} for record in result.history)
    losses = [record.valid_loss["click"] for record in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
