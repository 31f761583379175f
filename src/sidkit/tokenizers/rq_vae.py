"""RQ-VAE and RQP-VAE: an MLP autoencoder with a residual vector quantizer between encoder and decoder.

    z = encoder(x)                        (B, D) -> (B, Q)
    z_q, codes = residual_vq(z)           L levels of K codes (see sidkit.tokenizers.vq)
    x^ = decoder(z_q)                     (B, Q) -> (B, D)

    loss = ||x - x^||^2 + sum_l ( ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2 )

every term summed over dimensions and averaged over the batch. Before the first step, the codebooks
are fitted by residual k-means (sidkit's RQKMeans) on the encoder outputs of a large sample of the
training items, not on one batch, so that no code starts far from the data.

RQP-VAE (``RQPVAE``) learns the codebooks by EMA instead of the codebook term and moves codes that
stay unused for ``dead_code_steps`` steps onto residuals of random items of the current batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sidkit.errors import ConfigError, DataError
from sidkit.tokenizers.base import register_tokenizer
from sidkit.tokenizers.history import TrainingHistory
from sidkit.tokenizers.networks import mlp, squared_error
from sidkit.tokenizers.neural import NeuralTokenizer, training_mean
from sidkit.tokenizers.rq_kmeans import SAMPLE_PER_CODE, RQKMeans
from sidkit.tokenizers.training import StepOutput, train_network
from sidkit.tokenizers.vq import ResidualVQ

# A level whose perplexity falls below this share of its codes counts as collapsed (and is warned about).
COLLAPSE_SHARE = 0.1


class RQVAENet(nn.Module):
    """Encoder, residual quantizer and decoder; ``training_loss`` is the RQ-VAE loss of a batch.

    Inputs are centred on ``center`` (the training mean, a saved buffer) before the encoder, and the
    decoder adds it back: otherwise the first steps spend themselves learning the mean, which moves
    every latent at once and strands the k-means-initialized codes (collapse within one epoch).
    """

    center: torch.Tensor

    def __init__(self, dim: int, hidden_dims: Sequence[int], latent_dim: int, sizes: Sequence[int], *,
                 beta: float, **quantizer: Any) -> None:
        super().__init__()
        self.encoder = mlp([dim, *hidden_dims, latent_dim])
        self.quantizer = ResidualVQ(sizes, latent_dim, **quantizer)
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), dim])
        self.register_buffer("center", torch.zeros(dim))
        self.beta = beta

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) inputs -> (B, Q) latents."""
        latent: torch.Tensor = self.encoder(x - self.center)
        return latent

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """(B, Q) latents -> (B, D) reconstructions."""
        decoded: torch.Tensor = self.decoder(quantized) + self.center
        return decoded

    def training_loss(self, x: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """Loss of a (B, D) batch, with its parts and (B, L) codes."""
        quantized = self.quantizer(self.encode(x), generator)
        recon = squared_error(self.decode(quantized.quantized), x)
        loss = recon + quantized.codebook_loss + self.beta * quantized.commitment_loss
        parts = {"recon": recon, "commit": quantized.commitment_loss}
        if not self.quantizer.ema:
            parts["codebook"] = quantized.codebook_loss
        return StepOutput(loss, parts, quantized.codes)


def warn_if_collapsed(history: TrainingHistory, sizes: Sequence[int], name: str) -> None:
    """Warn when a level's perplexity in the kept epoch is below COLLAPSE_SHARE of its codebook size."""
    if not history.epochs:
        return
    record = history.epochs[history.best_epoch if history.best_epoch is not None else -1]
    low = [f"level {level}: perplexity {p:.1f} of {k} codes" for level, (p, k) in
           enumerate(zip(record.perplexity, sizes, strict=True)) if p < COLLAPSE_SHARE * k]
    if low:
        warnings.warn(f"{name} codebook collapse ({'; '.join(low)}). Fix: use RQPVAE (EMA and dead-code "
                      "reset) or DRQVAE, lower learning_rate, or train longer", RuntimeWarning, stacklevel=4)


@register_tokenizer
class RQVAE(NeuralTokenizer):
    """RQ-VAE tokenizer (TIGER's settings by default: 512-256-128 MLP, latent 32, beta 0.25).

    Args:
        levels, codebook_size, latent_dim, hidden_dims, epochs, batch_size, learning_rate,
            weight_decay, validation_share, patience, bfloat16, progress, seed: see
            :class:`sidkit.tokenizers.neural.NeuralTokenizer`.
        beta: weight of the commitment term.
        rotation_trick: pass gradients through the quantizer by the rotation trick instead of the
            straight-through estimator.
        kmeans_sample: training items whose encoder outputs initialize the codebooks by residual
            k-means (default 256 x the largest K, or all training items if fewer).

    ``quantized(codes)`` gives (N, Q) latent vectors (sums of codewords); ``decode(codes)`` maps them
    through the decoder to (N, D).

    Example:
        >>> tokenizer = RQVAE(levels=3, codebook_size=256, epochs=50, seed=0).fit(embeddings)  # doctest: +SKIP
        >>> tokenizer.history.epochs[-1].perplexity  # per-level perplexity  # doctest: +SKIP
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *, latent_dim: int = 32,
                 hidden_dims: Sequence[int] = (512, 256, 128), epochs: int = 100, batch_size: int = 256,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, validation_share: float = 0.1,
                 patience: int | None = 10, bfloat16: bool | None = None, beta: float = 0.25,
                 rotation_trick: bool = False, kmeans_sample: int | None = None, progress: bool | None = None,
                 seed: int = 0) -> None:
        super().__init__(levels, codebook_size, latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                         validation_share=validation_share, patience=patience, bfloat16=bfloat16,
                         progress=progress, seed=seed)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ConfigError(f"beta must be a number >= 0, got {beta!r}", where="beta", fix="pass e.g. 0.25")
        if not isinstance(rotation_trick, bool):
            raise ConfigError(f"rotation_trick must be True or False, got {rotation_trick!r}", where="rotation_trick",
                              fix="pass True or False")
        if kmeans_sample is not None and (isinstance(kmeans_sample, bool) or not isinstance(kmeans_sample, int)
                                          or kmeans_sample < 1):
            raise ConfigError(f"kmeans_sample must be a positive integer or None, got {kmeans_sample!r}",
                              where="kmeans_sample", fix="pass a positive number of rows, or None")
        self.beta = float(beta)
        self.rotation_trick = rotation_trick
        self.kmeans_sample = kmeans_sample

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta": self.beta, "rotation_trick": self.rotation_trick,
                "kmeans_sample": self.kmeans_sample}

    def _quantizer_options(self) -> dict[str, Any]:
        return {"rotation_trick": self.rotation_trick}

    def _build_net(self, dim: int) -> RQVAENet:
        return RQVAENet(dim, self.hidden_dims, self.latent_dim, self._sizes, beta=self.beta,
                        **self._quantizer_options())

    def _fit(self, x: np.ndarray, *, device: torch.device, seed: int) -> None:
        data = self._training_tensor(x, device)
        net = self._new_net(data.shape[1], device=device, seed=seed)
        assert isinstance(net, RQVAENet)

        def initialize(train_rows: torch.Tensor) -> None:
            self._init_codebooks(net, data, train_rows, seed)

        self.history = train_network(net, data, self.train_config, seed=seed, codebook_sizes=self._sizes,
                                     description=type(self).__name__, progress=self.progress,
                                     initialize=initialize)
        self.net = net
        warn_if_collapsed(self.history, self._sizes, type(self).__name__)

    def _init_codebooks(self, net: RQVAENet, data: torch.Tensor, train_rows: torch.Tensor, seed: int) -> None:
        """Centre on the training mean; residual k-means on the encoder outputs of a seeded sample."""
        largest = max(self._sizes)
        if len(train_rows) < largest:
            raise DataError(f"{len(train_rows)} training items cannot fill a codebook of {largest} codes",
                            where="fit(X)", fix="pass more embeddings, a smaller codebook_size, or a smaller "
                            "validation_share")
        size = min(len(train_rows), self.kmeans_sample or SAMPLE_PER_CODE * largest)
        net.center.copy_(training_mean(data, train_rows))
        generator = torch.Generator().manual_seed(seed)
        rows = train_rows[torch.randperm(len(train_rows), generator=generator)[:size].sort().values]
        with torch.no_grad():
            latents = torch.cat([net.encode(data[chunk.to(data.device)]) for chunk in rows.split(65_536)])
        kmeans = RQKMeans(self.levels, list(self._sizes), fit_sample=size, seed=seed)
        kmeans.fit(latents.cpu().numpy(), device=data.device)
        net.quantizer.init_codebooks(kmeans.codebooks)

    def _net(self) -> RQVAENet:
        net = self._trained_net()
        assert isinstance(net, RQVAENet)
        return net

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net()
        codes: torch.Tensor = net.quantizer(net.encode(x)).codes
        return codes

    def _latent_batch(self, x: torch.Tensor) -> torch.Tensor:
        latent: torch.Tensor = self._net().encode(x)
        return latent

    def _quantized_batch(self, codes: torch.Tensor) -> torch.Tensor:
        return self._net().quantizer.quantize_codes(codes)

    def _decode_batch(self, codes: torch.Tensor) -> torch.Tensor:
        net = self._net()
        return net.decode(net.quantizer.quantize_codes(codes))


@register_tokenizer
class RQPVAE(RQVAE):
    """RQ-VAE with EMA codebooks and dead-code reset (the DRQ paper's RQP-VAE).

    Args:
        decay: EMA decay of the codebook statistics, in (0, 1).
        dead_code_steps: a code no training item took for this many steps in a row moves onto the
            residual of a random item of the current batch.
        Others: as :class:`RQVAE`.
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *, latent_dim: int = 32,
                 hidden_dims: Sequence[int] = (512, 256, 128), epochs: int = 100, batch_size: int = 256,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, validation_share: float = 0.1,
                 patience: int | None = 10, bfloat16: bool | None = None, beta: float = 0.25,
                 rotation_trick: bool = False, kmeans_sample: int | None = None, decay: float = 0.99,
                 dead_code_steps: int = 20, progress: bool | None = None, seed: int = 0) -> None:
        super().__init__(levels, codebook_size, latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                         validation_share=validation_share, patience=patience, bfloat16=bfloat16, beta=beta,
                         rotation_trick=rotation_trick, kmeans_sample=kmeans_sample, progress=progress,
                         seed=seed)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ConfigError(f"decay must be a number in (0, 1), got {decay!r}", where="decay",
                              fix="use for example 0.99")
        if isinstance(dead_code_steps, bool) or not isinstance(dead_code_steps, int) or dead_code_steps < 1:
            raise ConfigError(f"dead_code_steps must be a positive integer, got {dead_code_steps!r}",
                              where="dead_code_steps")
        self.decay = float(decay)
        self.dead_code_steps = dead_code_steps

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay": self.decay, "dead_code_steps": self.dead_code_steps}

    def _quantizer_options(self) -> dict[str, Any]:
        return {**super()._quantizer_options(), "ema": True, "decay": self.decay,
                "dead_code_steps": self.dead_code_steps}
