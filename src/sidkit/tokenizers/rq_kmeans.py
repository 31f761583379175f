"""RQ-KMeans: greedy residual k-means. Level l clusters what levels 0..l-1 left unexplained.

Fit: k-means on a sample of the embeddings gives the level-0 codebook; each point's nearest
codeword is subtracted, and the next level clusters the residuals. Encode walks the same path
(nearest codeword per level, one GEMM per level and chunk); decode sums the chosen codewords.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidkit.checks import level_sizes
from sidkit.errors import ConfigError, DataError
from sidkit.progress import track
from sidkit.tokenizers.base import Tokenizer, register_tokenizer
from sidkit.tokenizers.kmeans import (
    SEED_SAMPLE_PER_CLUSTER,
    LowPrecisionCodebook,
    affine_scores,
    check_kmeans_args,
    kmeans,
    lloyd_bfloat16,
    nearest_centers,
    row_max,
    rows_per_block,
)
from sidkit.workers import block_rows, blocks, in_worker, map_blocks


@dataclass(frozen=True)
class FitWork:
    """The work one ``RQKMeans.fit`` did, for comparing it with other k-means implementations.

    Attributes:
        training_rows: rows the codebooks were fitted on (the sample).
        seeding_rows: per level, the points k-means++ seeding ran on.
        lloyd_iterations: per level, the Lloyd centre updates made.
        assignment_passes: per level, full passes over the training rows that scored every codeword
            (one per Lloyd iteration, one to test convergence, and the exact final one when the
            iterations scored in bfloat16).
        refine_rounds: joint refinement rounds run (each re-encodes the sample at every level);
            the last one is discarded if it did not lower the training error.
        bfloat16: whether the Lloyd passes and the refinement re-encodings scored in bfloat16.
    """

    training_rows: int
    seeding_rows: tuple[int, ...]
    lloyd_iterations: tuple[int, ...]
    assignment_passes: tuple[int, ...]
    refine_rounds: int
    bfloat16: bool


# Default training sample per code: the largest codebook times this (faiss uses the same 256).
SAMPLE_PER_CODE = 256


@register_tokenizer
class RQKMeans(Tokenizer):
    """Residual k-means tokenizer: ``levels`` codebooks, level l of ``codebook_size[l]`` codewords.

    Args:
        levels: number of code levels L.
        codebook_size: codes per level, one int for all levels or a sequence of L ints.
        balanced: cap every code's load during fitting at ``balance_factor * N / K`` training points,
            which spreads usage; encoding still picks the nearest codeword, so a code is a
            function of the vector alone.
        balance_factor: the cap above, >= 1.
        fit_sample: fit on at most this many rows, drawn at random (default 256 * largest K).
        max_iter: most Lloyd iterations per level.
        tol: per-level stop on relative objective change. The default 1e-3 stops the Lloyd
            iterations early and leaves the rest to the refinement rounds below: on two 20k mixtures
            that fits in 0.94-0.96x the CPU time of tol=1e-4 with 3 rounds, at an MSE 0.7% lower on one
            and 0.1% higher on the other (docs/benchmarks.md, "What the Lloyd tolerance and
            refinement rounds buy").
        init_sample: points for k-means++ seeding per level (default 32 * K).
        refine_passes: rounds of joint codebook refinement after the greedy fit (0 = plain greedy
            residual k-means; skipped when ``balanced``): each round moves every level's codewords
            to the best place given the other levels' codes and re-encodes, and is kept only if the
            training error drops. Costs about one encode of the training sample per round (in
            bfloat16 where ``bfloat16``), less than a tenth of a level's k-means.
        chunk_size: rows per GEMM block (default: a 16 MiB score block).
        bfloat16: score the Lloyd iterations and the refinement rounds' re-encodings by bfloat16 GEMMs
            (see :func:`sidkit.tokenizers.kmeans.kmeans`); None (default): where the CPU has AMX
            tiles (:func:`sidkit.tokenizers.kmeans.lloyd_bfloat16`). Each level's assignment, the
            training errors and ``encode`` stay exact float32.
        seed: random seed of the training sample and the k-means seeding.

    Example:
        >>> tokenizer = RQKMeans(levels=3, codebook_size=256, seed=0).fit(embeddings)  # doctest: +SKIP
        >>> ids = tokenizer.encode(embeddings)  # ids.codes: (N, 3) int64  # doctest: +SKIP
    """

    def __init__(self, levels: int = 3, codebook_size: int | Sequence[int] = 256, *,
                 balanced: bool = False, balance_factor: float = 1.25, fit_sample: int | None = None,
                 max_iter: int = 25, tol: float = 1e-3, init_sample: int | None = None,
                 refine_passes: int = 8, chunk_size: int | None = None, bfloat16: bool | None = None,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self._sizes = _level_sizes(levels, codebook_size)
        self.codebook_size = codebook_size_param(codebook_size)
        for name, value in (("fit_sample", fit_sample), ("init_sample", init_sample)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}", where=name,
                                  fix=f"pass a positive number of rows, or leave {name} out (the default)")
        if not isinstance(balanced, bool):
            raise ConfigError(f"balanced must be True or False, got {balanced!r}", where="balanced",
                              fix="pass True or False")
        self.balanced = balanced
        self.balance_factor = balance_factor
        self.fit_sample = fit_sample
        self.max_iter = max_iter
        self.tol = tol
        self.init_sample = init_sample
        if isinstance(refine_passes, bool) or not isinstance(refine_passes, int) or refine_passes < 0:
            raise ConfigError(f"refine_passes must be an integer >= 0, got {refine_passes!r}",
                              where="refine_passes", fix="pass 0 (none) or more, e.g. 3")
        self.refine_passes = refine_passes
        self.chunk_size = chunk_size
        if bfloat16 is not None and not isinstance(bfloat16, bool):
            raise ConfigError(f"bfloat16 must be True, False or None (automatic), got {bfloat16!r}", where="bfloat16")
        self.bfloat16 = bfloat16
        # Fail on bad k-means settings now, not after loading data.
        check_kmeans_args(max(self._sizes), max_iter, tol, balance_factor, chunk_size)
        self.codebooks: list[torch.Tensor] = []
        """Per level, a (K_l, D) float32 codebook (empty until fitted)."""
        self.fit_work: FitWork | None = None
        """What the last ``fit`` in this process did (not saved with the model)."""

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def get_config(self) -> dict[str, Any]:
        return {"levels": len(self._sizes), "codebook_size": codebook_size_json(self.codebook_size),
                "balanced": self.balanced, "balance_factor": self.balance_factor, "fit_sample": self.fit_sample,
                "max_iter": self.max_iter, "tol": self.tol, "init_sample": self.init_sample,
                "refine_passes": self.refine_passes, "chunk_size": self.chunk_size, "bfloat16": self.bfloat16,
                "seed": self.seed}

    def _fit(self, x: np.ndarray, *, device: torch.device, seed: int) -> None:
        n = x.shape[0]
        sample_size = min(n, self.fit_sample or SAMPLE_PER_CODE * max(self._sizes))
        if sample_size < max(self._sizes):
            raise DataError(f"{sample_size} training points cannot fill a codebook of {max(self._sizes)} codes",
                            where="fit(X)", fix="pass more embeddings or use a smaller codebook_size")
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(n, generator=generator)[:sample_size].sort().values.numpy()
        sample = x if sample_size == n else x[rows]
        # A copy: the residual is updated in place and must never alias the caller's array.
        points = torch.tensor(np.asarray(sample, dtype=np.float32), device=device)
        residual = points.clone()
        codebooks: list[torch.Tensor] = []
        codes = torch.empty((len(points), self.levels), dtype=torch.int64, device=device)
        seeding, iterations, passes = [], [], []
        for level in track(range(self.levels), total=self.levels, description="RQ-KMeans levels"):
            level_seed = int(np.random.SeedSequence([seed, level]).generate_state(1)[0])
            result = kmeans(residual, self._sizes[level], seed=level_seed, max_iter=self.max_iter,
                            tol=self.tol, init_sample=self.init_sample, balanced=self.balanced,
                            balance_factor=self.balance_factor, chunk_size=self.chunk_size, bfloat16=self.bfloat16)
            centers = result.centers.contiguous()
            # The next level learns the residuals that encode will produce: nearest codeword, even
            # when fitting balanced.
            chosen = result.assignment if not self.balanced else nearest_centers(
                residual, centers, chunk_size=self.chunk_size)[0]
            residual -= torch.index_select(centers, 0, chosen)
            codes[:, level] = chosen
            codebooks.append(centers)
            seeding.append(min(len(points), self.init_sample or SEED_SAMPLE_PER_CLUSTER * self._sizes[level]))
            iterations.append(result.iterations)
            passes.append(len(result.objective) + int(result.bfloat16))
        self.codebooks = codebooks
        rounds = 0
        if self.refine_passes and not self.balanced:
            # The greedy fit's codes are the exact walk of the sample: refinement starts from them.
            self.codebooks, rounds = self._refined(points, codes, residual.square().sum(1))
        low = lloyd_bfloat16(device) if self.bfloat16 is None else self.bfloat16
        self.fit_work = FitWork(len(points), tuple(seeding), tuple(iterations), tuple(passes), rounds,
                                bool(low and not self.balanced))

    def _refined(self, points: torch.Tensor, codes: torch.Tensor,
                 errors: torch.Tensor) -> tuple[list[torch.Tensor], int]:
        """Codebooks after ``refine_passes`` rounds of joint refinement (or the greedy ones if no
        better), and the number of rounds run.

        Greedy fitting never revisits a level. With the codes fixed, each level's codeword moves to
        the mean of what the other levels leave unexplained for its points (which cannot raise the
        error for those codes); then everything is re-encoded. Kept only while the training error
        drops. The means need no (N, D) temporaries: for level l and code j,
        sum_i (x_i - sum_{m != l} C_m[c_im]) = S_l[j] - sum_{m != l} (P_lm @ C_m)[j], with S_l the
        per-code sums of x and P_lm the (K_l, K_m) co-occurrence counts of codes.

        ``codes`` (N, L) and ``errors`` (N,) are the walk of ``points`` under the current codebooks.
        The re-encodings score in bfloat16 where Lloyd does (``bfloat16``); the training errors that
        decide what is kept are computed exactly for the codes found.
        """
        low = lloyd_bfloat16(points.device) if self.bfloat16 is None else self.bfloat16
        codebooks = list(self.codebooks)
        best, best_error = list(codebooks), float(errors.double().mean())
        rounds = 0
        for _ in range(self.refine_passes):
            rounds += 1
            for level in range(self.levels):
                chosen, size = codes[:, level], self._sizes[level]
                total = torch.zeros_like(codebooks[level]).index_add_(0, chosen, points)
                for other in range(self.levels):
                    if other != level:
                        other_size = self._sizes[other]
                        pairs = torch.bincount(chosen * other_size + codes[:, other], minlength=size * other_size)
                        total -= pairs.view(size, other_size).to(total.dtype) @ codebooks[other]
                counts = torch.bincount(chosen, minlength=size).unsqueeze(1)
                codebooks[level] = torch.where(counts > 0, total / counts.clamp_min(1), codebooks[level])
            self.codebooks = codebooks
            codes, walked = self._walk(points, bfloat16=low)
            assert walked is not None
            error = float(walked.double().mean())
            if error >= best_error:
                break
            best, best_error = list(codebooks), error
        return best, rounds

    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self._walk(x, errors=False)[0]

    def _walk(self, x: torch.Tensor, *, bfloat16: bool = False,
              errors: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy residual walk: (B, L) int64 codes and (B,) float32 squared reconstruction errors
        (None unless ``errors``).

        Rows are independent, so blocks of rows walk all levels on the worker threads (sidkit.workers).
        ``bfloat16`` scores each level by a bfloat16 GEMM (approximate nearest; errors stay exact).
        """
        n = x.shape[0]
        codes = torch.empty((n, self.levels), dtype=torch.int64, device=x.device)
        squared = torch.empty(n, dtype=torch.float32, device=x.device) if errors else None
        exact = self._scoring()
        low = [LowPrecisionCodebook(codebook) for codebook in self.codebooks] if bfloat16 else None

        def walk_block(start: int, stop: int) -> None:
            best = torch.empty(stop - start, dtype=torch.float32, device=x.device)
            chosen = torch.empty(stop - start, dtype=torch.int64, device=x.device)
            residual = x[start:stop]
            for level, (codebook, half_sq) in enumerate(exact):
                if low is None:
                    scores = affine_scores(residual, codebook, half_sq)
                else:
                    scores = affine_scores(residual.bfloat16(), low[level].centers, low[level].bias).float()
                row_max(scores, best, chosen)
                codes[start:stop, level] = chosen
                if level + 1 < self.levels or squared is not None:  # else the last residual is never needed
                    used = torch.index_select(codebook, 0, chosen)
                    residual = residual - used if level == 0 else residual.sub_(used)
            if squared is not None:
                squared[start:stop] = torch.linalg.vector_norm(residual, dim=1).square_()

        most = rows_per_block(self.chunk_size, max(self._sizes))
        # Inside a worker (encode hands out the blocks) the batch is one block already.
        spans = [(0, n)] if in_worker() else blocks(n, block_rows(n, most))
        map_blocks(walk_block, spans, device=x.device)
        return codes, squared

    def _scoring(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level, the codebook and its score bias -||c||^2 / 2, computed once per set of codebooks."""
        key = [(id(codebook), codebook._version) for codebook in self.codebooks]
        cached = self.__dict__.get("_scoring_cache")
        if cached is None or cached[0] != key:
            cached = (key, [(codebook, codebook.square().sum(1).mul_(-0.5)) for codebook in self.codebooks])
            self.__dict__["_scoring_cache"] = cached
        return cached[1]

    def _quantized_batch(self, codes: torch.Tensor) -> torch.Tensor:
        total = torch.index_select(self.codebooks[0], 0, codes[:, 0])
        for level in range(1, self.levels):
            total += torch.index_select(self.codebooks[level], 0, codes[:, level])
        return total

    def _state_dict(self) -> dict[str, torch.Tensor]:
        return {f"codebook.{level}": codebook for level, codebook in enumerate(self.codebooks)}

    def _load_state_dict(self, tensors: Mapping[str, torch.Tensor], *, dim: int) -> None:
        codebooks = []
        for level, size in enumerate(self._sizes):
            name = f"codebook.{level}"
            tensor = tensors.get(name)
            if tensor is None or tuple(tensor.shape) != (size, dim):
                got = None if tensor is None else tuple(tensor.shape)
                raise DataError(f"weight {name} should have shape {(size, dim)}, got {got}",
                                where="weights", fix="save the model again")
            codebooks.append(tensor.float().contiguous())
        self.codebooks = codebooks


def codebook_size_param(codebook_size: int | Sequence[int]) -> int | tuple[int, ...]:
    """``codebook_size`` as given (one int, or a tuple of per-level ints), for get_params."""
    if isinstance(codebook_size, (int, np.integer)):
        return int(codebook_size)  # _level_sizes has refused booleans already
    return tuple(int(size) for size in codebook_size)


def codebook_size_json(codebook_size: int | tuple[int, ...]) -> int | list[int]:
    """``codebook_size`` as config.json stores it: an int, or a list of per-level ints."""
    return codebook_size if isinstance(codebook_size, int) else list(codebook_size)


def _level_sizes(levels: Any, codebook_size: Any) -> tuple[int, ...]:
    return level_sizes(levels, codebook_size)
