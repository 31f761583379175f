"""The SID trie: items grouped by prefix, with counts and mean cosine, rendered as nested <details>.

Each node is a prefix (c_1, ..., c_d); its items are those whose SID starts with it. A node shows
how many items it holds and the mean pairwise cosine of their original embeddings (how coherent
the group is); a full-SID node lists its items' labels. To keep the page small for large catalogs,
each node shows only its largest children and a leaf only its first labels, saying how many more
there are.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidkit.errors import DataError
from sidkit.ids import SemanticIds

MAX_CHILDREN = 64
MAX_LABELS = 25
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


def build_trie(ids: SemanticIds, embeddings: Any, labels: Any, *, max_children: int = MAX_CHILDREN,
               max_labels: int = MAX_LABELS) -> TrieNode:
    """The trie of (N, L) codes ``ids`` over (N, D) ``embeddings``, leaves labelled by (N,) ``labels``."""
    n = len(ids)
    texts = np.asarray(labels, dtype=object)
    if np.shape(embeddings)[0] != n or len(texts) != n:
        raise DataError(f"{n} SIDs but {np.shape(embeddings)[0]} embeddings and {len(texts)} labels",
                        where="build_trie", fix="pass one embedding and one label per item, in SID order")
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    units = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    order = np.lexsort(tuple(ids.codes[:, level] for level in reversed(range(ids.levels))))
    codes = ids.codes[order]
    return _node((), codes, units[order], texts[order], 0, n, max_children, max_labels)


def render_trie(root: TrieNode, *, open_depth: int = 0) -> str:
    """Nested ``<details>`` HTML for the children of ``root``; nodes shallower than ``open_depth`` start open."""
    parts: list[str] = []
    _render_children(root, parts, open_depth)
    _more_prefixes(root, parts)
    return "".join(parts)


def _node(prefix: tuple[int, ...], codes: np.ndarray, units: np.ndarray, texts: np.ndarray, lo: int, hi: int,
          max_children: int, max_labels: int) -> TrieNode:
    count = hi - lo
    depth = len(prefix)
    total = units[lo:hi].sum(axis=0)
    self_sum = float(np.einsum("ij,ij->", units[lo:hi], units[lo:hi]))
    mean_cosine = (float(total @ total) - self_sum) / (count * (count - 1)) if count > 1 else math.nan
    if depth == codes.shape[1]:
        shown = [_short(str(text)) for text in texts[lo:min(hi, lo + max_labels)]]
        return TrieNode(prefix, count, mean_cosine, (), 0, tuple(shown), count - len(shown))
    column = codes[lo:hi, depth]
    starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
    stops = np.r_[starts[1:], count]
    sizes = stops - starts
    largest = np.argsort(-sizes, kind="stable")[:max_children]
    children = tuple(_node((*prefix, int(column[starts[i]])), codes, units, texts, lo + int(starts[i]),
                           lo + int(stops[i]), max_children, max_labels) for i in largest)
    return TrieNode(prefix, count, mean_cosine, children, len(starts) - len(children), (), 0)


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
