"""The second, independent signal that confirms a same-picture candidate, and detail.

For every image (decoded from the gallery file, upright):

* the 8 x 8 lowest frequencies of the DCT of its 32 x 32 grey version (the pHash input):
  the DCT hashes of all eight rotations/mirrorings follow from this one transform
  (mirroring negates the odd columns or rows, a transpose swaps the axes), so a rotated or
  mirrored copy is compared with the original under its best-matching variant;
* a grey thumbnail (48 pixels on the long side, kept in floating point: rounded to whole
  grey levels, the fine detail of a smooth picture is mostly rounding noise): a crop
  keeping at least half the frame is confirmed by normalised cross-correlation of the crop
  against every position and scale in the other image's thumbnail, under all eight
  variants;
* its detail: the effective linear resolution factor (the smallest downscale that loses
  no detail, see :func:`detail`), so an upscaled copy ranks below its original.

Not cached, and read only for a pair that the above would confirm: the fine thumbnails
(:data:`.fine.FINE` = 160 pixels, :func:`.fine.fine_thumb`) of both files, whose detail
must agree too (:func:`confirm`'s ``fine``): at 48 pixels two different tiles of one
smooth, streaked or symmetric wallpaper can match as a crop, at 160 their detail does not.

The parts: :mod:`.dihedral` (the eight variants), :mod:`.placement` (a crop's placement),
:mod:`.bands` (agreement of fine detail), :mod:`.fine` (the fine check's alignment); this
module measures each image and decides a pair (:func:`confirm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgrec.insights.duplicates.bands import band_stats, detail_agreement, fine_need
from imgrec.insights.duplicates.dihedral import aligned, hash_distance
from imgrec.insights.duplicates.fine import FINE, fine_crop_pair, fine_frame_pair
from imgrec.insights.duplicates.placement import CROP_KEEP, crop_detail_need, crop_place

HASH_BITS = 10  # pHash hamming distance (of 64) that confirms a same-picture pair
NCC_MIN = 0.93  # normalised cross-correlation that confirms a crop
THUMB = 48
DETAIL_MAX = 1600
ENERGY = 0.6  # share of the gradient energy below the effective resolution
HASH_DETAIL_MIN = 0.45  # detail agreement (48 px) that a pHash confirmation needs
CROP_DETAIL_MAX = 1.3  # a crop's detail over its region's (see crop_detail_ratio)
FINE_HASH_MIN = 0.15  # fine detail agreement (160 px) that a pHash confirmation needs


@dataclass(frozen=True)
class Signal:
    """What :func:`compute` measures of one image."""

    dct: np.ndarray  #: (8, 8) float32 lowest DCT frequencies
    thumb: np.ndarray  #: (h, w) float32 grey thumbnail (0..255), long side THUMB
    detail: float  #: effective resolution: pixels on the long side that carry detail
    #: estimated JPEG quality of the file (:mod:`.compression`); None: not a JPEG
    quality: float | None = None
    #: (shares of the frame clipped to white and to black, tonal spread, colourfulness)
    #: (:func:`.clipping.clipping`); None: not measured
    clipped: tuple[float, float, float, float] | None = None


def compute(rgb: Image.Image, quality: float | None = None) -> Signal:
    """The signal of one upright RGB image (``quality``: its file's JPEG quality)."""
    from scipy.fft import dctn

    from imgrec.insights.duplicates.clipping import clipping

    grey = rgb.convert("L")
    small = np.asarray(grey.resize((32, 32), Image.LANCZOS), np.float64)
    dct = dctn(small, norm="ortho")[:8, :8].astype(np.float32)
    s = THUMB / max(grey.size)
    tw, th = max(1, round(grey.width * s)), max(1, round(grey.height * s))
    thumb = np.asarray(grey.convert("F").resize((tw, th), Image.LANCZOS), np.float32)
    return Signal(dct, thumb, detail(grey), quality, clipping(rgb))


def detail(grey: Image.Image) -> float:
    """Effective resolution: the long side times the spatial frequency (as a share of
    the Nyquist limit) below which :data:`ENERGY` of the image's gradient energy lies. An
    image upscaled by 1.5 keeps its energy below 1/1.5 of its own limit, so it measures
    the same as its original; a blurred copy measures less. Measured on at most
    :data:`DETAIL_MAX` pixels on the long side (larger images tie at that value)."""
    if max(grey.size) > DETAIL_MAX:
        k = DETAIL_MAX / max(grey.size)
        grey = grey.resize((max(8, round(grey.width * k)), max(8, round(grey.height * k))),
                           Image.LANCZOS)
    g = np.asarray(grey, np.float64)
    g = (g - g.mean()) * np.outer(np.hanning(g.shape[0]), np.hanning(g.shape[1]))
    power = np.abs(np.fft.rfft2(g)) ** 2
    fy = np.abs(np.fft.fftfreq(g.shape[0]))[:, None] / 0.5
    fx = np.fft.rfftfreq(g.shape[1])[None, :] / 0.5
    r = np.maximum(fy, fx)  # the limit of the finer axis
    w = (power * (fy * fy + fx * fx)).ravel()
    if w.sum() <= 0:
        return 1.0
    o = np.argsort(r.ravel(), kind="stable")
    cum = np.cumsum(w[o])
    cut = float(r.ravel()[o][np.searchsorted(cum, ENERGY * cum[-1])])
    return min(1.0, cut) * max(grey.size)


Fine = Callable[[], "tuple[np.ndarray | None, np.ndarray | None]"]


def confirm(a: Signal, b: Signal, longs: tuple[int, int] | None = None,
            fine: Fine | None = None) -> tuple[bool, str]:
    """Whether ``a`` and ``b`` are the same picture, and the evidence in words (a crop:
    "b is a crop ..." or "a is a crop ..." says which one is the part). With ``longs``
    (the stored long sides of a and b), a crop must also be consistent in detail
    (:func:`crop_detail_ratio` at most :data:`CROP_DETAIL_MAX`). With ``fine`` (called
    once, when a pair gets that far: the fine thumbnails of a and b, :func:`fine_thumb`,
    None where a file cannot be read) the fine detail must agree too: a pHash match's at
    least :data:`FINE_HASH_MIN` (:func:`fine_frame_pair`), a crop's band of detail at its
    placement at least :func:`fine_need` of its strength (:func:`fine_crop_pair`,
    :func:`band_stats`); where a fine thumbnail is missing the thumbnails decide alone."""
    dist, v = hash_distance(a.dct, b.dct)
    names = ("as is", "mirrored", "flipped", "rotated 180", "transposed", "rotated 90",
             "rotated 270", "transverse")
    got: list = []

    def fines() -> tuple[np.ndarray | None, np.ndarray | None]:
        if not got:
            got.append(fine() if fine is not None else (None, None))
        return got[0]

    why = ""
    if dist <= HASH_BITS:
        agree = detail_agreement(a.thumb, aligned(b.thumb, v, a.thumb.shape))
        if agree >= HASH_DETAIL_MIN:
            fa, fb = fines()
            if fa is None or fb is None:
                return True, f"pHash {dist}/64 ({names[v]}), detail agrees {agree:.2f}"
            fd = detail_agreement(*fine_frame_pair(fa, fb, v))
            if fd >= FINE_HASH_MIN:
                return True, (f"pHash {dist}/64 ({names[v]}), detail agrees {agree:.2f} "
                              f"({fd:.2f} at {FINE} px)")
            why = f"; its fine detail agrees {fd:.2f}"
    places = {"b": crop_place(b.thumb, a.thumb), "a": crop_place(a.thumb, b.thumb)}
    tries = sorted([((0.0, 0.0) if pl is None else (
        pl.ncc if pl.agree >= crop_detail_need(pl.ncc) else 0.0, pl.share), part)
        for part, pl in places.items()], reverse=True)
    best = tries[0][0][0]
    for (ncc, share), part in tries:
        if ncc < NCC_MIN:
            break
        if share < CROP_KEEP:  # less than half the frame: no crop this tier accepts
            why = f"; as a crop ({ncc:.2f}) it keeps only {share:.1%} of the frame"
            continue
        (pp, pl_), (wp, wl) = ((b, 1), (a, 0)) if part == "b" else ((a, 0), (b, 1))
        ratio = None
        if longs is not None:
            ratio = crop_detail_ratio(pp.detail, longs[pl_], wp.detail, longs[wl], share)
        if ratio is not None and ratio > CROP_DETAIL_MAX:
            return False, (f"pHash {dist}/64; as a crop ({ncc:.2f}) it would carry {ratio:.1f}x "
                           "the detail of its region")
        crop = f"{part} is a crop of {share:.0%} of the frame (correlation {ncc:.3f}"
        fa, fb = fines()
        if fa is None or fb is None:
            return True, crop + ")"
        f_part, f_whole = (fb, fa) if part == "b" else (fa, fb)
        fd, rms = band_stats(*fine_crop_pair(f_part, f_whole, pp.thumb.shape, wp.thumb.shape,
                                             places[part]))
        if fd >= fine_need(rms):
            return True, crop + f", fine detail agrees {fd:.2f})"
        why = (f"; as a crop ({ncc:.2f}) its fine detail agrees {fd:.2f}, "
               f"needs {fine_need(rms):.2f}")
    return False, f"pHash {dist}/64, best crop correlation {best:.2f}" + why


def crop_detail_ratio(part_detail: float, part_long: int, whole_detail: float,
                      whole_long: int, share: float) -> float | None:
    """The part's effective resolution over that of the region of the whole it would be
    cut from (the whole's, times the square root of the share): a crop cannot carry more
    detail than its region, so a true crop measures at most about 1 (1.23 at most over
    the benchmark's 138 crops; detail is not spread evenly over a frame), while one
    picture matching a region of another by shape alone can measure far more (1.43 for
    two tiles of one symmetric graphic). Only asked when the whole carries at least 0.9x
    the part's detail (else the whole may be a reduced copy of the part's source, and the
    part a sharp crop of that source); None otherwise, or when either image is larger than
    :data:`DETAIL_MAX` (its detail is measured downscaled)."""
    if (max(part_long, whole_long) > DETAIL_MAX or share <= 0
            or whole_detail < 0.9 * part_detail):
        return None
    return part_detail / (whole_detail * math.sqrt(share))
