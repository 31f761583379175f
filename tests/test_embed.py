"""Text embeddings with the bundled all-MiniLM-L6-v2: shape, semantics, cache, dataset directory, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sidkit import embed
from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset, load_dataset, save_dataset
from sidkit.data.interactions import Interactions
from sidkit.embed import MODEL_DIM, MODEL_NAME, embed_dataset, embed_texts
from sidkit.errors import ConfigError, DataError

TEXTS = [
    "a film about astronauts in space",
    "space travel movie",
    "a cookbook of pasta recipes",
    "Italian cooking: fresh pasta and sauces",
    "",
    "Toy Story (1995) Animation|Children's|Comedy",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SIDKIT_CACHE", str(cache))
    return cache


def test_shape_dtype_norm() -> None:
    vectors = embed_texts(TEXTS, cache=False, progress=False)
    assert vectors.shape == (len(TEXTS), MODEL_DIM) == (6, 384)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_semantic_sanity() -> None:
    v = embed_texts(TEXTS[:4], cache=False, progress=False)
    space, space_movie, pasta, cooking = v
    assert space @ space_movie > space @ pasta + 0.2
    assert pasta @ cooking > pasta @ space_movie + 0.2


def test_deterministic_and_order_independent_of_batching() -> None:
    first = embed_texts(TEXTS, cache=False, progress=False)
    again = embed_texts(TEXTS, cache=False, progress=False)
    np.testing.assert_array_equal(first, again)
    small_batches = embed_texts(TEXTS, cache=False, batch_size=2, progress=False)
    np.testing.assert_allclose(small_batches, first, atol=1e-5)
    reversed_texts = embed_texts(TEXTS[::-1], cache=False, progress=False)
    np.testing.assert_allclose(reversed_texts[::-1], first, atol=1e-5)  # rows follow the input order


def test_cache_hit_skips_the_model(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed = embed_texts(TEXTS, progress=False)
    files = list((private_cache / "embeddings").glob("*.npy"))
    assert len(files) == 1

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded on a cache hit")

    monkeypatch.setattr(embed, "load_model", no_model)
    cached = embed_texts(np.array(TEXTS, dtype=object), progress=False)
    np.testing.assert_array_equal(cached, computed)
    assert cached.dtype == np.float32
    # Any change to the texts is a miss, which would need the model.
    with pytest.raises(AssertionError, match="loaded"):
        embed_texts([*TEXTS[:-1], TEXTS[-1] + " "], progress=False)
    with pytest.raises(AssertionError, match="loaded"):
        embed_texts(TEXTS[::-1], progress=False)


def test_corrupt_cache_is_recomputed(private_cache: Path) -> None:
    computed = embed_texts(TEXTS[:2], progress=False)
    (path,) = (private_cache / "embeddings").glob("*.npy")
    path.write_bytes(b"not an npy file")
    np.testing.assert_allclose(embed_texts(TEXTS[:2], progress=False), computed, atol=1e-6)
    assert np.load(path).shape == (2, MODEL_DIM)


def test_model_identity_is_stable() -> None:
    assert embed.model_identity() == embed.model_identity(MODEL_NAME)
    assert embed.model_identity() == embed.model_identity(embed.bundled_model_path())
    assert len(embed.model_identity()) == 64


def test_embed_dataset(tmp_path: Path) -> None:
    ids = np.array([30, 10, 20])
    catalog = ItemCatalog(ids, np.array(["space travel movie", "pasta recipes", "a jazz album"],
                                        dtype=object))
    inter = Interactions(np.array([1, 1, 2]), np.array([10, 20, 30]), np.array([1, 2, 3]))
    directory = save_dataset(Dataset(catalog, inter), tmp_path / "data")
    assert not (directory / "embeddings.npy").exists()

    vectors = embed_dataset(directory, progress=False)
    assert vectors.shape == (3, MODEL_DIM)
    assert (directory / "embeddings.npy").is_file()
    loaded = load_dataset(directory)
    assert loaded.catalog.embeddings is not None
    np.testing.assert_array_equal(loaded.catalog.item_ids, ids)
    np.testing.assert_array_equal(loaded.catalog.embeddings, vectors)
    # Aligned row by row: each row is the embedding of that row's text.
    np.testing.assert_allclose(loaded.catalog.embeddings, embed_texts(list(catalog.text), progress=False),
                               atol=1e-6)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["embedding_model"] == MODEL_NAME and manifest["embedding_dim"] == MODEL_DIM


@pytest.mark.parametrize(("texts", "match"), [
    ([], "no texts"),
    (["fine", None], "not strings"),
    (["fine", 3], "not strings"),
    ("one string", "one string"),
])
def test_bad_texts(texts: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        embed_texts(texts, progress=False)  # type: ignore[arg-type]


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a directory nor a model in the local Hugging Face cache"):
        embed_texts(["x"], model=tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match="unknown device"):
        embed_texts(["x"], device="gpu-please")
    with pytest.raises(ConfigError, match="batch_size"):
        embed_texts(["x"], batch_size=0)
    with pytest.raises(DataError, match="does not exist"):
        embed_dataset(tmp_path / "no-such-dir", progress=False)


def test_cuda_when_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        embed_texts(["x"], device="cuda")


def test_import_is_light() -> None:
    code = ("import sys, sidkit, sidkit.embed; "
            "heavy = [m for m in ('sentence_transformers', 'transformers', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def _fake_hub_cache(root: Path, repo: str) -> Path:
    """A Hugging Face cache holding ``repo`` as a snapshot whose files link to the bundled model's."""
    snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for source in Path(embed.bundled_model_path()).iterdir():
        (snapshot / source.name).symlink_to(source)
    (root / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (root / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0123abc")
    return snapshot


def test_a_model_name_resolves_in_the_local_hub_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_hub_cache(tmp_path / "hub", "sentence-transformers/my-minilm")
    assert embed.resolve_model("sentence-transformers/my-minilm") == ("sentence-transformers/my-minilm", str(snapshot))
    assert embed.resolve_model("my-minilm") == ("my-minilm", str(snapshot))  # short sentence-transformers name
    with pytest.raises(ConfigError, match="huggingface-cli download"):
        embed.resolve_model("someone/not-cached-model")
    named = embed_texts(TEXTS[:3], model="my-minilm", cache=False, progress=False)
    np.testing.assert_allclose(named, embed_texts(TEXTS[:3], cache=False, progress=False), atol=1e-6)


def test_cli_embed_with_another_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sidkit.cli import main

    catalog = ItemCatalog(np.array([1, 2]), np.array(["space travel movie", "pasta recipes"], dtype=object))
    directory = save_dataset(Dataset(catalog, Interactions(np.array([1]), np.array([2]), np.array([1]))),
                             tmp_path / "data")
    copy = tmp_path / "my-model"
    copy.mkdir()
    for source in Path(embed.bundled_model_path()).iterdir():
        (copy / source.name).symlink_to(source)
    assert main(["embed", "--data", str(directory), "--model", str(copy), "--no-progress"]) == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["embedding_model"] == "my-model" and manifest["embedding_dim"] == MODEL_DIM
    assert main(["embed", "--data", str(directory), "--model", "no-such-model-anywhere"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model-anywhere" in err and "Fix:" in err and "Traceback" not in err
