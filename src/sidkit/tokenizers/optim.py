"""AdamW for the neural tokenizers' training loop: torch's fused kernel, called without torch.optim's loop.

``torch.optim.AdamW(fused=True)`` runs one kernel for all parameters, but its ``step`` first walks
the parameter groups in Python, checking and collecting every parameter's state; on the small
networks of a tokenizer (19 tensors, batches of 256) that walk cost as much CPU as the kernel.
:class:`FusedAdamW` keeps the state in flat lists and makes the same two calls that
``torch.optim.AdamW(fused=True)`` makes (``torch._foreach_add_`` of the step counts, then
``torch._fused_adamw_``), so the updates are the same to the bit: a one-time check compares the two
and falls back to ``torch.optim.AdamW`` if they differ, or where the private kernel is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch


class FusedAdamW:
    """AdamW (decoupled weight decay) over ``params``; ``zero_grad()`` then ``step()`` as torch.optim's.

    Args:
        params: the tensors to optimize (all on one device).
        lr, weight_decay, betas, eps: as ``torch.optim.AdamW``.
    """

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, float(eps)
        device = self.params[0].device if self.params else torch.device("cpu")
        self._fallback: torch.optim.AdamW | None = None
        if not self.params or not fused_adamw_matches(device.type):
            self._fallback = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps,
                                               fused=device.type in ("cpu", "cuda") or None)
            return
        self._exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._steps = [torch.zeros((), dtype=torch.float32, device=device) for _ in self.params]

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient."""
        if self._fallback is not None:
            self._fallback.step()
            return
        chosen = [i for i, param in enumerate(self.params) if param.grad is not None]
        if not chosen:
            return
        if len(chosen) == len(self.params):
            params, exp_avgs, exp_avg_sqs, steps = self.params, self._exp_avgs, self._exp_avg_sqs, self._steps
        else:
            params = [self.params[i] for i in chosen]
            exp_avgs = [self._exp_avgs[i] for i in chosen]
            exp_avg_sqs = [self._exp_avg_sqs[i] for i in chosen]
            steps = [self._steps[i] for i in chosen]
        grads = [grad for grad in (param.grad for param in params) if grad is not None]
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=self.lr, beta1=self.betas[0],
                            beta2=self.betas[1], weight_decay=self.weight_decay, eps=self.eps, amsgrad=False,
                            maximize=False)


@functools.cache
def fused_adamw_matches(device_type: str) -> bool:
    """Whether :class:`FusedAdamW`'s direct calls give torch.optim.AdamW(fused=True)'s updates (checked once)."""
    if device_type not in ("cpu", "cuda") or not hasattr(torch, "_fused_adamw_"):
        return False
    generator = torch.Generator().manual_seed(0)
    shapes = ((7, 5), (5,), (3,))
    start = [torch.randn(shape, generator=generator) for shape in shapes]
    grads = [[torch.randn(shape, generator=generator) for shape in shapes] for _ in range(3)]
    ours = [t.clone().to(device_type) for t in start]
    theirs = [t.clone().to(device_type) for t in start]
    try:
        mine = FusedAdamW.__new__(FusedAdamW)
        mine.params, mine.lr, mine.weight_decay, mine.betas, mine.eps = ours, 1e-2, 1e-2, (0.9, 0.999), 1e-8
        mine._fallback = None
        mine._exp_avgs = [torch.zeros_like(p) for p in ours]
        mine._exp_avg_sqs = [torch.zeros_like(p) for p in ours]
        mine._steps = [torch.zeros((), device=device_type) for _ in ours]
        reference = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=1e-2, fused=True)
        for step_grads in grads:
            for param, other, grad in zip(ours, theirs, step_grads, strict=True):
                param.grad, other.grad = grad.to(device_type), grad.to(device_type)
            mine.step()
            reference.step()
    except (AttributeError, RuntimeError, TypeError):
        return False
    return all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
