"""DRQ-VAE and DRQ-VAE+CL: the loss terms against closed forms, the two stages, pairs, seeds, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sidkit.data.pairs import BehaviourPairs
from sidkit.errors import ConfigError, DataError
from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.networks import info_nce, kl_to_standard_normal

TINY = {"latent_dim": 4, "hidden_dims": (16,), "epochs": 3, "batch_size": 32, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clusters() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 12)) * 3
    return (centres[rng.integers(0, 6, 200)] + rng.normal(size=(200, 12)) * 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def pairs() -> BehaviourPairs:
    rng = np.random.default_rng(1)
    first = rng.integers(0, 200, 300)
    train = np.stack([first, (first + 1) % 200], axis=1)
    return BehaviourPairs(train=train, heldout=np.array([[0, 1]]), split_time=0, window=1)


@pytest.fixture(scope="module")
def fitted(clusters, pairs) -> dict[str, DRQVAE]:
    return {"plain": DRQVAE(2, 8, **TINY, seed=3).fit(clusters),
            "cl": DRQVAE(2, 8, contrastive=True, **TINY, seed=3).fit(clusters, pairs=pairs)}


def test_kl_equals_its_closed_form():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=generator)
    log_var = torch.randn(5, 3, generator=generator)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * log_var).exp()), torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mean, log_var), reference)
    assert torch.all(kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_info_nce_equals_a_direct_computation():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, generator=generator).double()
    b = torch.randn(4, 3, generator=generator).double()
    tau = 0.2

    def cos(u: torch.Tensor, v: torch.Tensor) -> float:
        return float(u @ v / (u.norm() * v.norm()))

    def one_way(x: torch.Tensor, y: torch.Tensor) -> float:
        total = 0.0
        for i in range(4):
            scores = [math.exp(cos(x[i], y[j]) / tau) for j in range(4)]
            total += -math.log(scores[i] / sum(scores))
        return total / 4

    expected = 0.5 * (one_way(a, b) + one_way(b, a))
    assert float(info_nce(a, b, tau)) == pytest.approx(expected, rel=1e-9)


def test_encode_is_rq_kmeans_of_the_latent_mean_and_decode_the_decoder_of_the_codeword_sum(clusters, fitted):
    tokenizer = fitted["plain"]
    net = tokenizer._net()
    with torch.no_grad():
        means = net.latent_mean(torch.from_numpy(clusters))
    ids = tokenizer.encode(clusters)
    np.testing.assert_array_equal(ids.codes, tokenizer.quantizer.encode(means.numpy()).codes)
    quantized = tokenizer.quantized(ids)
    assert quantized.shape == (200, 4)
    expected = sum(tokenizer.quantizer.codebooks[level][ids.codes[:, level]].numpy() for level in range(2))
    np.testing.assert_allclose(quantized, expected, atol=1e-6)
    with torch.no_grad():
        decoded = net.decode(torch.from_numpy(quantized)).numpy()
    np.testing.assert_allclose(tokenizer.decode(ids), decoded, atol=1e-6)


def test_history_holds_the_loss_parts(fitted):
    plain, cl = fitted["plain"].history, fitted["cl"].history
    assert plain is not None and cl is not None
    assert set(plain.epochs[0].train) == {"loss", "recon", "kl"}
    assert set(cl.epochs[0].train) == {"loss", "recon", "kl", "infonce"}
    assert plain.epochs[0].perplexity == ()  # stage 1 has no quantizer


@pytest.mark.parametrize("kind", ["plain", "cl"])
def test_save_and_load_give_identical_codes(kind, clusters, fitted, tmp_path):
    tokenizer = fitted[kind]
    tokenizer.save(tmp_path / kind)
    loaded = load_tokenizer(tmp_path / kind)
    assert isinstance(loaded, DRQVAE) and loaded.get_config() == tokenizer.get_config()
    ids = tokenizer.encode(clusters)
    np.testing.assert_array_equal(loaded.encode(clusters).codes, ids.codes)
    np.testing.assert_array_equal(loaded.decode(ids), tokenizer.decode(ids))
    assert loaded.history == tokenizer.history


def test_same_seed_same_codes_with_pairs(clusters, pairs, fitted):
    again = DRQVAE(2, 8, contrastive=True, **TINY, seed=3).fit(clusters, pairs=pairs)
    np.testing.assert_array_equal(again.encode(clusters).codes, fitted["cl"].encode(clusters).codes)
    assert again.history is not None and fitted["cl"].history is not None
    assert again.history.series("infonce") == fitted["cl"].history.series("infonce")


def test_contrastive_loss_pulls_pairs_together(clusters):
    # Pairs across far clusters: with a strong InfoNCE weight their latent means must get closer.
    far = np.array([[i, j] for i in range(0, 200, 7) for j in range(3, 200, 11)])[:200]
    train = BehaviourPairs(train=far, heldout=far[:1], split_time=0, window=1)
    options = {**TINY, "epochs": 6, "validation_share": 0.0}
    cosines = []
    for model in (DRQVAE(1, 4, **options, seed=0).fit(clusters),
                  DRQVAE(1, 4, contrastive=True, contrastive_weight=5.0, **options, seed=0).fit(clusters, pairs=train)):
        with torch.no_grad():
            means = torch.nn.functional.normalize(model._net().latent_mean(torch.from_numpy(clusters)), dim=1)
        cosines.append(float((means[far[:, 0]] * means[far[:, 1]]).sum(1).mean()))
    assert cosines[1] > cosines[0]


def test_pairs_are_required_for_cl_and_refused_without_it(clusters, pairs):
    with pytest.raises(ConfigError, match="behaviour pairs"):
        DRQVAE(2, 8, contrastive=True, **TINY).fit(clusters)
    with pytest.raises(ConfigError, match="contrastive=False"):
        DRQVAE(2, 8, **TINY).fit(clusters, pairs=pairs)
    with pytest.raises(DataError, match=r"\(P, 2\)"):
        DRQVAE(2, 8, contrastive=True, **TINY).fit(clusters, pairs=np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(DataError, match="no training pairs"):
        DRQVAE(2, 8, contrastive=True, **TINY).fit(clusters, pairs=np.zeros((0, 2), dtype=np.int64))
    with pytest.raises(DataError, match="rows"):
        DRQVAE(2, 8, contrastive=True, **TINY).fit(clusters, pairs=np.array([[0, 500]]))


def test_nan_input_and_bad_settings_fail_clearly(clusters, fitted):
    bad = clusters.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        DRQVAE(2, 8, **TINY).fit(bad)
    with pytest.raises(DataError, match="NaN"):
        fitted["plain"].encode(bad)
    with pytest.raises(ConfigError, match="temperature"):
        DRQVAE(2, 8, temperature=0)
    with pytest.raises(ConfigError, match="beta_kl"):
        DRQVAE(2, 8, beta_kl=-1.0)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from sidkit.data.synthetic import SyntheticConfig, write_synthetic

    out = tmp_path_factory.mktemp("synth") / "data"
    write_synthetic(SyntheticConfig(items=300, users=60, interactions=6000, dim=8, topics=(4, 4)), out,
                    progress=False)
    return out


def test_cli_fits_every_neural_method_and_cl_needs_the_dataset(dataset_dir, tmp_path, capsys):
    from sidkit.cli import main

    common = ["--levels", "2", "--codebook-size", "8", "--epochs", "2", "--batch-size", "64", "--latent-dim", "4"]
    for method in ("rq-vae", "rqp-vae", "drq-vae", "drq-vae-cl"):
        out = tmp_path / method
        assert main(["fit", "--method", method, *common, "--data", str(dataset_dir), "--out", str(out)]) == 0
        model = load_tokenizer(out)
        assert model.get_config()["epochs"] == 2 and model.get_config()["latent_dim"] == 4
        assert (out / "history.json").is_file()
    cl = load_tokenizer(tmp_path / "drq-vae-cl")
    assert isinstance(cl, DRQVAE) and cl.contrastive
    assert cl.history is not None and "infonce" in cl.history.epochs[0].train
    capsys.readouterr()
    assert main(["fit", "--method", "drq-vae-cl", *common, "--embeddings", str(dataset_dir / "embeddings.npy"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["fit", "--method", "rq-kmeans", "--epochs", "3", "--data", str(dataset_dir),
                 "--out", str(tmp_path / "y")]) == 2
    assert "neural methods" in capsys.readouterr().err
    assert main(["fit", "--method", "rq-kmeans", "--precision", "float32", "--data", str(dataset_dir),
                 "--out", str(tmp_path / "y")]) == 2
    assert "--precision apply to the neural methods" in capsys.readouterr().err
    assert main(["fit", "--method", "rq-vae", *common, "--precision", "half", "--data", str(dataset_dir),
                 "--out", str(tmp_path / "y")]) == 2
    assert "unknown precision 'half'" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["fit", "--method", "rq-vae", *common, "--precision", "float32", "--data", str(dataset_dir),
                 "--out", str(tmp_path / "f32")]) == 0
    f32 = load_tokenizer(tmp_path / "f32")
    assert f32.get_config()["bfloat16"] is False and f32.history.precision == "float32"
