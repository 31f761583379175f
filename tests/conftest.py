"""Shared fixtures: MovieLens-100K and its embeddings, loaded once per test session; one torch thread."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SIDKIT_PROGRESS", "0")


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
