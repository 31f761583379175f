"""Shared fixtures: MovieLens-100K and its embeddings, loaded once per test session; one torch thread."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SIDKIT_PROGRESS", "0")
# One thread unless a test asks for more (the suite shares its cores with other jobs); set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def movielens():
    from sidkit.data.movielens import load_movielens_100k

    return load_movielens_100k()


@pytest.fixture(scope="session")
def movielens_1m():
    from sidkit.data.movielens_1m import load_movielens_1m

    return load_movielens_1m()


@pytest.fixture(scope="session")
def movielens_embeddings(movielens) -> np.ndarray:
    from sidkit.embed import embed_texts

    return embed_texts(list(movielens.catalog.text))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores); a module opts in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def topic_walks(*, items: int = 60, topics: int = 6, users: int = 40, length: int = 14, dim: int = 8,
                seed: int = 0):
    """A tiny next-item Dataset: items in ``topics`` clusters (embeddings near their topic's centre), and
    users who walk mostly within a topic (the next item is usually the next one of the same topic), with
    increasing timestamps that repeat now and then (ties)."""
    from sidkit.data.catalog import ItemCatalog
    from sidkit.data.dataset import Dataset
    from sidkit.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    topic = np.arange(items) % topics
    centres = rng.normal(size=(topics, dim)) * 3.0
    embeddings = (centres[topic] + rng.normal(size=(items, dim)) * 0.3).astype(np.float32)
    catalog = ItemCatalog(np.arange(1, items + 1), np.array([f"item {i}" for i in range(items)], dtype=object),
                          embeddings)
    rows_user, rows_item, rows_time = [], [], []
    for user in range(users):
        t = int(rng.integers(0, 1000))
        current = int(rng.integers(0, items))
        seen: set[int] = set()
        for _ in range(length):
            while current in seen:  # no repeats, as in MovieLens
                current = (current + 1) % items
            seen.add(current)
            rows_user.append(user + 100)
            rows_item.append(current + 1)
            rows_time.append(t)
            t += 40 * int(rng.integers(0, 3))  # 0: a tie with the previous interaction
            step = topics if rng.random() < 0.85 else int(rng.integers(1, items))
            current = (current + step) % items
    return Dataset(catalog, Interactions(np.array(rows_user), np.array(rows_item), np.array(rows_time)))


@pytest.fixture(scope="session")
def walks():
    return topic_walks()


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (they are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
