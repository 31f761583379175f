"""DRQ-VAE: learn the geometry first (a continuous VAE), then assign codes by residual k-means on it.

Stage 1 trains a Gaussian VAE with no quantizer:

    mean, log_var = encoder(x);  z = mean + exp(log_var / 2) * eps;  x^ = decoder(z)
    loss = ||x - x^||^2 + beta_kl * KL( N(mean, exp(log_var)) || N(0, I) )    [+ lambda * InfoNCE]

Stage 2 freezes it and fits RQKMeans on the latent means of all items. Codes are dataset-level
k-means assignments rather than sparse straight-through updates, so no code can die in training.

    encode(x)       = RQKMeans(mean(x))                       (N, L)
    quantized(c)    = sum of the codewords of c               (N, Q), the latent space
    decode(c)       = decoder(quantized(c))                   (N, D)

DRQ-VAE+CL (``contrastive=True``) adds, in stage 1, a symmetric InfoNCE loss on the latent means of
behaviour pairs (training split only) with in-batch negatives, temperature ``temperature`` and weight
``contrastive_weight``: co-engaged items move together in the space the codes are cut from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from sidkit.data.pairs import BehaviourPairs
from sidkit.errors import ConfigError, DataError
from sidkit.tokenizers.base import register_tokenizer
from sidkit.tokenizers.networks import GaussianVAE, info_nce, kl_to_standard_normal, squared_error
from sidkit.tokenizers.neural import NeuralTokenizer, training_mean
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.training import StepOutput, train_network

CHUNK_ROWS = 65_536


class DRQVAENet(nn.Module):
    """The stage-1 VAE and its loss; inputs centred on the saved training mean ``center``.

    For the contrastive loss, ``items`` (N, D) and ``pairs`` (P, 2) catalog rows are attached before
    training (not saved); each training step draws B pairs with replacement.
    """

    center: torch.Tensor

    def __init__(self, dim: int, hidden_dims: Sequence[int], latent_dim: int, *, beta_kl: float,
                 contrastive_weight: float, temperature: float) -> None:
        super().__init__()
        self.vae = GaussianVAE(dim, hidden_dims, latent_dim)
        self.register_buffer("center", torch.zeros(dim))
        self.beta_kl = beta_kl
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.items: torch.Tensor | None = None
        self.pairs: torch.Tensor | None = None

    def latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, Q) posterior means."""
        return self.vae.encode(x - self.center)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Q) latents -> (B, D) reconstructions."""
        decoded: torch.Tensor = self.vae.decoder(z) + self.center
        return decoded

    def training_loss(self, x: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """VAE loss of a (B, D) batch (posterior sample in training, mean in eval), plus InfoNCE in training."""
        mean, log_var = self.vae.encode(x - self.center)
        z = self.vae.sample(mean, log_var, generator) if self.training else mean
        recon = squared_error(self.decode(z), x)
        kl = kl_to_standard_normal(mean, log_var).mean()
        loss = recon + self.beta_kl * kl
        parts = {"recon": recon, "kl": kl}
        if self.training and self.pairs is not None and self.items is not None:
            rows = torch.randint(len(self.pairs), (x.shape[0],), generator=generator).to(self.pairs.device)
            first, second = self.pairs[rows].T
            means = self.latent_mean(self.items[torch.cat([first, second])])
            contrastive = info_nce(means[: len(rows)], means[len(rows):], self.temperature)
            loss = loss + self.contrastive_weight * contrastive
            parts["infonce"] = contrastive
        return StepOutput(loss, parts)


@register_tokenizer
class DRQVAE(NeuralTokenizer):
    """Decoupled residual quantization: a continuous VAE, then RQKMeans on its latent means.

    Args:
        levels, codebook_size, latent_dim, hidden_dims, epochs, batch_size, learning_rate,
            weight_decay, validation_share, patience, bfloat16, progress, seed: see
            :class:`sidkit.tokenizers.neural.NeuralTokenizer`.
        beta_kl: weight of the KL term.
        contrastive: add the InfoNCE loss on behaviour pairs (DRQ-VAE+CL); ``fit`` then needs ``pairs``.
        temperature: InfoNCE temperature tau.
        contrastive_weight: InfoNCE weight lambda.
        kmeans_sample: RQKMeans fits on at most this many latent means (default: its own, 256 x K).
        balanced: fit RQKMeans with capped code loads (see :class:`RQKMeans`).

    Example:
        >>> pairs = behaviour_pairs(dataset.interactions, dataset.catalog)  # doctest: +SKIP
        >>> DRQVAE(3, 256, contrastive=True, seed=0).fit(embeddings, pairs=pairs)  # doctest: +SKIP
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *, latent_dim: int = 32,
                 hidden_dims: Sequence[int] = (512, 256, 128), epochs: int = 100, batch_size: int = 256,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, validation_share: float = 0.1,
                 patience: int | None = 10, bfloat16: bool | None = None, beta_kl: float = 1e-3,
                 contrastive: bool = False, temperature: float = 0.1, contrastive_weight: float = 0.1,
                 kmeans_sample: int | None = None, balanced: bool = False, progress: bool | None = None,
                 seed: int = 0) -> None:
        super().__init__(levels, codebook_size, latent_dim=latent_dim, hidden_dims=hidden_dims, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                         validation_share=validation_share, patience=patience, bfloat16=bfloat16,
                         progress=progress, seed=seed)
        for name, value, positive in (("beta_kl", beta_kl, False), ("temperature", temperature, True),
                                      ("contrastive_weight", contrastive_weight, False)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value > 0 if positive else value >= 0):
                raise ConfigError(f"{name} must be a number {'>' if positive else '>='} 0, got {value!r}", where=name,
                                  fix=f"pass a {'positive' if positive else 'non-negative'} {name}")
        if not isinstance(contrastive, bool):
            raise ConfigError(f"contrastive must be True or False, got {contrastive!r}", where="contrastive",
                              fix="pass True or False")
        self.beta_kl = float(beta_kl)
        self.contrastive = contrastive
        self.temperature = float(temperature)
        self.contrastive_weight = float(contrastive_weight)
        # RQKMeans checks its own settings now, before any training.
        self.quantizer = RQKMeans(levels, list(self._sizes), fit_sample=kmeans_sample, balanced=balanced, seed=seed)
        self._pairs: np.ndarray | None = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_kl": self.beta_kl, "contrastive": self.contrastive,
                "temperature": self.temperature, "contrastive_weight": self.contrastive_weight,
                "kmeans_sample": self.quantizer.fit_sample, "balanced": self.quantizer.balanced}

    def fit(self, X: Any, *, pairs: BehaviourPairs | np.ndarray | None = None,
            device: str | torch.device = "cpu") -> Self:
        """Fit on (N, D) ``X``. With ``contrastive=True``, ``pairs`` are required: BehaviourPairs (its
        ``train`` split is used, never ``heldout``) or a (P, 2) int array of rows of ``X``."""
        if self.contrastive and pairs is None:
            raise ConfigError("DRQ-VAE+CL (contrastive=True) trains on behaviour pairs, and none were given",
                              where="fit(pairs=...)",
                              fix="pass pairs=behaviour_pairs(dataset.interactions, dataset.catalog), or "
                              "use contrastive=False")
        if not self.contrastive and pairs is not None:
            raise ConfigError("pairs were given but contrastive=False would ignore them", where="fit(pairs=...)",
                              fix="use DRQVAE(contrastive=True) to train on them, or leave pairs out")
        self._pairs = None if pairs is None else _pair_rows(pairs)
        try:
            return super().fit(X, device=device)
        finally:
            self._pairs = None

    def _build_net(self, dim: int) -> DRQVAENet:
        return DRQVAENet(dim, self.hidden_dims, self.latent_dim, beta_kl=self.beta_kl,
                         contrastive_weight=self.contrastive_weight if self.contrastive else 0.0,
                         temperature=self.temperature)

    def _fit(self, x: np.ndarray, *, device: torch.device, seed: int) -> None:
        data = self._training_tensor(x, device)
        net = self._new_net(data.shape[1], device=device, seed=seed)
        assert isinstance(net, DRQVAENet)
        if self._pairs is not None:
            if int(self._pairs.max()) >= len(data):
                raise DataError(f"pairs name row {int(self._pairs.max())}, but X has {len(data)} rows",
                                where="fit(pairs=...)", fix="build the pairs from the same catalog as X")
            net.items, net.pairs = data, torch.from_numpy(self._pairs).to(device)

        def initialize(train_rows: torch.Tensor) -> None:
            net.center.copy_(training_mean(data, train_rows))

        try:
            self.history = train_network(net, data, self.train_config, seed=seed, description=type(self).__name__,
                                         progress=self.progress, initialize=initialize)
        finally:
            net.items = net.pairs = None
        with torch.no_grad():
            means = torch.cat([net.latent_mean(chunk) for chunk in data.split(CHUNK_ROWS)])
        self.quantizer.fit(means.cpu().numpy(), device=device)
        self.net = net

    def _net(self) -> DRQVAENet:
        net = self._trained_net()
        assert isinstance(net, DRQVAENet)
        return net

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer._encode_batch(self._latent_batch(x))

    def _latent_batch(self, x: torch.Tensor) -> torch.Tensor:
        latent: torch.Tensor = self._net().latent_mean(x)
        return latent

    def _quantized_batch(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer._quantized_batch(codes)

    def _decode_batch(self, codes: torch.Tensor) -> torch.Tensor:
        return self._net().decode(self.quantizer._quantized_batch(codes))

    def _state_dict(self) -> dict[str, torch.Tensor]:
        return {**super()._state_dict(), **self.quantizer._state_dict()}

    def _load_state_dict(self, tensors: Mapping[str, torch.Tensor], *, dim: int) -> None:
        super()._load_state_dict({k: v for k, v in tensors.items() if not k.startswith("codebook.")}, dim=dim)
        self.quantizer._load_state_dict(tensors, dim=self.latent_dim)


def _pair_rows(pairs: BehaviourPairs | np.ndarray) -> np.ndarray:
    """(P, 2) int64 training pairs, checked."""
    rows = pairs.train if isinstance(pairs, BehaviourPairs) else np.asarray(pairs)
    if rows.ndim != 2 or rows.shape[1] != 2 or rows.dtype.kind not in "iu":
        raise DataError(f"pairs must be a (P, 2) integer array of catalog rows, got {rows.dtype} {rows.shape}",
                        where="fit(pairs=...)", fix="pass sidkit.data.pairs.behaviour_pairs(...)")
    if len(rows) == 0:
        raise DataError("there are no training pairs", where="fit(pairs=...)",
                        fix="use more interactions, a larger window, or a later split time")
    if int(rows.min()) < 0:
        raise DataError("pairs hold negative row numbers", where="fit(pairs=...)")
    return np.ascontiguousarray(rows, dtype=np.int64)
