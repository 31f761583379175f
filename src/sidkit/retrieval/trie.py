"""The trie of valid Semantic IDs, as one dense child table per depth (for batched constrained decoding).

Depth d holds the distinct SID prefixes of length d (depth 0: the root), numbered in lexicographic
order. ``children[d][node, code]`` is the node at depth d + 1 reached by appending ``code``, or -1;
at the last depth it is the catalogue row of the item whose SID ends there. Every SID must be unique
(append the collision digit first, :meth:`sidkit.ids.SemanticIds.with_dedup_digit`), so each leaf is
one item. The tables take ``sum_d P_d * K_d`` int64 entries (P_d prefixes, K_d codes): 4 MB for
ML-1M's 3,706 items at 3 x 128 codes plus a collision digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidkit.errors import DataError


@dataclass(frozen=True, eq=False)
class SidTrie:
    """Valid SIDs of a set of items.

    Attributes:
        sizes: codes per depth (K_0, ..., K_{D-1}), the collision digit last.
        children: per depth d, a (P_d, K_d) int64 tensor: child node at depth d + 1, or at the last
            depth the item's catalogue row; -1 where no valid SID continues.
        item_nodes: per depth d = 0..D, a (N,) int64 tensor: the node at depth d on each item's path
            (-1 for items outside the trie); at depth D, the item's own row.
        leaf_counts: per depth d = 0..D-1, (P_d,) int64: items below each node.
        items: (I,) int64 catalogue rows of the items in the trie.
    """

    sizes: tuple[int, ...]
    children: tuple[torch.Tensor, ...]
    item_nodes: tuple[torch.Tensor, ...]
    leaf_counts: tuple[torch.Tensor, ...]
    items: torch.Tensor

    @staticmethod
    def build(codes: np.ndarray, sizes: tuple[int, ...], items: np.ndarray | None = None, *,
              num_items: int | None = None) -> SidTrie:
        """The trie of ``codes[items]``.

        Args:
            codes: (N, D) int64 unique-per-item codes of all catalogue rows.
            sizes: codes per depth, length D.
            items: (I,) catalogue rows to include (default: all N).
            num_items: N (default ``len(codes)``).

        Raises:
            DataError: when two included items share a SID (no collision digit).
        """
        codes = np.asarray(codes, dtype=np.int64)
        n = num_items if num_items is not None else len(codes)
        rows = np.arange(len(codes)) if items is None else np.asarray(items, dtype=np.int64)
        sub = codes[rows]
        depth_count = sub.shape[1]
        if len(np.unique(sub, axis=0)) != len(sub):
            raise DataError("two items share a Semantic ID, so a decoded SID would not name one item",
                            where="codes", fix="append the collision digit (SemanticIds.with_dedup_digit)")
        children, item_nodes, leaf_counts = [], [np.zeros(n, dtype=np.int64)], []
        item_nodes[0][:] = -1
        item_nodes[0][rows] = 0
        parent = np.zeros(len(rows), dtype=np.int64)  # node of each item at the current depth
        num_nodes = 1
        for depth in range(depth_count):
            if depth + 1 < depth_count:
                _, child = np.unique(sub[:, :depth + 1], axis=0, return_inverse=True)
                child = child.reshape(-1).astype(np.int64)
            else:
                child = rows
            table = np.full((num_nodes, sizes[depth]), -1, dtype=np.int64)
            table[parent, sub[:, depth]] = child
            children.append(table)
            leaf_counts.append(np.bincount(parent, minlength=num_nodes).astype(np.int64))
            nodes = np.full(n, -1, dtype=np.int64)
            nodes[rows] = child
            item_nodes.append(nodes)
            parent = child
            num_nodes = int(child.max()) + 1 if depth + 1 < depth_count else 0
        return SidTrie(tuple(int(s) for s in sizes), tuple(torch.from_numpy(t) for t in children),
                       tuple(torch.from_numpy(t) for t in item_nodes), tuple(torch.from_numpy(c) for c in leaf_counts),
                       torch.from_numpy(rows.copy()))

    @property
    def depth(self) -> int:
        return len(self.sizes)

    def to(self, device: torch.device | str) -> SidTrie:
        move = lambda ts: tuple(t.to(device) for t in ts)  # noqa: E731
        return SidTrie(self.sizes, move(self.children), move(self.item_nodes), move(self.leaf_counts),
                       self.items.to(device))

    def alive(self, excluded: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per depth d = 1..D, (E, P_d) bool: the node still has an item that is not excluded.

        ``excluded`` is (E, N) bool over catalogue rows; the last entry is (E, N), True for items in the
        trie and not excluded.
        """
        e = excluded.shape[0]
        out = []
        for depth in range(1, self.depth):
            nodes = self.item_nodes[depth]
            inside = nodes >= 0
            size = self.leaf_counts[depth].shape[0]
            counts = torch.zeros((e, size), dtype=torch.int64, device=excluded.device)
            hits = excluded[:, inside].to(torch.int64)
            counts.index_add_(1, nodes[inside], hits)
            out.append(counts < self.leaf_counts[depth].unsqueeze(0))
        leaf = torch.zeros_like(excluded)
        leaf[:, self.items] = True
        out.append(leaf & ~excluded)
        return tuple(out)
