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
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sidkit import __version__
from sidkit.checks import check_int, check_seed
from sidkit.data.catalog import check_embedding_dim
from sidkit.data.validation import check_embedding_values
from sidkit.errors import ConfigError, DataError, NotFittedError, SidkitError
from sidkit.ids import SemanticIds
from sidkit.io import atomic_dir, file_mode, write_json
from sidkit.progress import Bar
from sidkit.workers import block_rows, blocks, map_blocks

FORMAT_NAME = "sidkit-tokenizer"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
DEFAULT_BATCH_SIZE = 16384
_RECORD_PREFIX = "history."  # tensors that record training (may hold NaN, integers), not weights

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
        self.seed = check_seed(seed)
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
        target = resolve_device(device)
        x = check_embeddings(X, where="fit(X)")
        self._fit(x, device=target, seed=self.seed)
        self._dim = int(x.shape[1])
        self._device = target
        return self

    def encode(self, X: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SemanticIds:
        """Codes of (N, D) embeddings ``X``: SemanticIds with (N, L) int64 codes."""
        dim = self._check_fitted()
        x = check_embeddings(X, where="encode(X)", expected_dim=dim)
        batch_size = _check_batch_size(batch_size)
        n = x.shape[0]
        codes = np.empty((n, self.levels), dtype=np.int64)
        # Blocks of rows go to the CPU threads as they become free (sidkit.workers); the codes do
        # not depend on the thread count.
        spans = blocks(n, block_rows(n, batch_size))
        lock = threading.Lock()
        with torch.inference_mode(), Bar("encode", len(spans), enabled=None if n > 4 * batch_size else False) as bar:

            def encode_block(start: int, stop: int) -> None:
                batch = np.ascontiguousarray(x[start:stop], dtype=np.float32)
                if not batch.flags.writeable:  # a read-only memmap slice: torch wants its own copy
                    batch = batch.copy()
                codes[start:stop] = self._encode_batch(torch.from_numpy(batch).to(self._device)).cpu().numpy()
                with lock:
                    bar.advance()

            map_blocks(encode_block, spans, device=self._device)
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
        """Write ``config.json`` and ``weights.safetensors`` into ``directory``; returns it.

        The directory is written as a whole (:func:`sidkit.io.atomic_dir`): an earlier model there is
        replaced in one step, and a crash leaves the old model or the new one, never a mix. A
        directory that holds something other than a model is not replaced.

        Raises:
            DataError: the fitted weights hold NaN or inf (nothing is written).
        """
        dim = self._check_fitted()
        path = Path(directory)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self._state_dict().items()}
        _check_finite_weights(tensors, where=f"{type(self).__name__}.save({str(path)!r})", saving=True)
        config = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "sidkit_version": __version__,
            "tokenizer": type(self).__name__,
            "config": self.get_config(),
            "dim": dim,
            "codebook_sizes": list(self.codebook_sizes),
            "weights": {k: list(v.shape) for k, v in tensors.items()},
        }
        with atomic_dir(path, replaceable=is_model_dir, what="model directory",
                        fix="pass a new directory, or one that `sidkit fit` wrote") as tmp:
            self._save_extra(tmp)
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
            os.chmod(tmp / WEIGHTS_FILE, file_mode())  # safetensors creates it private (0600)
            write_json(tmp / CONFIG_FILE, config)
        return path

    def _save_extra(self, directory: Path) -> None:  # noqa: B027  (optional hook, empty by default)
        """Write files of the subclass's own into the model directory being built (nothing by default)."""

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Self:
        """Load a tokenizer saved by :meth:`save`, with its weights on ``device``.

        Everything is checked before the model is returned: the config names a known tokenizer class
        with settings it accepts, the weights are finite floats whose names and shapes are exactly
        those of that model (and those the config records).

        Raises:
            DataError: the directory does not hold a usable model; the message says what is wrong.
        """
        path = Path(directory)
        meta = read_model_config(path)
        config_path = str(path / CONFIG_FILE)
        target_cls = tokenizer_class(meta["tokenizer"])
        if not issubclass(target_cls, cls):
            raise DataError(f"{path} holds a {target_cls.__name__}, not a {cls.__name__}", where=str(path),
                            fix=f"use {target_cls.__name__}.load or sidkit.tokenizers.base.load_tokenizer")
        try:
            model = target_cls(**meta["config"])
        except (TypeError, ValueError) as error:
            problem = error.problem if isinstance(error, SidkitError) else str(error)
            raise DataError(f"the settings in {CONFIG_FILE} do not fit a {target_cls.__name__}: {problem}",
                            where=config_path, fix="save the model again with this sidkit") from None
        target = resolve_device(device)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise DataError(f"{WEIGHTS_FILE} is missing", where=str(path), fix="save the model again")
        try:
            tensors = load_file(str(weights), device=str(target))
        except (SafetensorError, OSError, ValueError) as error:
            raise DataError(f"cannot read weights: {error}", where=str(weights),
                            fix="save the model again") from None
        _check_finite_weights(tensors, where=str(weights), saving=False)
        recorded = meta.get("weights")
        if recorded is not None and (not isinstance(recorded, dict) or {
                name: list(tensor.shape) for name, tensor in tensors.items()} != recorded):
            raise DataError(f"{WEIGHTS_FILE} does not hold the tensors that {CONFIG_FILE} records "
                            "(names or shapes differ)", where=str(path),
                            fix="the two files come from different models: save the model again")
        dim = meta["dim"]
        model._load_state_dict(tensors, dim=dim)
        # Names, shapes and the kind of number (float or not) must be exactly what this model holds.
        held = {name: (tuple(t.shape), t.is_floating_point()) for name, t in model._state_dict().items()}
        given = {name: (tuple(t.shape), t.is_floating_point()) for name, t in tensors.items()}
        if held != given:
            extra = sorted(set(given) - set(held))
            missing = sorted(set(held) - set(given))
            reshaped = sorted(name for name in set(held) & set(given) if held[name] != given[name])
            raise DataError(f"the weights do not match the model {CONFIG_FILE} describes ({len(model.codebook_sizes)} "
                            f"levels of {list(model.codebook_sizes)} codes): unexpected {extra[:3]}, missing "
                            f"{missing[:3]}, other shapes or types {reshaped[:3]}", where=str(path),
                            fix="the two files come from different models: save the model again")
        sizes = meta.get("codebook_sizes")
        if sizes is not None and sizes != list(model.codebook_sizes):
            raise DataError(f"{CONFIG_FILE} records codebook sizes {sizes}, its settings make "
                            f"{list(model.codebook_sizes)}", where=config_path, fix="save the model again")
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
        raise DataError("embeddings have dimension 0", where=where, fix="pass an (N, D) array with D >= 1")
    if array.dtype.kind not in "fiu":
        raise DataError(f"embeddings must be numbers, got dtype {array.dtype}", where=where,
                        fix="convert with .astype(np.float32)")
    if expected_dim is not None:
        check_embedding_dim(array, expected_dim, where=where)
    check_embedding_values(array, where=where)
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
        raise DataError(f"codes must be integers, got dtype {array.dtype}", where="codes",
                        fix="pass SemanticIds or an (items, levels) integer array")
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise DataError(f"{CONFIG_FILE} is not valid JSON: {error}", where=str(config_path),
                        fix="save the model again") from None
    except OSError as error:
        raise DataError(f"cannot read {CONFIG_FILE}: {error.strerror or error}", where=str(config_path),
                        fix="check the file and its permissions") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DataError(f"{directory} is not a sidkit model ({CONFIG_FILE} has no format "
                        f"{FORMAT_NAME!r})", where=str(config_path),
                        fix="pass the directory that Tokenizer.save wrote")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
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
    if not isinstance(meta["tokenizer"], str):
        raise DataError(f"'tokenizer' must be a class name, got {meta['tokenizer']!r}"[:200], where=str(config_path),
                        fix="save the model again")
    dim = meta["dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise DataError(f"'dim' must be a positive integer, got {dim!r}"[:200], where=str(config_path),
                        fix="save the model again")
    return meta


def is_model_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a saved tokenizer (or the weights of one), so that saving may replace it."""
    return (directory / CONFIG_FILE).is_file() or (directory / WEIGHTS_FILE).is_file()


def _check_finite_weights(tensors: Mapping[str, torch.Tensor], *, where: str, saving: bool) -> None:
    """Floating-point weights are finite; the training history (``history.*``) is exempt."""
    for name, tensor in tensors.items():
        if name.startswith(_RECORD_PREFIX):
            continue
        if not tensor.is_floating_point():
            continue  # counters and flags (e.g. steps since a code was used)
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            if saving:
                raise DataError(f"the fitted weight {name} holds {bad} NaN or inf values; the model is not saved",
                                where=where, fix="fit again on finite input of moderate scale (normalize the "
                                "embeddings), or with a smaller learning rate")
            raise DataError(f"weight {name} holds {bad} NaN or inf values: the model is corrupted", where=where,
                            fix="save or fit the model again")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that this machine has; ConfigError (saying why not) otherwise."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ConfigError(f"unknown device {device!r}", where="device",
                          fix="use 'cpu', 'cuda', 'cuda:N' or 'mps'") from error
    if target.type == "cpu":
        return target
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} was asked for, but CUDA is not available (torch "
                              f"{torch.__version__} sees no CUDA GPU)", where="device",
                              fix="use device 'cpu', or a CUDA build of torch on a GPU machine")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s) "
                              "are visible", where="device", fix="use 'cuda' or 'cuda:0'")
        return target
    backend = getattr(torch.backends, target.type, None) if target.type == "mps" else getattr(torch, target.type,
                                                                                              None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        raise ConfigError(f"device {str(device)!r} is not available on this machine", where="device",
                          fix="use device 'cpu' (or 'cuda' on a machine with an NVIDIA GPU)")
    return target


def _check_batch_size(batch_size: int) -> int:
    return check_int(batch_size, where="batch_size")
