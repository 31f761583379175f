"""Shared fixtures: MovieLens-100K and its embeddings are loaded once per test session."""

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
def movielens_embeddings(movielens) -> np.ndarray:
    from sidkit.embed import embed_texts

    return embed_texts(list(movielens.catalog.text))
