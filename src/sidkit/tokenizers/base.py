"""The contract every tokenizer follows: fit, encode, decode, save and load, with checked input.

A tokenizer maps (N, D) embeddings to (N, L) integer codes, level ``l`` drawn from
``[0, codebook_sizes[l])``. Subclasses implement the numeric core on torch tensors
(``_fit``, ``_encode_batch``, ``_quantized_batch``, weights as a dict of tensors); this base owns
input checks, batching, devices, and the on-disk format:

    <dir>/config.json          {"format": "sidkit-tokenizer", "format_version", "sidkit_version",
                                "tokenizer": class name, "config": constructor arguments, "dim", ...}
    <dir>/weights.safetensors  the tensors of ``_state_dict()``

Tokenizers follow scikit-learn's estimator conventions: every setting, the random ``seed``
included, is an explicit keyword of the constructor, stored unchanged; ``get_params()`` /
``set_params(**params)`` read and write them, ``repr`` shows the ones that differ from the
defaults, and ``fit(X)`` takes only the data (and a device).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sidkit import __version__
from sidkit.data.catalog import check_embedding_dim
from sidkit.data.validation import check_finite
from sidkit.errors import ConfigError, DataError, NotFittedError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_path, write_json
from sidkit.progress import track

FORMAT_NAME = "sidkit-tokenizer"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
DEFAULT_BATCH_SIZE = 16384

# Built-in tokenizers, imported on first use so that loading never depends on what the caller imported.
_BUILTIN_MODULES = {"RQKMeans": "sidkit.tokenizers.rq_kmeans", "RQVAE": "sidkit.tokenizers.rq_vae",
                    "RQPVAE": "sidkit.tokenizers.rq_vae", "DRQVAE": "sidkit.tokenizers.drq",
                    "RandomCodes": "sidkit.tokenizers.random_codes"}
_REGISTRY: dict[str, type[Tokenizer]] = {}

TokenizerType = TypeVar("TokenizerType", bound="type[Tokenizer]")


def register_tokenizer(cls: TokenizerType) -> TokenizerType:
    """Class decorator: make ``cls`` loadable by :func:`load_tokenizer` under its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def tokenizer_class(name: str) -> type[Tokenizer]:
    """The registered tokenizer class called ``name``."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))
        raise DataError(f"unknown tokenizer class {name!r}; known: {known}", where="config.json",
                        fix="import the module that defines it (it must use @register_tokenizer), "
                        "or upgrade sidkit")
    return _REGISTRY[name]


def load_tokenizer(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Tokenizer:
    """Load any saved tokenizer; its class is read from ``config.json``."""
    return Tokenizer.load(directory, device=device)


class Tokenizer(ABC):
    """Abstract base of every tokenizer. Subclasses call ``super().__init__(seed=seed)`` and register themselves.

    Args:
        seed: the random seed of ``fit`` (sampling, initialization, data order): the same seed and
            data give the same codes. Saved in ``config.json`` with the other settings.
    """

    def __init__(self, *, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}", where="seed")
        self.seed = int(seed)
        self._dim: int | None = None
        self._device = torch.device("cpu")

    # ----- what a tokenizer implements -------------------------------------------------------------

    @property
    @abstractmethod
    def codebook_sizes(self) -> tuple[int, ...]:
        """Number of codes at each level, length L."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Every constructor argument as JSON values: ``type(self)(**get_config())`` is an unfitted copy."""

    @abstractmethod
    def _fit(self, x: np.ndarray, *, device: torch.device, seed: int) -> None:
        """Fit on checked (N, D) input (any float dtype, maybe memory-mapped); weights on ``device``."""

    @abstractmethod
    def _encode_batch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) float32 on the model's device -> (B, L) int64 codes."""

    @abstractmethod
    def _quantized_batch(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 codes -> (B, Q) float32 vectors in the tokenizer's quantization space."""

    def _decode_batch(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 codes -> (B, D) float32 reconstructions; the quantized vector unless overridden."""
        return self._quantized_batch(codes)

    @abstractmethod
    def _state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted weights, by name."""

    @abstractmethod
    def _load_state_dict(self, tensors: Mapping[str, torch.Tensor], *, dim: int) -> None:
        """Take fitted weights (already on the target device); raise DataError if they do not fit."""

    # ----- public API ------------------------------------------------------------------------------

    @property
    def levels(self) -> int:
        """Number of code levels L."""
        return len(self.codebook_sizes)

    @property
    def dim(self) -> int:
        """Embedding dimension D the tokenizer was fitted on."""
        return self._check_fitted()

    @property
    def is_fitted(self) -> bool:
        return self._dim is not None

    @property
    def device(self) -> torch.device:
        """Where the weights live and where encode/decode compute."""
        return self._device

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments by name (scikit-learn's ``get_params``; ``deep`` is accepted and
        changes nothing, a tokenizer holds no sub-estimators): ``type(t)(**t.get_params())`` is an
        unfitted copy of ``t``. In the constructor's order."""
        config = self.get_config()
        order = constructor_parameters(type(self))
        return {**{name: config[name] for name in order if name in config}, **config}

    def set_params(self, **params: Any) -> Self:
        """Change constructor arguments (checked as the constructor checks them); returns ``self``.

        A fitted tokenizer becomes unfitted: its weights were learnt with the old settings, so
        ``t.set_params(seed=1).fit(X)`` refits rather than mixing the two.
        """
        names = constructor_parameters(type(self))
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}",
                              where="set_params", fix=f"use some of: {', '.join(names)}")
        fresh = type(self)(**{**self.get_params(), **params})
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
        return self

    def __repr__(self) -> str:
        defaults = {name: parameter.default for name, parameter in
                    inspect.signature(type(self)).parameters.items()
                    if parameter.default is not inspect.Parameter.empty}
        shown = [f"{name}={value!r}" for name, value in self.get_params().items()
                 if name not in defaults or _as_json(value) != _as_json(defaults[name])]
        return f"{type(self).__name__}({', '.join(shown)})"

    def fit(self, X: Any, *, device: str | torch.device = "cpu") -> Self:
        """Fit on (N, D) embeddings ``X`` (numpy, memory-mapped or torch), seeded by ``self.seed``; returns ``self``."""
        x = check_embeddings(X, where="fit(X)")
        target = resolve_device(device)
        self._fit(x, device=target, seed=self.seed)
        self._dim = int(x.shape[1])
        self._device = target
        return self

    def encode(self, X: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SemanticIds:
        """Codes of (N, D) embeddings ``X``: SemanticIds with (N, L) int64 codes."""
        dim = self._check_fitted()
        x = check_embeddings(X, where="encode(X)", expected_dim=dim)
        batch_size = _check_batch_size(batch_size)
        codes = np.empty((x.shape[0], self.levels), dtype=np.int64)
        starts = range(0, x.shape[0], batch_size)
        with torch.inference_mode():
            for start in track(starts, total=len(starts), description="encode",
                               enabled=None if len(starts) > 4 else False):
                batch = np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32)
                if not batch.flags.writeable:  # a read-only memmap slice: torch wants its own copy
                    batch = batch.copy()
                out = self._encode_batch(torch.from_numpy(batch).to(self._device))
                codes[start:start + len(batch)] = out.cpu().numpy()
        return SemanticIds(codes, self.codebook_sizes)

    def decode(self, codes: SemanticIds | np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Reconstructed embeddings, (N, D) float32, of codes (SemanticIds or an (N, L) int array)."""
        return self._map_codes(codes, self._decode_batch, batch_size)

    def quantized(self, codes: SemanticIds | np.ndarray, *,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The codes' vectors in the tokenizer's own quantization space, (N, Q) float32."""
        return self._map_codes(codes, self._quantized_batch, batch_size)

    def to(self, device: str | torch.device) -> Self:
        """Move the weights to ``device``; returns ``self``."""
        dim = self._check_fitted()
        target = resolve_device(device)
        self._load_state_dict({k: v.to(target) for k, v in self._state_dict().items()}, dim=dim)
        self._device = target
        return self

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``directory`` (created); returns it."""
        dim = self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self._state_dict().items()}
        # Weights first: config.json appears last, so its presence marks a complete model.
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME})
        write_json(path / CONFIG_FILE, {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "sidkit_version": __version__,
            "tokenizer": type(self).__name__,
            "config": self.get_config(),
            "dim": dim,
            "codebook_sizes": list(self.codebook_sizes),
            "weights": {k: list(v.shape) for k, v in tensors.items()},
        })
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Self:
        """Load a tokenizer saved by :meth:`save`, with its weights on ``device``."""
        path = Path(directory)
        meta = read_model_config(path)
        target_cls = tokenizer_class(meta["tokenizer"])
        if not issubclass(target_cls, cls):
            raise DataError(f"{path} holds a {target_cls.__name__}, not a {cls.__name__}", where=str(path),
                            fix=f"use {target_cls.__name__}.load or sidkit.tokenizers.base.load_tokenizer")
        try:
            model = target_cls(**meta["config"])
        except TypeError as error:
            raise DataError(f"config does not match {target_cls.__name__}: {error}",
                            where=str(path / CONFIG_FILE), fix="re-save the model with this sidkit") from error
        target = resolve_device(device)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise DataError(f"{WEIGHTS_FILE} is missing", where=str(path), fix="save the model again")
        try:
            tensors = load_file(str(weights), device=str(target))
        except (SafetensorError, OSError) as error:
            raise DataError(f"cannot read weights: {error}", where=str(weights),
                            fix="save the model again") from error
        dim = meta["dim"]
        if not isinstance(dim, int) or dim < 1:
            raise DataError(f"bad dim {dim!r}", where=str(path / CONFIG_FILE), fix="save the model again")
        model._load_state_dict(tensors, dim=dim)
        model._dim = dim
        model._device = target
        return cast(Self, model)

    # ----- helpers ---------------------------------------------------------------------------------

    def _check_fitted(self) -> int:
        if self._dim is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted",
                                 fix="call .fit(X) first, or load a saved model with .load(directory)")
        return self._dim

    def _map_codes(self, codes: SemanticIds | np.ndarray, fn: Any, batch_size: int) -> np.ndarray:
        self._check_fitted()
        array = check_codes(codes, self.codebook_sizes)
        batch_size = _check_batch_size(batch_size)
        parts = []
        with torch.inference_mode():
            for start in range(0, array.shape[0], batch_size):
                batch = torch.from_numpy(array[start:start + batch_size]).to(self._device)
                parts.append(fn(batch).float().cpu().numpy())
        if not parts:
            width = fn(torch.zeros((1, self.levels), dtype=torch.int64, device=self._device)).shape[1]
            return np.zeros((0, width), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)


def constructor_parameters(cls: type[Tokenizer]) -> tuple[str, ...]:
    """The keyword parameters of ``cls``'s constructor, in signature order."""
    return tuple(name for name, parameter in inspect.signature(cls).parameters.items()
                 if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def _as_json(value: Any) -> Any:
    """``value`` with tuples as lists, as get_config writes them, so defaults compare equal."""
    if isinstance(value, (list, tuple)):
        return [_as_json(item) for item in value]
    return value


def check_embeddings(X: Any, *, where: str, expected_dim: int | None = None) -> np.ndarray:
    """Return ``X`` as a 2-d numeric numpy array (not copied when possible); raise DataError if unusable.

    Rejects: not 2-d, no rows, dimension 0, non-numeric dtype, NaN/inf, and a width other than
    ``expected_dim`` when given.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().to("cpu").numpy()
    try:
        array = X if isinstance(X, np.memmap) else np.asarray(X)
    except ValueError as error:
        raise DataError(f"cannot read input as an array: {error}", where=where,
                        fix="pass an (N, D) float array") from error
    if array.ndim != 2:
        raise DataError(f"embeddings must be 2-d (items, dim), got shape {array.shape}", where=where,
                        fix="pass an (N, D) array; for one vector use x[None, :]")
    if array.shape[0] == 0:
        raise DataError("no rows", where=where, fix="pass at least one embedding")
    if array.shape[1] == 0:
        raise DataError("embeddings have dimension 0", where=where)
    if array.dtype.kind not in "fiu":
        raise DataError(f"embeddings must be numbers, got dtype {array.dtype}", where=where,
                        fix="convert with .astype(np.float32)")
    if expected_dim is not None:
        check_embedding_dim(array, expected_dim, where=where)
    if array.dtype.kind == "f":
        check_finite(array, where=where)
    return array


def check_codes(codes: SemanticIds | np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Return codes as a contiguous (N, L) int64 array, checked against the codebook ``sizes``."""
    if isinstance(codes, SemanticIds):
        if codes.sizes != sizes:
            raise DataError(f"codes were made with codebook sizes {codes.sizes}, this tokenizer has {sizes}",
                            where="codes", fix="decode with the tokenizer that made the codes")
        return np.ascontiguousarray(codes.codes)
    array = codes.detach().to("cpu").numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if array.ndim != 2 or array.shape[1] != len(sizes):
        raise DataError(f"codes must have shape (N, {len(sizes)}), got {array.shape}", where="codes",
                        fix="pass SemanticIds or an (items, levels) integer array")
    if array.dtype.kind not in "iu":
        raise DataError(f"codes must be integers, got dtype {array.dtype}", where="codes")
    array = np.ascontiguousarray(array, dtype=np.int64)
    if array.size:
        low, high = array.min(axis=0), array.max(axis=0)
        for level, size in enumerate(sizes):
            if low[level] < 0 or high[level] >= size:
                raise DataError(f"level {level} holds codes outside [0, {size}) (min {low[level]}, "
                                f"max {high[level]})", where="codes",
                                fix="use codes made by this tokenizer")
    return array


def read_model_config(directory: Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved tokenizer; raise DataError for anything else."""
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory", where=str(directory),
                        fix="pass the directory that Tokenizer.save wrote")
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise DataError(f"{directory} is not a sidkit model: it has no {CONFIG_FILE}", where=str(directory),
                        fix="pass the directory that Tokenizer.save wrote")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{CONFIG_FILE} is not valid JSON: {error}", where=str(config_path),
                        fix="save the model again") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DataError(f"{directory} is not a sidkit model ({CONFIG_FILE} has no format "
                        f"{FORMAT_NAME!r})", where=str(config_path),
                        fix="pass the directory that Tokenizer.save wrote")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"bad format_version {version!r}", where=str(config_path), fix="save the model again")
    if version > FORMAT_VERSION:
        raise DataError(f"the model was saved by a newer sidkit ({meta.get('sidkit_version')}, format "
                        f"{version}); this sidkit {__version__} reads format {FORMAT_VERSION}",
                        where=str(config_path), fix="upgrade sidkit")
    for key in ("tokenizer", "config", "dim"):
        if key not in meta:
            raise DataError(f"{CONFIG_FILE} lacks {key!r}", where=str(config_path), fix="save the model again")
    if not isinstance(meta["config"], dict):
        raise DataError("'config' must be an object", where=str(config_path), fix="save the model again")
    return meta


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; ConfigError if torch does not know it or CUDA is missing."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {device!r}", where="device", fix='use "cpu" or "cuda"') from error
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine", where="device", fix='use device="cpu"')
    return target


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}", where="batch_size")
    return int(batch_size)
