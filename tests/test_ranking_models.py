"""Ranking layers and models: shapes, gates, history pooling, weight sharing, the factory's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError
from sidkit.features.types import ItemRepresentation
from sidkit.ranking.layers import FeatureBlock, ItemEncoder, UserEncoder, bag_sum
from sidkit.ranking.models import PLE, MMoE, ModelConfig, build_model, model_names, register_model

NUM_ITEMS, TOKENS, TABLE = 40, 3, 30
NUM_USERS, FIELDS, HISTORY, BATCH = 20, 2, 6, 9
TASKS = ("click", "like")
SMALL = ModelConfig(embedding_dim=8, hidden_dims=(16, 8), expert_dims=(16, 8), tower_dims=(8,), num_experts=4,
                    dropout=0.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and the machine may be shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _representation(dense: bool = False) -> ItemRepresentation:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, TABLE, size=(NUM_ITEMS + 1, TOKENS))
    tokens[3, 1:] = 0  # an item with fewer tokens than T
    tokens[-1] = 0
    vectors = None
    if dense:
        vectors = rng.normal(size=(NUM_ITEMS + 1, 5)).astype(np.float32)
        vectors[-1] = 0
    return ItemRepresentation("test", tokens, TABLE, dense=vectors)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    item = torch.randint(0, NUM_ITEMS, (BATCH,), generator=generator)
    users = torch.randint(0, NUM_USERS, (BATCH, FIELDS), generator=generator)
    history = torch.randint(0, NUM_ITEMS, (BATCH, HISTORY), generator=generator)
    history[0] = NUM_ITEMS  # an empty history
    history[1, 2:] = NUM_ITEMS
    return item, users, history


@pytest.mark.parametrize("name", ["dnn", "shared-bottom", "mmoe", "ple"])
@pytest.mark.parametrize("pooling", ["sum", "concat"])
def test_every_model_gives_one_logit_per_task(name: str, pooling: str) -> None:
    config = ModelConfig(**{**SMALL.__dict__, "user_pooling": pooling})
    model = build_model(name, _representation(), NUM_USERS, TASKS, config, num_user_fields=FIELDS)
    logits = model(*_batch())
    assert logits.shape == (BATCH, len(TASKS))
    assert torch.isfinite(logits).all()
    assert model.tasks == TASKS
    single = build_model(name, _representation(), NUM_USERS, ("click",), config, num_user_fields=FIELDS)
    assert single(*_batch()).shape == (BATCH, 1)


def test_mmoe_gates_are_distributions_over_experts() -> None:
    model = build_model("mmoe", _representation(), NUM_USERS, TASKS, SMALL)
    assert isinstance(model, MMoE)
    model(*_batch())
    assert set(model.last_gates) == set(TASKS)
    for gate in model.last_gates.values():
        assert gate.shape == (BATCH, SMALL.num_experts)
        assert (gate >= 0).all()
        torch.testing.assert_close(gate.sum(dim=1), torch.ones(BATCH))


def test_ple_gates_are_distributions_per_task_and_level() -> None:
    config = ModelConfig(**{**SMALL.__dict__, "levels": 3, "task_experts": 3, "shared_experts": 2})
    model = build_model("ple", _representation(), NUM_USERS, TASKS, config)
    assert isinstance(model, PLE)
    model(*_batch())
    expected = {f"level{level}/{task}" for level in range(3) for task in TASKS}
    expected |= {"level0/shared", "level1/shared"}  # the last level has no shared gate
    assert set(model.last_gates) == expected
    for name, gate in model.last_gates.items():
        width = 3 + 2 if not name.endswith("shared") else len(TASKS) * 3 + 2
        assert gate.shape == (BATCH, width)
        assert (gate >= 0).all()
        torch.testing.assert_close(gate.sum(dim=1), torch.ones(BATCH))


def test_ple_defaults_follow_the_dtn_code() -> None:
    config = ModelConfig()
    assert (config.task_experts, config.shared_experts, config.levels) == (3, 2, 2)
    assert 32 <= config.embedding_dim <= 64


@pytest.mark.parametrize("dense", [False, True])
def test_history_pooling_ignores_padding_items(dense: bool) -> None:
    encoder = ItemEncoder(_representation(dense), dim=8)
    with torch.no_grad():  # make padding tokens visible if they were ever looked up
        encoder.embedding.weight.add_(1.0)
    _, _, history = _batch()
    pooled = encoder.mean_history(history)
    embedded = encoder(history)  # (B, H, dim)
    real = history != encoder.pad_item
    for row in range(BATCH):
        if real[row].any():
            torch.testing.assert_close(pooled[row], embedded[row][real[row]].mean(dim=0))
        else:
            torch.testing.assert_close(pooled[row], torch.zeros(8))
    # More padding at the end changes nothing.
    longer = torch.cat([history, torch.full((BATCH, 4), encoder.pad_item)], dim=1)
    torch.testing.assert_close(encoder.mean_history(longer), pooled)


def test_bag_sum_adds_the_rows_of_non_padding_tokens() -> None:
    weight = torch.randn(10, 4, requires_grad=True)
    tokens = torch.tensor([[1, 2, 0], [0, 0, 0], [3, 3, 9], [0, 5, 0]])
    expected = torch.stack([weight[1] + weight[2], torch.zeros(4), 2 * weight[3] + weight[9], weight[5]])
    torch.testing.assert_close(bag_sum(tokens, weight), expected)
    bag_sum(tokens, weight).sum().backward()
    assert weight.grad is not None
    assert torch.all(weight.grad[0] == 0) and torch.all(weight.grad[3] == 2)
    torch.testing.assert_close(bag_sum(tokens[1:2], weight), torch.zeros(1, 4))  # only padding


def test_padding_token_embeds_to_zero_and_gets_no_gradient() -> None:
    encoder = ItemEncoder(_representation(), dim=8)
    item, _, history = _batch()
    (encoder(item).sum() + encoder.mean_history(history).sum()).backward()
    assert torch.all(encoder.embedding.weight[0] == 0)
    assert encoder.embedding.weight.grad is not None
    assert torch.all(encoder.embedding.weight.grad[0] == 0)


def test_one_item_encoder_serves_candidate_and_history() -> None:
    model = build_model("mmoe", _representation(), NUM_USERS, TASKS, SMALL)
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(tables) == 2  # one item table, one user table
    item = torch.tensor([5])
    history = torch.tensor([[5] + [NUM_ITEMS] * (HISTORY - 1)])
    features = model.features
    torch.testing.assert_close(features.items(item), features.items.mean_history(history))
    # A gradient through the history alone reaches the table the candidate reads.
    features.items.mean_history(history).sum().backward()
    grad = features.items.embedding.weight.grad
    assert grad is not None and grad[features.items.tokens[5]].abs().sum() > 0


def test_feature_block_concatenates_user_candidate_history_and_product() -> None:
    items = ItemEncoder(_representation(), dim=8)
    users = UserEncoder(NUM_USERS, 8, num_fields=FIELDS, pooling="concat")
    block = FeatureBlock(items, users)
    item, user_features, history = _batch()
    fields = block.fields(item, user_features, history)
    assert fields.shape == (BATCH, FIELDS + 3, 8)
    candidate, pooled = items(item), items.mean_history(history)
    torch.testing.assert_close(fields[:, FIELDS], candidate)
    torch.testing.assert_close(fields[:, FIELDS + 1], pooled)
    torch.testing.assert_close(fields[:, FIELDS + 2], candidate * pooled)
    assert block(item, user_features, history).shape == (BATCH, block.output_dim)
    no_product = FeatureBlock(items, UserEncoder(NUM_USERS, 8), history_product=False)
    assert no_product.output_dim == 3 * 8


def test_same_seed_same_weights() -> None:
    first = build_model("ple", _representation(), NUM_USERS, TASKS, SMALL)
    torch.manual_seed(123)  # global state must not matter
    second = build_model("ple", _representation(), NUM_USERS, TASKS, SMALL)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = build_model("ple", _representation(), NUM_USERS, TASKS, ModelConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not torch.equal(first.features.items.embedding.weight, other.features.items.embedding.weight)


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'mmeo'") as error:
        build_model("mmeo", _representation(), NUM_USERS, TASKS)
    for name in ("dnn", "shared-bottom", "mmoe", "ple"):
        assert name in str(error.value)


def test_register_model_extends_the_factory() -> None:
    from sidkit.ranking import models

    register_model("test-dnn", models.DNN)
    try:
        assert "test-dnn" in model_names()
        assert build_model("test-dnn", _representation(), NUM_USERS, TASKS, SMALL)(*_batch()).shape == (BATCH, 2)
        with pytest.raises(ConfigError, match="already registered"):
            register_model("test-dnn", models.DNN)
    finally:
        models._MODELS.pop("test-dnn")


@pytest.mark.parametrize("bad", [{"embedding_dim": 0}, {"expert_dims": ()}, {"dropout": 1.0},
                                 {"activation": "swish"}, {"user_pooling": "max"}, {"levels": 0}])
def test_bad_config_says_which_field(bad: dict[str, object]) -> None:
    field = next(iter(bad))
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**bad)  # type: ignore[arg-type]


def test_bad_tasks_are_rejected() -> None:
    with pytest.raises(ConfigError, match="at least one task"):
        build_model("dnn", _representation(), NUM_USERS, (), SMALL)
    with pytest.raises(ConfigError, match="repeat"):
        build_model("dnn", _representation(), NUM_USERS, ("click", "click"), SMALL)


def test_concat_pooling_checks_the_number_of_fields() -> None:
    config = ModelConfig(**{**SMALL.__dict__, "user_pooling": "concat"})
    model = build_model("dnn", _representation(), NUM_USERS, TASKS, config, num_user_fields=3)
    with pytest.raises(ConfigError, match="num_user_fields"):
        model(*_batch())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["dnn", "shared-bottom", "mmoe", "ple"])
def test_models_run_on_cuda(name: str) -> None:
    model = build_model(name, _representation(dense=True), NUM_USERS, TASKS, SMALL).to("cuda")
    logits = model(*(t.to("cuda") for t in _batch()))
    assert logits.device.type == "cuda" and logits.shape == (BATCH, 2)


def test_fast_dropout_drops_p_scales_the_rest_and_follows_the_torch_seed():
    from sidkit.ranking.layers import FastDropout

    x = torch.ones(400, 500)
    drop = FastDropout(0.1)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.005  # 200,000 draws: 4.5 standard errors
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation preserved
    torch.manual_seed(3)
    again = FastDropout(0.1)
    assert torch.equal(again(x), y)  # the torch seed fixes the mask
    assert not torch.equal(drop(x), y)  # and the stream moves on
    drop.eval()
    assert drop(x) is x
    w = torch.ones(10, 10, requires_grad=True)
    out = FastDropout(0.5)(w)
    out.sum().backward()
    assert torch.equal(w.grad, (out != 0).float() * 2.0)  # the gradient flows through kept units only
    with pytest.raises(ConfigError, match="dropout"):
        FastDropout(1.0)
