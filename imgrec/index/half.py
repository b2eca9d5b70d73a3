"""The float16 copy of the embeddings that the first search pass reads.

A search pass over 400,000 x 2048 float32 embeddings reads 3.3 GB and is bound by
memory bandwidth. The index therefore also stores every embedding rounded to float16
(half the bytes) together with, per row, upper bounds of the rounding error
``|x - fl16(x)|`` in the L2 and L1 norms. The first pass scans the float16 rows; for
every metric the stored error bound turns into a proven bound on the fast score:

- cosine and euclidean: ``|x.q - fl16(x).q| <= |x - fl16(x)|_2 |q|_2`` (Cauchy-Schwarz);
- manhattan: ``| |x - q|_1 - |fl16(x) - q|_1 | <= |x - fl16(x)|_1`` (triangle inequality).

Rows whose bound reaches the k-th best are then rescored in float64 from the float32
rows, so results are exactly those of a float32/float64 brute-force scan. Embeddings are
unit vectors, so float16 never overflows; values below float16's normal range round to
subnormals with an absolute error of at most 2**-25, which the stored bound includes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: relative safety margin on the stored bounds (they are computed in float64)
MARGIN = 1e-9


@dataclass(frozen=True)
class HalfCopy:
    """The float16 rows of an embedding matrix and their rounding error bounds."""

    data: np.ndarray  #: (n, d) float16
    errors: np.ndarray  #: (n, 2) float32: bounds of |x - fl16(x)| in L2 and in L1

    @property
    def l2(self) -> np.ndarray:
        return self.errors[:, 0]

    @property
    def l1(self) -> np.ndarray:
        return self.errors[:, 1]


def round_up32(x: np.ndarray) -> np.ndarray:
    """float64 values rounded to float32 upwards (never below the input)."""
    x = np.asarray(x, dtype=np.float64)
    y = x.astype(np.float32)
    return np.where(y.astype(np.float64) < x, np.nextafter(y, np.float32(np.inf)), y)


def _rounding_error(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(n, 2) float64: |x - h| in L2 and L1 per row."""
    delta = np.abs(h.astype(np.float64) - x.astype(np.float64))
    return np.stack([np.sqrt((delta * delta).sum(1)), delta.sum(1)], axis=1)


def encode(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float16 rows of a float32 block and their (L2, L1) rounding error bounds.

    Example:
        >>> h, e = encode(np.array([[0.1, 0.2]], np.float32))
        >>> h.dtype, bool((e[0] > 0).all()), bool(e[0, 0] <= e[0, 1])
        (dtype('float16'), True, True)
    """
    x = np.asarray(block, dtype=np.float32)
    if not np.isfinite(x).all() or (np.abs(x) > np.finfo(np.float16).max).any():
        raise ValueError("float16 copies need finite values within float16's range")
    h = x.astype(np.float16)
    return h, round_up32(_rounding_error(x, h) * (1 + MARGIN))


def check(data16: np.ndarray, errors: np.ndarray, data32: np.ndarray) -> np.ndarray:
    """Per row: True where ``data16`` is fl16 of ``data32`` and ``errors`` bound the error."""
    x = np.asarray(data32, dtype=np.float32)
    h = x.astype(np.float16)
    same = (np.asarray(data16).view(np.uint16) == h.view(np.uint16)).all(1)
    bounded = (np.asarray(errors, dtype=np.float64) >= _rounding_error(x, h)).all(1)
    return same & bounded
