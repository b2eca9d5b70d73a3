"""RGB colour histogram: 3 x 256 bins, each channel normalised to sum 1."""

from __future__ import annotations

import numpy as np
from PIL import Image

BINS = 256
DIM = 3 * BINS


def histogram(rgb: Image.Image) -> np.ndarray:
    """The 768-value colour histogram of an RGB image (R bins, then G, then B).

    Computed on the prepared working image (see :func:`imgrec.images.prepare`), so the
    same file always gives the same histogram whatever its original resolution.

    Example:
        >>> from PIL import Image
        >>> h = histogram(Image.new("RGB", (4, 4), (255, 0, 0)))
        >>> float(h[255]), float(h[256]), float(h.sum())
        (1.0, 1.0, 3.0)
    """
    if rgb.mode != "RGB":
        raise ValueError(f"histogram needs an RGB image, got mode {rgb.mode}")
    counts = np.asarray(rgb.histogram(), dtype=np.float64).reshape(3, BINS)
    counts /= counts.sum(axis=1, keepdims=True)
    return counts.reshape(DIM).astype(np.float32)
