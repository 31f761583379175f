"""Permutation importance: ~0 for a pure-noise field, clearly > 0 for a predictive one; the heatmap."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.importance import importance_heatmap, importance_html, permutation_importance
from sidkit.ranking.models import ModelConfig, MultiTaskRanker, build_model
from sidkit.ranking.training import TrainConfig, train_model
from sidkit.ranking.types import RankingData, RankingSplit

Trained = tuple[MultiTaskRanker, RankingData]

NUM_ITEMS, NUM_USERS = 60, 40
TASKS = ("click", "like")


def _split(rows: int, rng: np.random.Generator) -> RankingSplit:
    """click follows the candidate (first half of items), like follows the user; column 2 is noise."""
    item = rng.integers(0, NUM_ITEMS, rows)
    user = rng.integers(0, NUM_USERS, rows)
    noise = rng.integers(0, 10, rows)
    user_features = np.stack([1 + user, 1 + NUM_USERS + noise], axis=1)
    history = np.full((rows, 3), NUM_ITEMS)
    flip = rng.random((2, rows)) < 0.1
    click = ((item < NUM_ITEMS // 2) ^ flip[0]).astype(np.float32)
    like = ((user < NUM_USERS // 2) ^ flip[1]).astype(np.float32)
    return RankingSplit(item=item, user_features=user_features, history=history,
                        labels={"click": click, "like": like}, time=np.arange(rows), user=user)


@pytest.fixture(scope="module")
def trained() -> Iterator[Trained]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tokens = np.c_[1 + np.arange(NUM_ITEMS + 1)]
    tokens[-1] = 0
    representation = ItemRepresentation("id", tokens, NUM_ITEMS + 1)
    data = RankingData(_split(6000, rng), _split(3000, rng), _split(100, rng), NUM_ITEMS, 1 + NUM_USERS + 10, TASKS,
                       np.ones(NUM_ITEMS, bool), np.zeros(NUM_ITEMS, bool))
    config = ModelConfig(embedding_dim=8, hidden_dims=(32,), user_pooling="concat", dropout=0.0)
    model = build_model("dnn", representation, data.num_user_embeddings, TASKS, config, num_user_fields=2)
    train_model(model, data, TrainConfig(epochs=6, batch_size=256, learning_rate=0.02, progress=False))
    yield model, data
    torch.set_num_threads(threads)


def test_noise_field_scores_about_zero_and_predictive_fields_clearly_above(trained: Trained) -> None:
    model, data = trained
    result = permutation_importance(model, data.valid, user_field_names=["user", "noise"], repeats=2)
    assert result.fields == ("user", "noise", "candidate", "history")
    assert result.base_auc["click"] > 0.8 and result.base_auc["like"] > 0.8
    assert abs(result.get("noise", "click")) < 0.02 and abs(result.get("noise", "like")) < 0.02
    assert result.get("candidate", "click") > 0.2 and result.get("user", "like") > 0.2
    # The per-task divergence: each field matters for one task only.
    assert abs(result.get("candidate", "like")) < 0.05 and abs(result.get("user", "click")) < 0.05
    assert abs(result.get("history", "click")) < 1e-9  # an all-padding history permutes to itself
    assert len(result.to_rows()) == 8


def test_heatmap_is_a_png_and_embeds_in_html(trained: Trained) -> None:
    model, data = trained
    result = permutation_importance(model, data.valid)
    png = importance_heatmap({"dnn": result, "again": result})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert importance_html(png).startswith('<img alt="per-task permutation importance" src="data:image/png;base64,')


def test_importance_checks_its_arguments(trained: Trained) -> None:
    model, data = trained
    with pytest.raises(ConfigError, match="user field names"):
        permutation_importance(model, data.valid, user_field_names=["one"])
    with pytest.raises(ConfigError, match="repeats"):
        permutation_importance(model, data.valid, repeats=0)


def test_importance_across_runs_has_intervals_and_a_conditional_task(trained: Trained) -> None:
    from sidkit.ranking.importance import importance_across_runs

    model, data = trained
    runs = [permutation_importance(model, data.valid, user_field_names=["user", "noise"], repeats=2, seed=seed,
                                   conditional=(("like", "click"),)) for seed in range(3)]
    assert runs[0].tasks == ("click", "like", "like|click")
    summary = importance_across_runs(runs)
    cell = summary.drop["user"]["like"]
    assert cell.n == 3 and cell.half_width is not None and cell.low < cell.mean < cell.high
    assert cell.mean == pytest.approx(np.mean([r.get("user", "like") for r in runs]))
    # Among clicked rows like still follows the user; the noise column stays near zero.
    assert summary.drop["user"]["like|click"].mean > 0.2 and abs(summary.drop["noise"]["like|click"].mean) < 0.03
    assert summary.mean().drop.shape == (4, 3)
