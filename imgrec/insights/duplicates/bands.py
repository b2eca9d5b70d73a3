"""Agreement of fine detail: the correlation of two aligned thumbnails' detail (what
their blur leaves out) in a band, and how much agreement detail of a given strength can
be asked for."""

from __future__ import annotations

import numpy as np

DETAIL_SIGMA = 1.0  # blur (thumbnail pixels) whose residue is the fine detail


FINE_BAND = (1.0, 3.0)  # the band (blur sigmas, fine pixels) a crop's fine check compares


FINE_NOISE = 0.5  # grey levels squared of noise in that band (see fine_need)


FINE_MIN, FINE_MAX = 0.4, 0.95  # the least and the most a crop's fine check asks



def detail_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of the fine detail (the thumbnails minus their blur) of two aligned,
    equally sized grey thumbnails: near 1 for one picture, low for two smooth pictures
    that merely share their shading (or for a flat pair, which has no detail: 0)."""
    return detail_stats(a, b)[0]



def detail_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(:func:`detail_agreement`, the RMS of the weaker of the two fine details in grey
    levels: how far the detail stands above re-encoding and resampling noise)."""
    return _band_stats(a, b, 0.0, DETAIL_SIGMA)



def band_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(correlation, RMS of the weaker in grey levels) of the band of detail between the
    blurs :data:`FINE_BAND` of two aligned, equally sized fine thumbnails: the finest
    pixel's worth, where resampling two copies differently and re-encoding noise differ
    most, is left out."""
    return _band_stats(a, b, *FINE_BAND)



def _band_stats(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """(correlation, RMS of the weaker) of the detail of two aligned, equally sized grey
    thumbnails between the blurs ``lo`` (0: the thumbnail itself) and ``hi``, border left out."""
    from scipy.ndimage import gaussian_filter

    x, y = (np.asarray(t, np.float64) for t in (a, b))
    x = (x if lo == 0 else gaussian_filter(x, lo)) - gaussian_filter(x, hi)
    y = (y if lo == 0 else gaussian_filter(y, lo)) - gaussian_filter(y, hi)
    x, y = x[1:-1, 1:-1] - x[1:-1, 1:-1].mean(), y[1:-1, 1:-1] - y[1:-1, 1:-1].mean()
    sx, sy = float((x * x).sum()), float((y * y).sum())
    rms = float(np.sqrt(min(sx, sy) / max(1, x.size)))
    den = float(np.sqrt(sx * sy))
    return (float((x * y).sum() / den) if den > 1e-6 else 0.0), rms



def fine_need(rms: float) -> float:
    """The fine detail agreement a crop needs when the weaker of its two details has
    ``rms`` grey levels: what one picture under noise of :data:`FINE_NOISE` would reach,
    ``1 - FINE_NOISE / rms**2``, kept within [:data:`FINE_MIN`, :data:`FINE_MAX`]. Faint
    detail (a smooth wallpaper) is mostly noise, so little is asked; strong detail (a
    sharp graphic, streaks) that matches only roughly, as two different tiles' curves do,
    is not enough."""
    return min(FINE_MAX, max(FINE_MIN, 1.0 - FINE_NOISE / max(rms, 1e-3) ** 2))
