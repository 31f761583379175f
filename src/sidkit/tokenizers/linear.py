"""The linear layer of the neural tokenizers: fast float32 GEMMs on CPU, and optional bfloat16 training.

On the AMD CPUs sidkit is developed on, torch's default BLAS reaches about 35 GFLOP/s per core for
the MLP shapes, oneDNN's float32 kernel about 80 and its bfloat16 kernel 150 to 210 (measured with
one thread); the MLPs are most of a training step. ``Linear`` runs its three GEMMs (forward, input
gradient, weight gradient) through sidkit's k-means GEMM (:func:`sidkit.tokenizers.kmeans.affine_scores`,
oneDNN where its one-time check passed, else torch's default) and, inside
``with gemm_dtype(torch.bfloat16)``, in bfloat16 with float32 accumulation. Parameters, gradients
and outputs stay float32, so the optimizer, the quantizer and the losses never see bfloat16.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

from sidkit.tokenizers.kmeans import affine_scores

_GEMM_DTYPE: ContextVar[torch.dtype] = ContextVar("sidkit_gemm_dtype", default=torch.float32)


@contextlib.contextmanager
def gemm_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Within the block, ``Linear`` layers multiply in ``dtype`` (torch.float32 or torch.bfloat16)."""
    token = _GEMM_DTYPE.set(dtype)
    try:
        yield
    finally:
        _GEMM_DTYPE.reset(token)


@functools.cache
def fast_bfloat16(device_type: str) -> bool:
    """Whether bfloat16 GEMMs run natively: CUDA, or a CPU with AVX-512 BF16 (else they are emulated)."""
    if device_type == "cuda":
        return True
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device_type == "cpu" and probe is not None and bool(probe())


class Linear(nn.Linear):
    """``nn.Linear`` with the GEMMs above; the same parameters and state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _GEMM_DTYPE.get()
        if dtype == torch.float32 and (x.device.type != "cpu" or x.dtype != torch.float32):
            return super().forward(x)
        out: torch.Tensor = _GemmLinear.apply(x, self.weight, self.bias, dtype)
        return out


class MLP(nn.Sequential):
    """Layers in sequence; inside ``gemm_dtype(torch.bfloat16)`` the activations between them stay
    bfloat16 (one conversion at the input and one at the output instead of two per layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _GEMM_DTYPE.get()
        hidden = x if dtype == torch.float32 else x.to(dtype)
        for layer in self:
            hidden = layer(hidden)
        return hidden.to(x.dtype)


class _GemmLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                dtype: torch.dtype) -> torch.Tensor:
        low_x, low_weight = x.to(dtype).contiguous(), weight.to(dtype).contiguous()
        ctx.save_for_backward(low_x, low_weight)
        ctx.has_bias = bias is not None
        ctx.dtypes = (x.dtype, weight.dtype, dtype)
        return _gemm(low_x, low_weight, None if bias is None else bias.to(dtype)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        low_x, low_weight = ctx.saved_tensors
        x_dtype, weight_dtype, dtype = ctx.dtypes
        low_grad = grad.to(dtype).contiguous()
        needs_x, needs_weight, needs_bias, _ = ctx.needs_input_grad
        if dtype == torch.float32:  # oneDNN wants contiguous operands; the copies cost less than MKL's GEMM
            grad_x = _gemm(low_grad, low_weight.T.contiguous()) if needs_x else None  # grad @ W
            grad_weight = _gemm(low_grad.T.contiguous(), low_x.T.contiguous()) if needs_weight else None
        else:  # torch's bfloat16 mm is oneDNN already and takes transposed operands without copies
            grad_x = low_grad @ low_weight if needs_x else None
            grad_weight = low_grad.T @ low_x if needs_weight else None
        grad_x = None if grad_x is None else grad_x.to(x_dtype)
        grad_weight = None if grad_weight is None else grad_weight.to(weight_dtype)
        grad_bias = grad.sum(0) if needs_bias and ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None


def _gemm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)``: (M, K), (N, K) contiguous -> (M, N)."""
    return affine_scores(a, b, bias)
