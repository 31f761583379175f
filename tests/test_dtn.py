"""DTN: shapes, registration, gates that sum to 1, and the stop-gradient of the task-sensitive network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.dtn import DTN, DTNConfig, parse_chain
from sidkit.ranking.models import ModelConfig, build_model, model_names

NUM_ITEMS, TOKENS, TABLE, NUM_USERS, FIELDS, HISTORY, BATCH = 30, 3, 25, 12, 2, 5, 7
TASKS = ("click", "like")
SMALL = ModelConfig(embedding_dim=8, dropout=0.0)
SMALL_DTN = DTNConfig(module_dim=16, masknet_ffn=16, masknet_aggregation=32, memory_rows=64, tower_dims=(16, 8))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _representation() -> ItemRepresentation:
    tokens = np.random.default_rng(0).integers(1, TABLE, size=(NUM_ITEMS + 1, TOKENS))
    tokens[-1] = 0
    return ItemRepresentation("test", tokens, TABLE)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    history = torch.randint(0, NUM_ITEMS, (BATCH, HISTORY), generator=g)
    history[0] = NUM_ITEMS
    return (torch.randint(0, NUM_ITEMS, (BATCH,), generator=g), torch.randint(1, NUM_USERS, (BATCH, FIELDS),
                                                                              generator=g), history)


def _bump_click_bias(model: DTN) -> None:
    """Move only the click tower's final bias."""
    last = model.towers.towers[0].get_submodule("1")
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.bias.add_(5.0)


def _dtn(tasks: tuple[str, ...] = TASKS, dtn: DTNConfig = SMALL_DTN) -> DTN:
    base = build_model("dnn", _representation(), NUM_USERS, tasks, SMALL,
                       num_user_fields=FIELDS)  # borrow its feature block
    return DTN(base.features, tasks, SMALL, dtn)


def test_dtn_is_registered_and_gives_one_logit_per_task() -> None:
    assert "dtn" in model_names()
    model = build_model("dtn", _representation(), NUM_USERS, TASKS, SMALL, num_user_fields=FIELDS)
    logits = model(*_batch())
    assert logits.shape == (BATCH, 2) and torch.isfinite(logits).all()
    # like:click is skipped for a single task
    single = build_model("dtn", _representation(), NUM_USERS, ("click",), SMALL, num_user_fields=FIELDS)
    assert single(*_batch()).shape == (BATCH, 1)


def test_gate_weights_sum_to_one() -> None:
    model = _dtn()
    model(*_batch())
    assert set(model.last_gates) == {"click/own", "click/other", "like/own", "like/other"}
    for name, weights in model.last_gates.items():
        assert weights.shape == (BATCH, 3 if name.endswith("own") else 6)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(BATCH))


def test_downstream_loss_does_not_reach_the_upstream_tower() -> None:
    model = _dtn()
    logits = model(*_batch())
    like = logits[:, TASKS.index("like")]
    F.binary_cross_entropy_with_logits(like, torch.ones(BATCH)).backward()
    upstream_tower = model.towers.towers[TASKS.index("click")]
    for parameter in upstream_tower.parameters():
        assert parameter.grad is None or torch.count_nonzero(parameter.grad) == 0
    # The upstream task's modules still learn from the downstream loss (through the scaled outputs).
    upstream_block = model.blocks[TASKS.index("click")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in upstream_block.parameters())


def test_scaling_uses_the_upstream_prediction() -> None:
    model = _dtn()
    model.eval()
    batch = _batch()
    base = model(*batch)[:, 1]
    _bump_click_bias(model)  # like can change only through p_click
    moved = model(*batch)
    assert not torch.allclose(base, moved[:, 1])
    unchained = _dtn(dtn=DTNConfig(**{**SMALL_DTN.__dict__, "chain": ()}))
    unchained.load_state_dict(model.state_dict())
    before = unchained(*batch)[:, 1]
    _bump_click_bias(unchained)
    torch.testing.assert_close(unchained(*batch)[:, 1], before)


def test_chain_parsing_and_errors() -> None:
    assert parse_chain("like:click, cvr:like") == (("like", "click"), ("cvr", "like"))
    with pytest.raises(ConfigError, match="downstream:upstream"):
        parse_chain("like")
    with pytest.raises(ConfigError, match="cycle"):
        _dtn(dtn=DTNConfig(**{**SMALL_DTN.__dict__, "chain": ("like:click", "click:like")}))
    with pytest.raises(ConfigError, match="positive"):
        DTNConfig(module_dim=0)
