"""Residual vector quantization for the neural tokenizers, with the guards against codebook collapse.

Level l quantizes the residual r_l that levels 0..l-1 left (r_0 = z, r_{l+1} = r_l - e_l, where e_l is
the nearest codeword of level l). The quantized vector is z_q = sum_l e_l.

Codebooks learn in one of two ways:

- by gradient (RQ-VAE): the loss holds, per level, ||sg[r_l] - e_l||^2 (codebook term, moves e_l)
  and ||r_l - sg[e_l]||^2 (commitment term, weighted by beta by the caller, moves the encoder);
- by exponential moving averages (RQP-VAE): per code k, with decay d, batch counts n_k and batch
  sums s_k of the residuals assigned to k,

      N_k <- d N_k + (1 - d) n_k,    S_k <- d S_k + (1 - d) s_k,
      e_k  = S_k / N~_k,             N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j

  (Laplace smoothing keeps a rarely used code from dividing by zero). The codebook term is then
  zero and left out; the commitment term stays.

Dead-code reset: a code that no item of a training batch picked for ``dead_code_steps`` steps in a
row moves onto the level-l residual of a random item of the current batch.

Gradients reach the encoder through the quantizer by the straight-through estimator
(z_q' = z + sg[z_q - z]) or, optionally, the rotation trick (Fifty et al. 2024): z_q' = sg[lambda R] z
with R the rotation taking z to the direction of z_q and lambda = ||z_q|| / ||z||, so the forward
value is z_q and the backward pass keeps the angle between the gradient and z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from sidkit.tokenizers.kmeans import affine_scores, row_max

# From this many rows numpy's argmax (sidkit.tokenizers.kmeans.row_max) beats torch's.
ROW_MAX_ROWS = 1024


@dataclass(frozen=True, eq=False)
class QuantizerOutput:
    """One pass of the residual quantizer over a batch.

    Attributes:
        quantized: (B, Q) z_q = sum of the chosen codewords, carrying the encoder's gradient (in
            training mode through the straight-through estimator or the rotation trick).
        codes: (B, L) int64 chosen code per level.
        codebook_loss: scalar, sum over levels of mean_b ||sg[r_l] - e_l||^2 (zero with EMA).
        commitment_loss: scalar, sum over levels of mean_b ||r_l - sg[e_l]||^2 (not yet times beta).
        resets: (L,) int64, codes reset as dead in this pass, per level.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    resets: torch.Tensor


class ResidualVQ(nn.Module):
    """L codebooks of K_l codewords in a Q-dimensional latent space.

    Args:
        sizes: K_l per level.
        dim: latent dimension Q.
        ema: learn codebooks by exponential moving averages instead of gradients.
        decay: EMA decay d in (0, 1).
        eps: Laplace smoothing of the EMA counts.
        dead_code_steps: reset a code unused for this many training steps; None: never.
        rotation_trick: pass gradients by the rotation trick instead of straight through.

    Updates (EMA, dead-code reset) happen only in training mode, inside ``forward``.
    """

    def __init__(self, sizes: Sequence[int], dim: int, *, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, dead_code_steps: int | None = None, rotation_trick: bool = False) -> None:
        super().__init__()
        self.sizes = tuple(int(k) for k in sizes)
        self.dim = int(dim)
        self.ema = ema
        self.decay = float(decay)
        self.eps = float(eps)
        self.dead_code_steps = dead_code_steps
        self.rotation_trick = rotation_trick
        # Small uniform start; k-means initialization (init_codebooks) replaces it before training.
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(k, dim).uniform_(-1.0 / k, 1.0 / k), requires_grad=not ema)
            for k in self.sizes)
        for level, k in enumerate(self.sizes):
            if ema:
                self.register_buffer(f"ema_count_{level}", torch.ones(k))
                self.register_buffer(f"ema_sum_{level}", self.codebooks[level].detach().clone())
            if dead_code_steps is not None:
                self.register_buffer(f"unused_steps_{level}", torch.zeros(k, dtype=torch.int64))

    def buffer(self, name: str, level: int) -> torch.Tensor:
        """The per-level buffer ``name`` (ema_count, ema_sum or unused_steps) of ``level``."""
        value = getattr(self, f"{name}_{level}")
        assert isinstance(value, torch.Tensor)
        return value

    @torch.no_grad()
    def init_codebooks(self, codebooks: Sequence[torch.Tensor]) -> None:
        """Set the codewords, (K_l, Q) per level (for example from k-means on encoder outputs)."""
        for level, codebook in enumerate(codebooks):
            self.codebooks[level].copy_(codebook)
            if self.ema:
                self.buffer("ema_count", level).fill_(1.0)
                self.buffer("ema_sum", level).copy_(codebook)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize (B, Q) latents ``z``; ``generator`` picks the items that dead codes move to."""
        batch = z.shape[0]
        with torch.no_grad():  # assignment and loss values; the gradients are tied on below in one node
            residual = z.detach()
            total = torch.zeros_like(residual)
            codes, misses = [], []
            resets = torch.zeros(len(self.sizes), dtype=torch.int64)
            for level, codebook in enumerate(self.codebooks):
                chosen = nearest_index(residual.float(), codebook.detach().float())
                codeword = torch.index_select(codebook, 0, chosen)
                miss = residual - codeword  # r_l - e_l: the residual the next level quantizes
                if self.training:
                    counts = torch.bincount(chosen, minlength=codebook.shape[0])
                    if self.ema:
                        self._ema_update(level, residual, chosen, counts)
                    if self.dead_code_steps is not None:
                        resets[level] = self._reset_dead(level, residual, counts, generator)
                codes.append(chosen)
                misses.append(miss)
                total += codeword
                residual = miss
            # ||sg[r_l] - e_l||^2 and ||r_l - sg[e_l]||^2 have the same value; only their gradients differ.
            stacked = torch.stack(misses)  # (L, B, Q)
            value = torch.linalg.vector_norm(stacked).square_() / batch
            codes_tensor = torch.stack(codes, dim=1)
        learns_codebooks = not self.ema and any(c.requires_grad for c in self.codebooks)
        if torch.is_grad_enabled() and (z.requires_grad or learns_codebooks):
            commitment_loss, codebook_loss = _QuantizationLosses.apply(
                value, z, codes_tensor, stacked, learns_codebooks, *self.codebooks)
        else:
            commitment_loss, codebook_loss = value, value
        if self.ema:
            codebook_loss = z.new_zeros(())
        if self.training or torch.is_grad_enabled():
            quantized = rotate_to(z, total) if self.rotation_trick else z + (total - z).detach()
        else:
            quantized = total
        return QuantizerOutput(quantized, codes_tensor, codebook_loss, commitment_loss, resets)

    def quantize_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 codes -> (B, Q) sum of their codewords."""
        total = torch.index_select(self.codebooks[0].detach(), 0, codes[:, 0])
        for level in range(1, len(self.sizes)):
            total += torch.index_select(self.codebooks[level].detach(), 0, codes[:, level])
        return total

    @torch.no_grad()
    def _ema_update(self, level: int, residual: torch.Tensor, chosen: torch.Tensor, counts: torch.Tensor) -> None:
        count, total = self.buffer("ema_count", level), self.buffer("ema_sum", level)
        sums = torch.zeros_like(total).index_add_(0, chosen, residual.to(total.dtype))
        count.mul_(self.decay).add_(counts.to(count.dtype), alpha=1.0 - self.decay)
        total.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        self.codebooks[level].copy_(total / smoothed_counts(count, self.eps).unsqueeze(1))

    @torch.no_grad()
    def _reset_dead(self, level: int, residual: torch.Tensor, counts: torch.Tensor,
                    generator: torch.Generator | None) -> int:
        assert self.dead_code_steps is not None
        unused = self.buffer("unused_steps", level)
        unused.add_(1).masked_fill_(counts > 0, 0)
        dead = torch.nonzero(unused >= self.dead_code_steps).squeeze(1)
        if dead.numel() == 0:
            return 0
        # Random items of the batch; a CPU generator keeps the choice the same on every device.
        rows = torch.randint(residual.shape[0], (dead.numel(),), generator=generator).to(residual.device)
        fresh = residual[rows]
        self.codebooks[level][dead] = fresh.to(self.codebooks[level].dtype)
        if self.ema:
            self.buffer("ema_count", level)[dead] = 1.0
            self.buffer("ema_sum", level)[dead] = fresh
        unused[dead] = 0
        return int(dead.numel())


class _QuantizationLosses(torch.autograd.Function):
    """The commitment and codebook terms of a residual quantizer pass, as one autograd node.

    With B items, level l's residual r_l = z - sum_{j<l} sg[e_j], and m_l = r_l - e_l:

        commitment = sum_l mean_b ||r_l - sg[e_l]||^2,  d/dz = (2 / B) sum_l m_l
        codebook   = sum_l mean_b ||sg[r_l] - e_l||^2,  d/d(codeword k of level l) = -(2 / B) sum_{b: code k} m_l,b

    Both take the value computed in the assignment pass; the gradients are the closed forms above,
    instead of about ten small autograd nodes per level.
    """

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, z: torch.Tensor, codes: torch.Tensor, misses: torch.Tensor,
                learns_codebooks: bool, *codebooks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(codes, misses)
        ctx.set_materialize_grads(False)  # a term the loss leaves out gives its parameters no gradient
        ctx.learns_codebooks = learns_codebooks
        ctx.shapes = [(c.shape, c.dtype) for c in codebooks]
        return value.clone(), value.clone()

    @staticmethod
    def backward(ctx: Any, grad_commitment: torch.Tensor | None,
                 grad_codebook: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        codes, misses = ctx.saved_tensors
        scale = 2.0 / misses.shape[1]
        grad_z = None
        if ctx.needs_input_grad[1] and grad_commitment is not None:
            grad_z = misses.sum(0) * (scale * grad_commitment)
        grads: list[torch.Tensor | None] = [None] * len(ctx.shapes)
        if ctx.learns_codebooks and grad_codebook is not None:
            for level, (shape, dtype) in enumerate(ctx.shapes):
                if ctx.needs_input_grad[5 + level]:
                    step = misses[level].to(dtype) * (-scale * grad_codebook)
                    grads[level] = torch.zeros(shape, dtype=dtype, device=misses.device).index_add_(
                        0, codes[:, level], step)
        return (None, grad_z, None, None, None, *grads)


def nearest_index(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(B,) int64 nearest codeword of each (B, Q) row (lowest index on ties): the argmax of
    x . c - ||c||^2 / 2, one GEMM with a bias (encode's large batches take numpy's faster argmax)."""
    scores = affine_scores(x, codebook, codebook.square().sum(1).mul_(-0.5))
    if x.shape[0] < ROW_MAX_ROWS:
        return scores.argmax(1)
    index = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    row_max(scores, torch.empty(x.shape[0], dtype=scores.dtype, device=x.device), index)
    return index


def smoothed_counts(count: torch.Tensor, eps: float) -> torch.Tensor:
    """Laplace-smoothed EMA counts (K,): (N_k + eps) / (sum N + K eps) * sum N."""
    n = count.sum()
    return (count + eps) / (n + count.numel() * eps) * n


def rotate_to(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The rotation trick: (B, Q) ``source`` mapped onto (B, Q) ``target`` by a fixed rotation and scale.

    Forward value: ``target``. Backward: the gradient reaches ``source`` through the (constant)
    linear map lambda R with R u = q, u = source / ||source||, q = target / ||target||,
    R = I - 2 w w^T + 2 q u^T, w = (u + q) / ||u + q||. ``target`` gets no gradient.
    """
    target = target.detach()
    source_norm = source.norm(dim=1, keepdim=True).clamp_min(1e-12)
    target_norm = target.norm(dim=1, keepdim=True)
    u = (source / source_norm).detach()
    q = target / target_norm.clamp_min(1e-12)
    w = functional.normalize(u + q, dim=1, eps=1e-12)
    rotated = (source - 2.0 * (source * w).sum(1, keepdim=True) * w
               + 2.0 * (source * u).sum(1, keepdim=True) * q)
    return rotated * (target_norm / source_norm).detach()
