"""Vectorized building blocks shared by the demo generator's modules.

Random strings, UUIDs, weighted choices and string concatenation are needed for
millions of rows; doing them one Python object at a time would turn a
minutes-long run into hours. Everything here works on whole numpy/Arrow arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
BASE62 = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8
)
URLSAFE = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_", dtype=np.uint8
)


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """The same per-step stream as `DemoContext.rng`, usable before a context exists."""
    digest = sum((i + 1) * ord(ch) for i, ch in enumerate(stream))
    return np.random.default_rng([seed, digest])


def bytes_to_str(block: np.ndarray) -> pa.Array:
    """Turn an (n, width) uint8 array of ASCII bytes into an Arrow string array."""
    n, width = block.shape
    data = pa.py_buffer(np.ascontiguousarray(block).tobytes())
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, data])


def random_strings(
    rng: np.random.Generator, n: int, length: int, alphabet: np.ndarray = BASE62
) -> pa.Array:
    """n random fixed-length strings over an ASCII alphabet."""
    idx = rng.integers(0, len(alphabet), size=(n, length))
    return bytes_to_str(alphabet[idx])


def uuid4_strings(rng: np.random.Generator, n: int, upper: bool = False) -> pa.Array:
    """n RFC 4122 version-4 UUIDs ("8-4-4-4-12" lowercase hex), as SDKs generate them."""
    nibbles = rng.integers(0, 16, size=(n, 32))
    nibbles[:, 12] = 4  # version
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)  # variant 10xx
    alphabet = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8) if upper else HEX
    chars = alphabet[nibbles]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    parts = [chars[:, 0:8], dash, chars[:, 8:12], dash, chars[:, 12:16], dash,
             chars[:, 16:20], dash, chars[:, 20:32]]
    return bytes_to_str(np.hstack(parts))


def digit_strings(values: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal strings of non-negative integers, e.g. 42 -> "000042"."""
    values = np.asarray(values, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values[:, None] // powers[None, :]) % 10
    return bytes_to_str(DIGITS[digits])


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation of arrays and literal strings (nulls propagate)."""
    return pc.binary_join_element_wise(*parts, "")


def choice(
    rng: np.random.Generator, options: np.ndarray, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted choice of n items; weights need not sum to one."""
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    return np.asarray(options)[rng.choice(len(options), size=n, p=p)]


def choice_per_row(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """For an (n, k) weight matrix, draw one column index per row (inverse CDF)."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(weights))[:, None]
    return np.minimum((u > cdf).sum(axis=1), weights.shape[1] - 1)


def take(values: np.ndarray | pa.Array, index: np.ndarray) -> pa.Array:
    """Gather values by index into an Arrow array (strings stay Arrow, no Python objects)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    return arr.take(pa.array(np.asarray(index, dtype=np.int64)))


def where(mask: np.ndarray, a: pa.Array, b: pa.Array | None) -> pa.Array:
    """Arrow if-else on a numpy mask; b=None gives nulls where mask is False."""
    if b is None:
        b = pa.nulls(len(a), type=a.type)
    return pc.if_else(pa.array(mask), a, b)


def list_array(counts: np.ndarray, values: pa.Array) -> pa.ListArray:
    """Group a flat value array into per-row lists of the given lengths."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def ean13(body12: np.ndarray) -> pa.Array:
    """EAN-13 strings from 12-digit integer bodies, with a valid check digit."""
    digits = (np.asarray(body12, dtype=np.int64)[:, None]
              // (10 ** np.arange(11, -1, -1, dtype=np.int64))) % 10
    weights = np.where(np.arange(12) % 2 == 0, 1, 3)
    check = (10 - (digits * weights).sum(axis=1) % 10) % 10
    return bytes_to_str(DIGITS[np.hstack([digits, check[:, None]])])


def weighted_sample(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability proportional to weight.

    Efraimidis-Spirakis keys (u ** (1/w)) with a partial sort: O(n), vectorized,
    where numpy's choice(replace=False, p=...) would be far slower at 1M rows.
    """
    w = np.asarray(weights, dtype=float)
    positive = np.flatnonzero(w > 0)
    k = min(k, len(positive))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.log(rng.random(len(positive))) / w[positive]
    top = np.argpartition(-keys, k - 1)[:k]
    return np.sort(positive[top])


def top_k(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """Per row, k distinct column indices drawn proportionally to weight (Gumbel keys)."""
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(weights.shape)) / weights
    return np.argsort(-keys, axis=1)[:, :k]
