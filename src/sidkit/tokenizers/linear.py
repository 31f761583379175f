"""The linear layer of the neural tokenizers: fast float32 GEMMs on CPU, and optional bfloat16 training.

The MLPs are most of a training step; on the development machine (an Intel Xeon with AMX) oneDNN's
bfloat16 kernel runs them at about 1.7x its float32 rate at MovieLens shapes (both measured beside
semantic-id's epoch in docs/benchmarks.md, "RQ-VAE training speed"). ``Linear`` runs its three
GEMMs (forward, input gradient, weight gradient) through sidkit's k-means GEMM
(:func:`sidkit.tokenizers.kmeans.affine_scores`, oneDNN where its one-time check passed, else
torch's default) and, inside
``with gemm_dtype(torch.bfloat16)``, in bfloat16 with float32 accumulation. Parameters, gradients
and outputs stay float32, so the optimizer, the quantizer and the losses never see bfloat16.

``MLP`` (Linear, ReLU, ..., Linear) on CPU runs as one autograd node: each layer is one oneDNN call
with the bias and the ReLU fused in, and the backward pass hands oneDNN the transposed operands as
strided views instead of copying them (about a tenth less time per float32 training step than
layer-by-layer autograd on MovieLens-sized batches). A one-time check against plain torch guards it,
like ``affine_scores``.
"""

from __future__ import annotations

import contextlib
import functools
import os
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
    bfloat16 (one conversion at the input and one at the output instead of two per layer).

    Linear layers with ReLU between them (what :func:`sidkit.tokenizers.networks.mlp` builds) run
    fused on CPU (see the module docstring); any other stack, or another device, runs layer by layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _GEMM_DTYPE.get()
        linears = self._relu_stack()
        if linears and x.device.type == "cpu" and x.dtype == torch.float32 and fused_mlp_works(dtype):
            weights = [layer.weight for layer in linears]
            biases = [layer.bias for layer in linears]
            out: torch.Tensor = _FusedMLP.apply(x, dtype, len(linears), *weights, *biases)
            return out
        hidden = x if dtype == torch.float32 else x.to(dtype)
        for layer in self:
            hidden = layer(hidden)
        return hidden.to(x.dtype)

    def _relu_stack(self) -> list[nn.Linear]:
        """The Linear layers if the stack is Linear, ReLU, Linear, ..., Linear (all with bias); else []."""
        layers = list(self)
        linears = layers[0::2]
        if (len(layers) % 2 == 0 or not all(type(layer) is nn.ReLU for layer in layers[1::2])
                or not all(isinstance(layer, nn.Linear) and layer.bias is not None for layer in linears)):
            return []
        return linears  # type: ignore[return-value]


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


class _FusedMLP(torch.autograd.Function):
    """relu(... relu(x W_0^T + b_0) ...) W_n^T + b_n with every GEMM on oneDNN, in ``dtype``.

    Saved for backward: each layer's input (the previous layer's ReLU output, whose sign is also the
    ReLU's mask) and the weights in ``dtype``. Gradients come back float32.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dtype: torch.dtype, layers: int, *params: torch.Tensor) -> torch.Tensor:
        weights = [w.to(dtype) for w in params[:layers]]
        # The biases stay float32: oneDNN adds a float32 bias to the float32 accumulator of a
        # bfloat16 GEMM before rounding, so no conversions and no rounding of the bias.
        biases = list(params[layers:])
        hidden = x.to(dtype).contiguous()
        inputs = []
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            inputs.append(hidden)
            post = "relu" if index < layers - 1 else "none"
            hidden = torch.ops.mkldnn._linear_pointwise(hidden, weight, bias, post, [None], "")
        ctx.save_for_backward(*inputs, *weights)
        ctx.layers, ctx.x_dtype = layers, x.dtype
        return hidden.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        layers = ctx.layers
        saved = ctx.saved_tensors
        inputs, weights = saved[:layers], saved[layers:]
        needs = ctx.needs_input_grad
        grad_weights: list[torch.Tensor | None] = [None] * layers
        grad_biases: list[torch.Tensor | None] = [None] * layers
        low = grad.to(weights[0].dtype).contiguous()
        for index in reversed(range(layers)):
            if index < layers - 1:  # through the ReLU: its output (the next layer's input) > 0
                low = torch.ops.aten.threshold_backward(low, inputs[index + 1], 0)
            if needs[3 + index]:  # dW = grad^T x
                grad_weights[index] = _gemm_nt(low.T, inputs[index].T).float()
            if needs[3 + layers + index]:
                grad_biases[index] = low.sum(0, dtype=torch.float32)
            if index > 0 or needs[0]:  # dx = grad W
                low = _gemm_nt(low, weights[index].T)
        grad_x = low.to(ctx.x_dtype) if needs[0] else None
        return (grad_x, None, None, *grad_weights, *grad_biases)


def _gemm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for operands that may be transposed views: (M, K), (N, K) -> (M, N).

    float32 goes to oneDNN's linear kernel, which reads the strided views without copying them;
    torch's own bfloat16 matmul is oneDNN already and a little faster with them.
    """
    if a.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [None], "")
    return a @ b.T


@functools.cache
def fused_mlp_works(dtype: torch.dtype) -> bool:
    """Whether the fused CPU MLP of ``dtype`` gives torch's values and gradients (checked once)."""
    if (os.environ.get("SIDKIT_ONEDNN") == "0" or not torch.backends.mkldnn.is_available()
            or dtype not in (torch.float32, torch.bfloat16)
            or (dtype == torch.bfloat16 and not fast_bfloat16("cpu"))):
        return False
    with torch.inference_mode(False), torch.enable_grad():  # the first call may come from a no_grad block
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(11, 13, generator=generator)
        params = [torch.randn(shape, generator=generator) * 0.3 for shape in ((17, 13), (5, 17), (17,), (5,))]
        upstream = torch.randn(11, 5, generator=generator)
        try:
            got_x, *got_params = (t.clone().requires_grad_(True) for t in (x, *params))
            got = _FusedMLP.apply(got_x, dtype, 2, *got_params)
            (got * upstream).sum().backward()
        except (AttributeError, RuntimeError, TypeError):
            return False
        want_x, *want_params = (t.double().requires_grad_(True) for t in (x, *params))
        want = torch.relu(want_x @ want_params[0].T + want_params[2]) @ want_params[1].T + want_params[3]
        (want * upstream.double()).sum().backward()
    tolerance = 1e-4 if dtype == torch.float32 else 6e-2
    pairs = [(got, want), *((a.grad, b.grad) for a, b in zip((got_x, *got_params), (want_x, *want_params),
                                                               strict=True))]
    return all(a is not None and b is not None and a.dtype == torch.float32
               and torch.allclose(a.detach().double(), b.detach(), rtol=tolerance, atol=tolerance * 10)
               for a, b in pairs)
