"""Deterministic 64-bit hashing of integer keys into embedding-table rows, vectorized in numpy.

Python's ``hash()`` is salted per process for strings and differs between platforms, so a table
built in one run would not match the next. Everything here is a fixed function of its inputs:
splitmix64 (Steele, Lea and Flood 2014) on uint64 keys, with a salt per field derived from the seed
and a field name, so two fields (for example depth-1 and depth-2 prefixes) land on independent rows.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from sidkit.errors import ConfigError, DataError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_MASK_64 = (1 << 64) - 1


def splitmix64(keys: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of each key: (n,) any integers -> (n,) uint64, a bijection on 64 bits."""
    z = np.asarray(keys).astype(np.uint64)  # negative int64 wrap to their two's complement bits
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def field_salt(seed: int, field: str) -> int:
    """A 64-bit salt for one field of one seed; a fixed function of both (crc32 of the name, not hash())."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}", where="seed")
    name = zlib.crc32(field.encode("utf-8"))
    mixed = splitmix64(np.array([(int(seed) & _MASK_64)], dtype=np.uint64) ^ np.uint64(name))
    return int(splitmix64(mixed)[0])


def fingerprint(columns: np.ndarray, salt: int) -> np.ndarray:
    """One uint64 per row of ``columns`` (n, j) non-negative ints, chaining splitmix64 over the columns.

    Rows that differ in any column get different fingerprints except with probability about 2^-64
    per pair, so a fingerprint stands for the whole tuple (a prefix, a pair of codes).
    """
    array = np.asarray(columns)
    if array.ndim == 1:
        array = array[:, None]
    h = np.full(array.shape[0], np.uint64(salt & _MASK_64), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(array.shape[1]):
            h = splitmix64(h ^ splitmix64(array[:, column].astype(np.uint64)))
    return h


def bucket(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Rows in ``[0, buckets)`` of (n,) uint64 hashes: (n,) int64. The modulo bias is below 2^-40."""
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)) or buckets < 1:
        raise ConfigError(f"the number of buckets must be a positive integer, got {buckets!r}", where="buckets")
    return (np.asarray(hashes, dtype=np.uint64) % np.uint64(buckets)).astype(np.int64)


def hash_rows(columns: np.ndarray, *, buckets: int, salt: int) -> np.ndarray:
    """Hash each row of ``columns`` (n, j) (or (n,)) into ``[0, buckets)``: (n,) int64."""
    return bucket(fingerprint(columns, salt), buckets)


def stable_keys(ids: np.ndarray) -> np.ndarray:
    """uint64 keys of ids that are the same in every process: integers as they are, strings by digest.

    Args:
        ids: (n,) integer or string ids.

    Returns:
        (n,) uint64. Equal ids give equal keys; strings use an 8-byte BLAKE2b digest of their UTF-8
        bytes, computed once per distinct string.
    """
    array = np.asarray(ids)
    if array.ndim != 1:
        raise DataError(f"ids must be one-dimensional, got shape {array.shape}", where="ids")
    if array.dtype.kind in "iu":
        return array.astype(np.uint64)
    if array.dtype.kind in "OUS":
        values, inverse = np.unique(array.astype(str), return_inverse=True)
        digests = np.array([int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little")
                            for v in values.tolist()], dtype=np.uint64)
        return digests[inverse.reshape(-1)]
    raise DataError(f"ids must be integers or strings, got dtype {array.dtype}", where="ids",
                    fix="pass integer or string ids")
