"""Trie-constrained beam search: only valid, distinct items; exhaustive top-K where the beam covers the trie."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sidkit.errors import DataError
from sidkit.retrieval.beam import constrained_beam_search
from sidkit.retrieval.tiger import TigerConfig, TigerModel
from sidkit.retrieval.trie import SidTrie

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = (3, 4, 2)


def _codes(n: int = 14, seed: int = 0) -> np.ndarray:
    every = np.array(list(itertools.product(*[range(s) for s in SIZES])))
    rng = np.random.default_rng(seed)
    return every[np.sort(rng.choice(len(every), n, replace=False))]


def _table_step(tables: list[torch.Tensor]):
    """A fixed 'model': the log-probability of code c at depth d is a random function of (prefix, c)."""

    def step(depth: int, prefixes: torch.Tensor) -> torch.Tensor:
        key = torch.zeros(prefixes.shape[:2], dtype=torch.int64)
        for level in range(depth):
            key = key * SIZES[level] + prefixes[..., level]
        return tables[depth][key]

    return step


def _random_tables(examples: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tables = []
    prefixes = 1
    for size in SIZES:
        logits = torch.randn((examples, prefixes, size), generator=generator)
        tables.append(F.log_softmax(logits, dim=-1))
        prefixes *= size
    return tables


def _exhaustive(tables: list[torch.Tensor], codes: np.ndarray, example: int) -> np.ndarray:
    scores = np.zeros(len(codes))
    for row, code in enumerate(codes):
        key = 0
        for depth, c in enumerate(code):
            scores[row] += float(tables[depth][example, key, c])
            key = key * SIZES[depth] + c
    return scores


def _batched(tables: list[torch.Tensor]):
    def step(depth: int, prefixes: torch.Tensor) -> torch.Tensor:
        key = torch.zeros(prefixes.shape[:2], dtype=torch.int64)
        for level in range(depth):
            key = key * SIZES[level] + prefixes[..., level]
        table = tables[depth]  # (E, P, K)
        return torch.gather(table, 1, key.unsqueeze(-1).expand(-1, -1, table.shape[-1]))

    return step


def test_trie_tables_match_the_codes():
    codes = _codes()
    trie = SidTrie.build(codes, SIZES)
    for row, code in enumerate(codes):
        node = 0
        for depth, c in enumerate(code):
            node = int(trie.children[depth][node, c])
            assert node >= 0
        assert node == row  # the leaf is the item's row
    assert int(trie.leaf_counts[0][0]) == len(codes)
    with pytest.raises(DataError, match="share a Semantic ID"):
        SidTrie.build(np.vstack([codes, codes[:1]]), SIZES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_covering_the_trie_equals_exhaustive_top_k(seed):
    codes = _codes(seed=seed)
    trie = SidTrie.build(codes, SIZES)
    examples = 5
    tables = _random_tables(examples, seed)
    result = constrained_beam_search(_batched(tables), trie, examples, beam=len(codes))
    for e in range(examples):
        scores = _exhaustive(tables, codes, e)
        order = np.argsort(-scores, kind="stable")
        assert result.items[e].tolist() == order.tolist()
        assert np.allclose(result.scores[e].numpy(), scores[order], atol=1e-5)


def test_a_narrow_beam_returns_only_valid_distinct_items_best_first():
    codes = _codes(n=20, seed=4)
    trie = SidTrie.build(codes, SIZES, items=np.arange(0, 20, 2), num_items=20)  # only even rows are valid
    tables = _random_tables(6, 7)
    result = constrained_beam_search(_batched(tables), trie, 6, beam=4)
    for e in range(6):
        items = result.items[e].tolist()
        assert len(set(items)) == 4 and all(item % 2 == 0 for item in items)
        scores = _exhaustive(tables, codes, e)
        assert np.allclose(result.scores[e].numpy(), scores[items], atol=1e-5)
        assert np.all(np.diff(result.scores[e].numpy()) <= 1e-7)


def test_excluded_items_are_never_returned_and_the_rest_stays_exact():
    codes = _codes(n=12, seed=2)
    trie = SidTrie.build(codes, SIZES)
    tables = _random_tables(3, 5)
    excluded = torch.zeros((3, 12), dtype=torch.bool)
    excluded[0, [0, 1, 2, 3]] = True
    excluded[1, :11] = True  # one item left: the other beams come back empty
    result = constrained_beam_search(_batched(tables), trie, 3, beam=12, excluded=excluded)
    scores = _exhaustive(tables, codes, 0)
    allowed = [i for i in np.argsort(-scores, kind="stable") if i >= 4]
    assert result.items[0, :8].tolist() == allowed
    assert result.items[0, 8:].tolist() == [-1] * 4
    assert result.items[1].tolist() == [11] + [-1] * 11
    assert torch.isinf(result.scores[1, 1:]).all()


@pytest.mark.parametrize("encoder", ["causal", "bidirectional"])
def test_tiger_beam_search_equals_scoring_every_item(encoder):
    """On a tiny untrained TIGER, a beam that covers the trie ranks items exactly as teacher-forced scoring."""
    torch.manual_seed(0)
    codes = _codes(n=16, seed=3)
    config = TigerConfig(width=16, heads=2, encoder_layers=1, decoder_layers=1,
                    hidden=32, user_buckets=4, encoder=encoder)
    model = TigerModel(SIZES, history=2, config=config)
    model.eval()
    offsets = torch.tensor(model.code_offsets)
    items = (torch.from_numpy(codes) + offsets)[[1, 2]].unsqueeze(0).repeat(2, 1, 1)  # (2 examples, 2 items, D)
    items[1, 0] = 0  # the second example has one history item (padding first)
    users = torch.tensor([model.user_offset, model.user_offset + 1])
    trie = SidTrie.build(codes, SIZES)
    with torch.no_grad():
        memory, present = model.encode(users, items)
        mask = present[:, None, None, :]

        def step(depth: int, prefixes: torch.Tensor) -> torch.Tensor:
            states = model.decode(memory, mask, prefixes)[:, -1]
            return F.log_softmax(model.level_logits(states, depth), dim=-1).view(*prefixes.shape[:2], -1)

        result = constrained_beam_search(step, trie, 2, beam=16)
        target = torch.from_numpy(codes)
        rows = torch.arange(len(codes))
        for e in range(2):
            one = [(k[e:e + 1].expand(len(codes), -1, -1, -1), v[e:e + 1].expand(len(codes), -1, -1, -1))
                   for k, v in memory]
            states = model.decode(one, mask[e:e + 1].expand(len(codes), -1, -1, -1), target[:, None, :-1])
            scores = sum(F.log_softmax(model.level_logits(states[:, d], d), dim=-1)[rows, target[:, d]]
                         for d in range(len(SIZES)))
            order = torch.argsort(scores, descending=True, stable=True)
            assert result.items[e].tolist() == order.tolist()
            assert torch.allclose(result.scores[e], scores[order], atol=1e-5)


def test_causal_training_targets_see_only_their_past():
    """Changing a window's later items leaves an earlier target's loss unchanged, and changes a later one's."""
    torch.manual_seed(1)
    codes = _codes(n=16, seed=5)
    model = TigerModel(SIZES, history=3, config=TigerConfig(width=16, heads=2, encoder_layers=2, decoder_layers=2,
                    hidden=32, user_buckets=4))
    model.eval()
    offsets = torch.tensor(model.code_offsets)
    users = torch.tensor([model.user_offset])

    def loss(window: list[int], target: int) -> float:
        tokens = torch.from_numpy(codes)[torch.tensor([window])] + offsets
        only = torch.zeros((1, 3), dtype=torch.bool)
        only[0, target] = True
        with torch.no_grad():
            return float(model.loss(users, tokens[:, :3], tokens[:, 1:] - offsets, only))

    assert loss([3, 7, 1, 9], 0) == pytest.approx(loss([3, 7, 12, 4], 0), abs=1e-6)  # target 7 reads item 3 only
    assert loss([3, 7, 1, 9], 1) == pytest.approx(loss([3, 7, 1, 4], 1), abs=1e-6)
    assert loss([3, 7, 1, 9], 2) != pytest.approx(loss([3, 7, 5, 9], 2), abs=1e-4)  # item 5 replaces 1 in its past
