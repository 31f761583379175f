"""The SID trie: items grouped by prefix, with counts and mean cosine, rendered as nested <details>.

Each node is a prefix (c_1, ..., c_d); its items are those whose SID starts with it. A node shows
how many items it holds and the mean pairwise cosine of their original embeddings (how coherent
the group is); a full-SID node lists its items' labels. To keep the page small for large catalogs,
at most a budget of prefixes is shown (the largest first, depth by depth) and a leaf lists only its
first labels, each saying how many more there are.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.errors import DataError
from sidkit.ids import SemanticIds

MAX_NODES = 4000
MAX_LABELS = 20
LABEL_CHARS = 90


@dataclass(frozen=True)
class TrieNode:
    """One prefix of the trie (the root has the empty prefix).

    Attributes:
        prefix: the codes c_1..c_d.
        count: items under this prefix.
        mean_cosine: mean pairwise cosine of those items (NaN for a single item).
        children: the largest child prefixes, most items first.
        hidden_children: child prefixes not shown.
        labels: labels of the items, only for full SIDs (leaves).
        hidden_labels: item labels not shown.
    """

    prefix: tuple[int, ...]
    count: int
    mean_cosine: float
    children: tuple[TrieNode, ...]
    hidden_children: int
    labels: tuple[str, ...]
    hidden_labels: int


def build_trie(ids: SemanticIds, embeddings: Any, labels: Any, *, max_nodes: int = MAX_NODES,
               max_labels: int = MAX_LABELS) -> TrieNode:
    """The trie of (N, L) codes ``ids`` over (N, D) ``embeddings``, leaves labelled by (N,) ``labels``.

    At most ``max_nodes`` prefixes are shown: depth by depth, the largest children of the shown
    prefixes are kept until the budget runs out, so a large catalog gives a page of bounded size
    that still shows where most items are.
    """
    n = len(ids)
    texts = np.asarray(labels, dtype=object)
    if np.shape(embeddings)[0] != n or len(texts) != n:
        raise DataError(f"{n} SIDs but {np.shape(embeddings)[0]} embeddings and {len(texts)} labels",
                        where="build_trie", fix="pass one embedding and one label per item, in SID order")
    order = np.lexsort(tuple(ids.codes[:, level] for level in reversed(range(ids.levels))))
    x = np.asarray(embeddings, dtype=np.float32)[order]  # float32 rows; sums below run in float64
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    units = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    codes, texts = ids.codes[order], texts[order]

    # Prefixes of each depth are runs of the sorted codes: starts[d] are their first rows.
    starts = [np.zeros(1, dtype=np.int64)]
    for depth in range(1, ids.levels + 1):
        changed = np.any(codes[1:, :depth] != codes[:-1, :depth], axis=1)
        starts.append(np.flatnonzero(np.r_[True, changed]))
    # Choose the shown prefixes, largest first within each depth, until the budget runs out.
    shown: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]  # indices into starts[depth]
    budget = max(0, int(max_nodes))
    for depth in range(1, ids.levels + 1):
        sizes = np.diff(np.r_[starts[depth], n])
        parent = np.searchsorted(starts[depth - 1], starts[depth], side="right") - 1
        candidates = np.flatnonzero(np.isin(parent, shown[-1]))
        kept = candidates[np.argsort(-sizes[candidates], kind="stable")[:budget]]
        budget -= len(kept)
        shown.append(np.sort(kept))
    # Build the nodes bottom-up.
    built: dict[int, TrieNode] = {}
    for depth in range(ids.levels, -1, -1):
        bounds = np.r_[starts[depth], n]
        next_built: dict[int, TrieNode] = {}
        child_parent = (np.searchsorted(starts[depth], starts[depth + 1], side="right") - 1
                        if depth < ids.levels else np.zeros(0, dtype=np.int64))
        for group in shown[depth].tolist():
            lo, hi = int(bounds[group]), int(bounds[group + 1])
            # Children of a prefix are a contiguous run of the next depth (child_parent is sorted).
            first, last = np.searchsorted(child_parent, [group, group + 1])
            children = sorted((built[c] for c in range(int(first), int(last)) if c in built),
                              key=lambda node: -node.count)
            leaf = depth == ids.levels
            shown_labels = tuple(_short(str(t)) for t in texts[lo:min(hi, lo + max_labels)]) if leaf else ()
            next_built[group] = TrieNode(
                prefix=tuple(int(c) for c in codes[lo, :depth]), count=hi - lo,
                mean_cosine=_mean_cosine(units[lo:hi]), children=tuple(children),
                hidden_children=int(last - first) - len(children), labels=shown_labels,
                hidden_labels=hi - lo - len(shown_labels) if leaf else 0)
        built = next_built
    return built[0]


def render_trie(root: TrieNode, *, open_depth: int = 0) -> str:
    """Nested ``<details>`` HTML for the children of ``root``; nodes shallower than ``open_depth`` start open."""
    parts: list[str] = []
    _render_children(root, parts, open_depth)
    _more_prefixes(root, parts)
    return "".join(parts)


def _mean_cosine(units: np.ndarray) -> float:
    """Mean pairwise cosine of (n, D) unit rows, exactly: (||sum||^2 - sum ||u||^2) / (n (n - 1))."""
    count = len(units)
    if count < 2:
        return math.nan
    total = units.sum(axis=0, dtype=np.float64)
    self_sum = float(np.einsum("ij,ij->", units, units, dtype=np.float64))
    return (float(total @ total) - self_sum) / (count * (count - 1))


def _render_children(node: TrieNode, parts: list[str], open_depth: int) -> None:
    for child in node.children:
        is_open = " open" if len(child.prefix) <= open_depth else ""
        cosine = "" if math.isnan(child.mean_cosine) else f" &middot; cos {child.mean_cosine:.2f}"
        noun = "item" if child.count == 1 else "items"
        sid = "-".join(str(code) for code in child.prefix)
        parts.append(f'<details{is_open}><summary><code>{sid}</code> &middot; {child.count} {noun}{cosine}'
                     "</summary>")
        if child.labels:
            parts.append('<ul class="items">')
            parts.extend(f"<li>{html.escape(label)}</li>" for label in child.labels)
            if child.hidden_labels:
                parts.append(f'<li class="more">&hellip; and {child.hidden_labels} more</li>')
            parts.append("</ul>")
        else:
            _render_children(child, parts, open_depth)
            _more_prefixes(child, parts)
        parts.append("</details>")


def _more_prefixes(node: TrieNode, parts: list[str]) -> None:
    if node.hidden_children:
        noun = "prefix" if node.hidden_children == 1 else "prefixes"
        parts.append(f'<p class="more">&hellip; and {node.hidden_children} smaller {noun}</p>')


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "\u2026"
