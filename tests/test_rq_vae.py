"""RQ-VAE and RQP-VAE on tiny data: gradients, seeds, save/load, history, errors; and the training loop."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from sidkit.errors import ConfigError, DataError, NotFittedError
from sidkit.tokenizers import training
from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.history import EpochRecord, TrainingHistory
from sidkit.tokenizers.linear import MLP, Linear, fast_bfloat16, fused_mlp_works, gemm_dtype
from sidkit.tokenizers.networks import mlp, squared_error
from sidkit.tokenizers.rq_vae import RQPVAE, RQVAE, RQVAENet, warn_if_collapsed
from sidkit.tokenizers.training import StepOutput, TrainConfig, split_rows, train_network, training_dtype

TINY = {"latent_dim": 4, "hidden_dims": (16, 8), "epochs": 3, "batch_size": 32, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clusters() -> np.ndarray:
    """(240, 12) float32 points around 6 well separated centres."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 12)) * 3
    return (centres[rng.integers(0, 6, 240)] + rng.normal(size=(240, 12)) * 0.3).astype(np.float32)


def test_gradients_reach_the_encoder_through_the_quantizer():
    for rotation_trick in (False, True):
        torch.manual_seed(0)
        net = RQVAENet(6, (8,), 3, (4, 4), beta=0.25, rotation_trick=rotation_trick)
        x = torch.randn(16, 6)
        # Only the reconstruction term: without a path through the quantizer the encoder gets nothing.
        out = net.quantizer(net.encode(x))
        squared_error(net.decode(out.quantized), x).backward()
        for name, parameter in net.encoder.named_parameters():
            assert parameter.grad is not None and torch.count_nonzero(parameter.grad) > 0, name
            assert torch.isfinite(parameter.grad).all(), name


def test_linear_layer_matches_torch_in_values_and_gradients():
    torch.manual_seed(0)
    ours = Linear(7, 5)
    reference = torch.nn.Linear(7, 5)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(9, 7, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(9, 5)
    (ours(x) * upstream).sum().backward()
    (reference(x_ref) * upstream).sum().backward()
    torch.testing.assert_close(ours(x), reference(x_ref))
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad)


def test_bfloat16_gemms_stay_close_to_float32_and_keep_float32_gradients():
    torch.manual_seed(1)
    layer = Linear(32, 16)
    x = torch.randn(64, 32, requires_grad=True)
    exact = layer(x)
    exact.square().sum().backward()
    grads = x.grad.clone(), layer.weight.grad.clone()
    x.grad = layer.weight.grad = layer.bias.grad = None
    with gemm_dtype(torch.bfloat16):
        low = layer(x)
    low.square().sum().backward()
    assert low.dtype == torch.float32 and layer.weight.grad.dtype == torch.float32
    torch.testing.assert_close(low, exact, rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(x.grad, grads[0], rtol=5e-2, atol=0.2)
    torch.testing.assert_close(layer.weight.grad, grads[1], rtol=5e-2, atol=0.5)


def test_bfloat16_training_option_is_saved(clusters, tmp_path):
    tokenizer = RQVAE(2, 8, bfloat16=True, **TINY, seed=0).fit(clusters)
    assert tokenizer.get_config()["bfloat16"] is True
    tokenizer.save(tmp_path / "m")
    loaded = load_tokenizer(tmp_path / "m")
    np.testing.assert_array_equal(loaded.encode(clusters).codes, tokenizer.encode(clusters).codes)
    assert tokenizer.history.precision == loaded.history.precision == "bfloat16"
    assert json.loads((tmp_path / "m" / "history.json").read_text())["precision"] == "bfloat16"


def test_automatic_precision_is_bfloat16_only_on_a_cpu_that_has_it(monkeypatch, clusters):
    native = fast_bfloat16("cpu") and fused_mlp_works(torch.bfloat16)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_dtype(None, cpu) == (torch.bfloat16 if native else torch.float32)
    assert training_dtype(None, cuda) == torch.float32
    assert training_dtype(False, cpu) == torch.float32 and training_dtype(True, cuda) == torch.bfloat16
    monkeypatch.setattr(training, "fast_bfloat16", lambda device_type: False)
    assert training_dtype(None, cpu) == torch.float32
    tokenizer = RQVAE(2, 8, **TINY, seed=0).fit(clusters)
    assert tokenizer.get_config()["bfloat16"] is None and tokenizer.history.precision == "float32"


def _layer_by_layer(net: MLP, x: torch.Tensor) -> torch.Tensor:
    """The same stack through torch's own modules, one autograd node per layer."""
    for layer in net:
        x = torch.nn.functional.linear(x, layer.weight, layer.bias) if isinstance(layer, Linear) else layer(x)
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_mlp_matches_torch_layer_by_layer_in_values_and_gradients(dtype):
    if not fused_mlp_works(dtype):
        pytest.skip(f"no fused {dtype} MLP on this CPU")
    torch.manual_seed(2)
    net = mlp([24, 40, 16, 6])
    x = torch.randn(33, 24)
    upstream = torch.randn(33, 6)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 5e-2, "atol": 5e-2}
    results = []
    for fused in (True, False):
        net.zero_grad()
        inputs = x.clone().requires_grad_(True)
        with gemm_dtype(dtype):
            out = net(inputs) if fused else _layer_by_layer(net, inputs)
        assert (out.grad_fn.name() == "_FusedMLPBackward") == fused
        (out * upstream).sum().backward()
        results.append([out.detach(), inputs.grad, *(p.grad.clone() for p in net.parameters())])
    for ours, reference in zip(*results, strict=True):
        assert ours.dtype == torch.float32
        scale = float(reference.abs().max())
        torch.testing.assert_close(ours / scale, reference / scale, **tolerance)


def test_an_mlp_that_is_not_linear_relu_runs_layer_by_layer():
    net = MLP(Linear(5, 4), torch.nn.Tanh(), Linear(4, 3))
    x = torch.randn(2, 5)
    out = net(x)
    assert out.grad_fn.name() != "_FusedMLPBackward"
    torch.testing.assert_close(out, _layer_by_layer(net, x))


def test_reconstruction_loss_sums_over_dimensions_and_averages_over_the_batch():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    assert float(squared_error(x_hat, x)) == pytest.approx((4.0 + 3.0) / 2)


@pytest.fixture(scope="module")
def fitted(clusters) -> dict[type, RQVAE]:
    """One tiny fit of each class, seed 7, rotation trick on for RQPVAE; the global RNG checked around it."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    models = {RQVAE: RQVAE(2, 8, **TINY, seed=7).fit(clusters),
              RQPVAE: RQPVAE(2, 8, rotation_trick=True, **TINY, seed=7).fit(clusters)}
    assert torch.equal(torch.rand(3), expected), "fit must not move the global torch RNG"
    return models


@pytest.mark.parametrize("cls", [RQVAE, RQPVAE])
def test_fit_encode_decode_shapes_and_history(cls, clusters, fitted):
    tokenizer = fitted[cls]
    ids = tokenizer.encode(clusters)
    assert ids.codes.shape == (240, 2) and ids.sizes == (8, 8)
    assert tokenizer.quantized(ids).shape == (240, 4)  # latent space
    assert tokenizer.decode(ids).shape == (240, 12)  # input space
    history = tokenizer.history
    assert history is not None and 1 <= len(history) <= 3
    record = history.epochs[0]
    assert set(record.train) >= {"loss", "recon", "commit"}
    assert ("codebook" in record.train) == (cls is RQVAE)  # EMA codebooks have no codebook term
    assert len(record.perplexity) == 2 and all(1.0 <= p <= 8.0 for p in record.perplexity)
    assert len(record.active) == 2 and record.validation is not None


@pytest.mark.parametrize("cls", [RQVAE, RQPVAE])
def test_same_seed_same_codes_and_weights(cls, clusters, fitted):
    first = fitted[cls]
    second = cls(**first.get_params()).fit(clusters)
    np.testing.assert_array_equal(first.encode(clusters).codes, second.encode(clusters).codes)
    for (name, a), (_, b) in zip(first._state_dict().items(), second._state_dict().items(), strict=True):
        if name != "history.seconds":
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("cls", [RQVAE, RQPVAE])
def test_save_and_load_give_identical_codes_and_history(cls, clusters, fitted, tmp_path):
    tokenizer = fitted[cls]
    tokenizer.save(tmp_path / "model")
    loaded = load_tokenizer(tmp_path / "model")
    assert type(loaded) is cls and loaded.get_config() == tokenizer.get_config()
    ids = tokenizer.encode(clusters)
    np.testing.assert_array_equal(loaded.encode(clusters).codes, ids.codes)
    np.testing.assert_array_equal(loaded.decode(ids), tokenizer.decode(ids))
    np.testing.assert_array_equal(loaded.quantized(ids), tokenizer.quantized(ids))
    assert loaded.history == tokenizer.history
    saved = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(saved["epochs"]) == len(tokenizer.history)


def test_nan_input_fails_with_a_clear_error(clusters, fitted):
    bad = clusters.copy()
    bad[5, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RQVAE(2, 8, **TINY).fit(bad)
    with pytest.raises(DataError, match="NaN"):
        fitted[RQVAE].encode(bad)


def test_errors_for_bad_settings_and_too_little_data(clusters):
    with pytest.raises(ConfigError, match="beta"):
        RQVAE(2, 8, beta=-1)
    with pytest.raises(ConfigError, match="decay"):
        RQPVAE(2, 8, decay=1.0)
    with pytest.raises(ConfigError, match="dead_code_steps"):
        RQPVAE(2, 8, dead_code_steps=0)
    with pytest.raises(ConfigError, match="batch_size"):
        RQVAE(2, 8, batch_size=0)
    with pytest.raises(ConfigError, match="latent_dim"):
        RQVAE(2, 8, latent_dim=0)
    with pytest.raises(DataError, match="cannot fill a codebook"):
        RQVAE(2, 64, **TINY).fit(clusters[:40])
    with pytest.raises(NotFittedError):
        RQVAE(2, 8).encode(clusters)


def test_collapse_is_warned_about():
    record = EpochRecord(0, {"loss": 1.0}, None, (1.2, 30.0), (2, 40), 0.1)
    with pytest.warns(RuntimeWarning, match=r"collapse \(level 0: perplexity 1.2 of 64 codes\)"):
        warn_if_collapsed(TrainingHistory((record,), None, False), (64, 64), "RQVAE")
    healthy = EpochRecord(0, {"loss": 1.0}, None, (20.0, 30.0), (40, 40), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_collapsed(TrainingHistory((healthy,), None, False), (64, 64), "RQVAE")


def test_codebooks_start_from_kmeans_on_encoder_outputs(clusters):
    tokenizer = RQVAE(1, 6, **{**TINY, "epochs": 1, "learning_rate": 1e-9, "validation_share": 0.0}, seed=0)
    tokenizer.fit(clusters)
    # With a negligible learning rate the k-means start is what we see: six clusters, six codes.
    codes = tokenizer.encode(clusters).codes[:, 0]
    assert len(np.unique(codes)) == 6


class _Quadratic(torch.nn.Module):
    """Loss (w - mean(x))^2: the minimum is the mean of the data."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def training_loss(self, x: torch.Tensor, generator: torch.Generator) -> StepOutput:
        loss = (self.w - x.mean(0)).square().sum()
        return StepOutput(loss, {"quad": loss})


def test_training_loop_converges_records_and_stops_early():
    x = torch.full((64, 2), 3.0)
    net = _Quadratic()
    config = TrainConfig(epochs=400, batch_size=16, learning_rate=0.1, weight_decay=0.0, patience=3)
    history = train_network(net, x, config, seed=0)
    torch.testing.assert_close(net.w.detach(), torch.full((2,), 3.0), atol=1e-2, rtol=0)
    assert history.stopped_early and len(history) < 400
    assert history.best_epoch is not None
    best = history.epochs[history.best_epoch].validation
    assert best == min(r.validation for r in history.epochs if r.validation is not None)
    assert history.series("quad")[0] > history.series("quad")[-1]
    assert TrainingHistory.from_tensors(history.to_tensors()) == history


def test_training_loop_raises_on_divergence():
    x = torch.tensor([[np.inf, 0.0]] * 8)
    with pytest.raises(Exception, match="diverged"):
        train_network(_Quadratic(), x, TrainConfig(epochs=2, batch_size=4, validation_share=0.0), seed=0)


def test_split_rows_is_seeded_and_keeps_a_training_row():
    train, held = split_rows(10, 0.3, torch.Generator().manual_seed(0))
    assert len(held) == 3 and sorted(train.tolist() + held.tolist()) == list(range(10))
    again, _ = split_rows(10, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(train, again)
    train, held = split_rows(1, 0.5, torch.Generator().manual_seed(0))
    assert len(train) == 1 and len(held) == 0


class _ThreadProbe(_Quadratic):
    """Records torch's intra-op thread count at every training step."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(2, 2))  # a 2-D weight: 4 multiply-adds per row
        self.seen: list[int] = []

    def training_loss(self, x: torch.Tensor, generator: torch.Generator) -> StepOutput:
        self.seen.append(torch.get_num_threads())
        return super().training_loss(x @ self.scale, generator)


def test_small_training_steps_run_on_one_thread_and_large_ones_on_all(monkeypatch):
    config = TrainConfig(epochs=2, batch_size=4, validation_share=0.25, patience=None)
    assert training.step_macs(_ThreadProbe(), config.batch_size) == 4 * 4
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = _ThreadProbe()
        train_network(small, torch.ones(16, 2), config, seed=0)
        assert set(small.seen) == {1} and len(small.seen) > 6  # training steps and validation
        assert torch.get_num_threads() == 2  # restored after the fit
        monkeypatch.setattr(training, "PARALLEL_STEP_MACS", 16)  # now at the threshold: parallel steps
        large = _ThreadProbe()
        train_network(large, torch.ones(16, 2), config, seed=0)
        assert set(large.seen) == {2}
    finally:
        torch.set_num_threads(before)
