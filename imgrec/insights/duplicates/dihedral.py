"""The eight rotations/mirrorings: pHash bits of every variant from one DCT, and
thumbnails turned to match.

Mirroring negates the odd columns or rows of a DCT and a transpose swaps its axes, so the
DCT hashes of all eight variants follow from one transform.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def variants(dct: np.ndarray) -> np.ndarray:
    """(8, 8, 8) DCTs of the eight rotations/mirrorings, from one DCT (identity first);
    a stack of DCTs (..., 8, 8) gives (..., 8, 8, 8)."""
    sign = (-1.0) ** np.arange(8)
    out = []
    for base in (dct, np.swapaxes(dct, -1, -2)):
        for sy in (False, True):
            for sx in (False, True):
                v = base * (sign[:, None] if sy else 1.0) * (sign[None, :] if sx else 1.0)
                out.append(v)
    return np.stack(out, axis=-3)



def bits(dct: np.ndarray) -> np.ndarray:
    """pHash bits (imagehash's rule: above the median of the 64 coefficients)."""
    flat = dct.reshape(*dct.shape[:-2], 64)
    return flat > np.median(flat, axis=-1, keepdims=True)



def hash_distance(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(smallest hamming distance of a's pHash to b's eight variants, that variant)."""
    d = (bits(variants(b)) != bits(a)[None]).sum(1)
    v = int(np.argmin(d))
    return int(d[v]), v



def dihedral(t: np.ndarray, v: int) -> np.ndarray:
    """The thumbnail under the variant numbered as in :func:`variants`."""
    x = t.T if v >= 4 else t
    if v & 2:
        x = x[::-1, :]
    if v & 1:
        x = x[:, ::-1]
    return np.ascontiguousarray(x)



def aligned(b: np.ndarray, v: int, shape: tuple[int, int]) -> np.ndarray:
    """``b``'s thumbnail under variant ``v``, resized to ``shape`` (h, w)."""
    im = Image.fromarray(dihedral(b, v))
    return np.asarray(im.resize((shape[1], shape[0]), Image.LANCZOS), np.float64)
