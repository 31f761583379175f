"""Beam search constrained to the trie of valid SIDs: every returned beam is a real, distinct item.

At depth d each beam extends only to codes whose prefix exists in the trie and still holds an item
the example does not exclude (so excluded items cost no beam slot), scored by the model's
log-probability of the code given the prefix (the softmax of the level, as trained). The B best of
all extensions (B beams x K_d codes) survive. Nothing is sampled: beams are distinct paths, hence
distinct items, and their order is the model's joint log-probability. With B at least the number of
prefixes at every depth the search is exhaustive, so its top-K equals scoring every item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sidkit.retrieval.trie import SidTrie

#: step(depth, prefixes) -> log-probabilities. ``prefixes`` is (E, B, depth) int64 codes of the beams;
#: the result is (E, B, K_depth) float, the next code's log-probability for each beam.
StepFn = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BeamResult:
    """The beams of E examples, best first.

    Attributes:
        items: (E, B) int64 catalogue rows; -1 where fewer than B valid items remained.
        scores: (E, B) float32 joint log-probabilities; -inf where ``items`` is -1.
    """

    items: torch.Tensor
    scores: torch.Tensor


def constrained_beam_search(step: StepFn, trie: SidTrie, num_examples: int, beam: int, *,
                            excluded: torch.Tensor | None = None) -> BeamResult:
    """Decode the ``beam`` most likely valid SIDs of each of ``num_examples`` examples.

    Args:
        step: the model's next-code log-probabilities (see :data:`StepFn`).
        trie: valid SIDs (on the device of the model).
        num_examples: E.
        beam: B, beams kept per depth.
        excluded: (E, N) bool, items ranked out per example (e.g. the user's history), or None.
    """
    device = trie.children[0].device
    alive = trie.alive(excluded) if excluded is not None else None
    nodes = torch.zeros((num_examples, 1), dtype=torch.int64, device=device)
    scores = torch.zeros((num_examples, 1), dtype=torch.float32, device=device)
    prefixes = torch.zeros((num_examples, 1, 0), dtype=torch.int64, device=device)
    for depth in range(trie.depth):
        log_probs = step(depth, prefixes).float()  # (E, B', K)
        size = log_probs.shape[-1]
        child = trie.children[depth][nodes]  # (E, B', K)
        valid = (child >= 0) & torch.isfinite(scores).unsqueeze(-1)
        if alive is not None:
            flat_child = child.clamp_min(0).view(num_examples, -1)
            valid &= torch.gather(alive[depth], 1, flat_child).view_as(child)
        total = torch.where(valid, scores.unsqueeze(-1) + log_probs, torch.full_like(log_probs, -torch.inf))
        flat = total.view(num_examples, -1)
        keep = min(beam, flat.shape[1])
        scores, index = flat.topk(keep, dim=1)
        origin = torch.div(index, size, rounding_mode="floor")
        code = index - origin * size
        nodes = torch.gather(child.view(num_examples, -1), 1, index).clamp_min(0)
        parents = torch.gather(prefixes, 1, origin.unsqueeze(-1).expand(-1, -1, prefixes.shape[-1]))
        prefixes = torch.cat([parents, code.unsqueeze(-1)], dim=-1)
    items = torch.where(torch.isfinite(scores), nodes, torch.full_like(nodes, -1))
    return BeamResult(items, scores)
