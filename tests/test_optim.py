"""FusedAdamW: the same updates as torch.optim.AdamW(fused=True), without its per-parameter loop."""

from __future__ import annotations

import torch

from sidkit.tokenizers.optim import FusedAdamW, fused_adamw_matches


def test_updates_equal_torch_adamw_bit_for_bit_with_missing_gradients() -> None:
    assert fused_adamw_matches("cpu")
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator) for shape in ((6, 4), (4,), (3, 3))]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    mine = FusedAdamW(ours, lr=3e-3, weight_decay=1e-2)
    reference = torch.optim.AdamW(theirs, lr=3e-3, weight_decay=1e-2, fused=True)
    for step in range(5):
        mine.zero_grad()
        reference.zero_grad(set_to_none=True)
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if step == 2 and index == 1:
                continue  # no gradient this step: the parameter and its moments must stay put
            grad = torch.randn(a.shape, generator=generator)
            a.grad, b.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
