"""The retrievers on a tiny dataset: valid output, the exclusion rule, determinism, and that they learn."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.retrieval.data import build_next_item_data
from sidkit.retrieval.metrics import recall_at, reserve_new_items
from sidkit.retrieval.popularity import Popularity
from sidkit.retrieval.sasrec import Sasrec, SasrecConfig
from sidkit.retrieval.tiger import Tiger, TigerConfig, tiger_codes
from sidkit.tokenizers.rq_kmeans import RQKMeans

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_TIGER = TigerConfig(width=32, heads=2, encoder_layers=1, decoder_layers=1,
                    hidden=64, user_buckets=16, epochs=4, patience=4, batch_size=16,
                         learning_rate=3e-3, beam=10, valid_examples=40, eval_batch_size=16, precision="float32")
TINY_SASREC = SasrecConfig(width=32, heads=2, layers=1, hidden=64, epochs=6, patience=6, batch_size=16,
                           learning_rate=3e-3, dropout=0.0, precision="float32")
TWO_EPOCH_SASREC = SasrecConfig(**{**TINY_SASREC.to_dict(), "epochs": 2})
# float32: bfloat16 autocast pays on ML-1M-sized GEMMs, but costs many times more on these tiny ones.


@pytest.fixture(scope="module")
def data(walks):
    return build_next_item_data(walks, history=5, item_holdout=0.1, seed=0)


@pytest.fixture(scope="module")
def codes(walks):
    sids = RQKMeans(levels=2, codebook_size=6, seed=0).fit(walks.catalog.embeddings).encode(walks.catalog.embeddings)
    return tiger_codes(sids, walks.catalog.item_ids)


def _check_ranked(ranked: np.ndarray, data, k: int) -> None:
    assert ranked.shape == (len(data.test), k)
    for e, row in enumerate(ranked):
        real = row[row >= 0]
        assert len(set(real.tolist())) == len(real)  # distinct items
        assert data.candidates[real].all()
        start, stop = data.test.exclude_offsets[e], data.test.exclude_offsets[e + 1]
        assert not np.isin(real, data.test.exclude_items[start:stop]).any()


def test_popularity_ranks_training_counts_by_hand(data):
    ranked = Popularity().fit(data).recommend(data.test, 5)
    _check_ranked(ranked, data, 5)
    counts = data.train_counts
    for e in range(3):
        start, stop = data.test.exclude_offsets[e], data.test.exclude_offsets[e + 1]
        allowed = [i for i in range(data.num_items) if data.candidates[i]
                   and i not in set(data.test.exclude_items[start:stop].tolist())]
        expected = sorted(allowed, key=lambda i: (-counts[i], i))[:5]
        assert ranked[e].tolist() == expected


@pytest.fixture(scope="module")
def tiger(data, codes):
    return Tiger(codes, TINY_TIGER, seed=0, progress=False).fit(data)


@pytest.fixture(scope="module")
def sasrec(data):
    return Sasrec(TINY_SASREC, seed=1, progress=False).fit(data)


def test_tiger_returns_valid_items_and_learns(data, tiger):
    ranked = tiger.recommend(data.test, 10)
    _check_ranked(ranked, data, 10)
    assert tiger.history_ is not None and tiger.history_.epochs[-1].train_loss < tiger.history_.epochs[0].train_loss
    popular = Popularity().fit(data).recommend(data.test, 10)
    # Walks mostly step within a topic, which SIDs of the embeddings encode: tiger must beat popularity.
    assert recall_at(ranked, data.test.targets, 10) > recall_at(popular, data.test.targets, 10)


@pytest.mark.parametrize("encoder", ["causal", "bidirectional"])
def test_tiger_same_seed_same_result(data, codes, encoder):
    config = TigerConfig(**{**TINY_TIGER.to_dict(), "encoder": encoder, "epochs": 2})
    first = Tiger(codes, config, seed=3, progress=False).fit(data)
    ranked = first.recommend(data.test, 10)
    _check_ranked(ranked, data, 10)
    assert np.array_equal(ranked, Tiger(codes, config, seed=3, progress=False).fit(data).recommend(data.test, 10))


def test_tiger_reaches_new_items_that_sasrec_cannot(data, tiger, sasrec):
    ours, theirs = tiger.recommend(data.test, 10), sasrec.recommend(data.test, 10)
    new = data.heldout
    assert new[ours[ours >= 0]].any()  # held-out items come out of tiger's beams
    # Never a target, they are only ever negatives of sasrec's full softmax: pushed down, below their share.
    assert new[theirs].mean() < new[data.candidates].mean()


def test_sasrec_is_deterministic_and_learns(data, sasrec):
    ranked = sasrec.recommend(data.test, 10)
    _check_ranked(ranked, data, 10)
    again = Sasrec(TWO_EPOCH_SASREC, seed=2, progress=False)
    assert np.array_equal(again.fit(data).recommend(data.test, 10),
                          Sasrec(TWO_EPOCH_SASREC, seed=2, progress=False).fit(data).recommend(data.test, 10))
    popular = Popularity().fit(data).recommend(data.test, 10)
    assert recall_at(ranked, data.test.targets, 10) > recall_at(popular, data.test.targets, 10)


def test_tiger_refuses_k_above_the_beam_and_shared_sids(data, codes, tiger):
    with pytest.raises(ConfigError, match="larger than the beam"):
        tiger.recommend(data.test, 11)
    shared = SemanticIds(np.zeros((data.num_items, 2), dtype=np.int64), (2, 2))
    with pytest.raises(DataError, match="not unique"):
        Tiger(shared, TINY_TIGER)


def test_reserved_positions_hold_the_best_unseen_items_by_hand():
    ranked = np.arange(10)[None, :]
    new = np.array([[50, 51, 52, -1, -1, -1, -1, -1, -1, -1]])
    assert reserve_new_items(ranked, new, 0.2).tolist() == [[0, 1, 2, 3, 50, 4, 5, 6, 7, 51]]
    # An unseen item the model already ranked keeps its place and is not repeated; when the unseen
    # items run out, a reserved position takes the next regular item.
    ranked = np.array([[50, 0, 1, 2, 3, 4, 5, 6, 7, 8]])
    assert reserve_new_items(ranked, new, 0.2).tolist() == [[50, 0, 1, 2, 51, 3, 4, 5, 6, 52]]
    short = np.array([[60] + [-1] * 9])
    assert reserve_new_items(np.arange(10)[None, :], short, 0.2).tolist() == [[0, 1, 2, 3, 60, 4, 5, 6, 7, 8]]
    with pytest.raises(ConfigError, match="reserved share"):
        reserve_new_items(ranked, new, 0.0)


@pytest.mark.parametrize("name", ["popularity", "sasrec", "tiger"])
def test_candidates_narrow_every_retriever_to_the_unseen_items(name, data, tiger, sasrec):
    retriever = {"popularity": Popularity().fit(data), "sasrec": sasrec, "tiger": tiger}[name]
    unseen = data.candidates & (data.train_counts == 0)
    assert unseen.sum() >= 3  # the fixture holds items out of training
    ranked = retriever.recommend(data.test, 3, candidates=unseen)
    _check_ranked(ranked, data, 3)
    real = ranked[ranked >= 0]
    assert len(real) > 0 and unseen[real].all()


def test_a_reserved_share_shows_tigers_best_unseen_items_at_every_fifth_position(walks):
    from sidkit.retrieval.experiment import RetrieveSettings, run_model

    data = build_next_item_data(walks, history=5, item_holdout=0.2, seed=0)
    unseen = data.candidates & (data.train_counts == 0)
    x = walks.catalog.embeddings
    sids = RQKMeans(levels=2, codebook_size=6, seed=0).fit(x).encode(x)
    model = Tiger(tiger_codes(sids, walks.catalog.item_ids), TINY_TIGER, seed=0, progress=False).fit(data)
    best_unseen = model.recommend(data.test, 10, candidates=unseen)
    ranked = reserve_new_items(model.recommend(data.test, 10), best_unseen, 0.2)
    _check_ranked(ranked, data, 10)
    assert unseen[ranked[:, [4, 9]]].all()
    for row, new in zip(ranked, best_unseen, strict=True):
        assert row[4] in new[:2] or unseen[row[:4]].any()  # the best unseen item not already shown
    # run_model applies the same lists to the metrics (same seed, same model, same test lists).
    settings = RetrieveSettings(cutoffs=(5, 10), tiger=TINY_TIGER, progress=False, new_item_share=0.2)
    result = run_model("tiger", data, sids, settings, seed=0, item_ids=walks.catalog.item_ids)
    hits = (ranked[:, :10] == data.test.targets[:, None]).any(axis=1)
    assert result.metrics.get("recall", 10, "new") == pytest.approx(hits[data.test.new].mean())
