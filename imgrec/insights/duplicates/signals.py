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
(:data:`FINE` = 160 pixels, :func:`fine_thumb`) of both files, whose detail must agree too
(:func:`confirm`'s ``fine``): at 48 pixels two different tiles of one smooth, streaked or
symmetric wallpaper can match as a crop, at 160 their detail does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_BITS = 10  # pHash hamming distance (of 64) that confirms a same-picture pair
NCC_MIN = 0.93  # normalised cross-correlation that confirms a crop
CROP_MIN = 0.5  # a crop must keep at least this share of the frame
THUMB = 48
SCALES = tuple(np.round(np.arange(0.5, 1.0001, 0.05), 2))
DETAIL_MAX = 1600
ENERGY = 0.6  # share of the gradient energy below the effective resolution
DETAIL_SIGMA = 1.0  # blur (thumbnail pixels) whose residue is the fine detail
DETAIL_MIN = 0.25  # correlation of the fine detail that a crop confirmation also needs
HASH_DETAIL_MIN = 0.45  # ... that a pHash confirmation needs
CROP_SURE = 0.97  # a crop correlation below this needs CROP_DETAIL_MIN of fine detail
CROP_DETAIL_MIN = 0.6
REFINE_FROM = 0.7  # a coarse crop correlation from which the placement is refined
CROP_DETAIL_MAX = 1.3  # a crop's detail over its region's (see crop_detail_ratio)
FINE = 160  # long side of the fine thumbnail (see fine_thumb)
FINE_HASH_MIN = 0.15  # fine detail agreement (160 px) that a pHash confirmation needs
FINE_BAND = (1.0, 3.0)  # the band (blur sigmas, fine pixels) a crop's fine check compares
FINE_NOISE = 0.5  # grey levels squared of noise in that band (see fine_need)
FINE_MIN, FINE_MAX = 0.4, 0.95  # the least and the most a crop's fine check asks


@dataclass(frozen=True)
class Signal:
    """What :func:`compute` measures of one image."""

    dct: np.ndarray  #: (8, 8) float32 lowest DCT frequencies
    thumb: np.ndarray  #: (h, w) float32 grey thumbnail (0..255), long side THUMB
    detail: float  #: effective resolution: pixels on the long side that carry detail
    #: estimated JPEG quality of the file (:mod:`.compression`); None: not a JPEG
    quality: float | None = None


def compute(rgb: Image.Image, quality: float | None = None) -> Signal:
    """The signal of one upright RGB image (``quality``: its file's JPEG quality)."""
    from scipy.fft import dctn

    grey = rgb.convert("L")
    small = np.asarray(grey.resize((32, 32), Image.LANCZOS), np.float64)
    dct = dctn(small, norm="ortho")[:8, :8].astype(np.float32)
    s = THUMB / max(grey.size)
    tw, th = max(1, round(grey.width * s)), max(1, round(grey.height * s))
    thumb = np.asarray(grey.convert("F").resize((tw, th), Image.LANCZOS), np.float32)
    return Signal(dct, thumb, detail(grey), quality)


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


def _dihedral(t: np.ndarray, v: int) -> np.ndarray:
    """The thumbnail under the variant numbered as in :func:`variants`."""
    x = t.T if v >= 4 else t
    if v & 2:
        x = x[::-1, :]
    if v & 1:
        x = x[:, ::-1]
    return np.ascontiguousarray(x)


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


def aligned(b: np.ndarray, v: int, shape: tuple[int, int]) -> np.ndarray:
    """``b``'s thumbnail under variant ``v``, resized to ``shape`` (h, w)."""
    im = Image.fromarray(_dihedral(b, v))
    return np.asarray(im.resize((shape[1], shape[0]), Image.LANCZOS), np.float64)


@dataclass(frozen=True)
class Placement:
    """Where :func:`crop_place` puts a part in a whole (thumbnail pixels of the whole)."""

    ncc: float  #: normalised cross-correlation of the grey thumbnails there
    share: float  #: share of the whole's frame the part covers
    variant: int  #: rotation/mirroring of the part (numbered as in :func:`variants`)
    box: tuple[float, float, float, float]  #: (x, y, width, height) in the whole
    agree: float  #: :func:`detail_agreement` of the thumbnails there


def crop_match(part: np.ndarray, whole: np.ndarray) -> tuple[float, float]:
    """(best normalised cross-correlation, share of ``whole``'s frame) of ``part`` placed
    as a crop of ``whole`` under any variant, scale and position (:func:`crop_place`);
    the correlation counts as 0 unless the placement's fine detail agrees too
    (:func:`detail_agreement` at least :data:`DETAIL_MIN`, or :data:`CROP_DETAIL_MIN`
    for a correlation below :data:`CROP_SURE`: neighbouring tiles of one smooth wallpaper
    correlate 0.93-0.97 with their detail agreeing 0.15-0.6), else the correlation is the
    shading's alone."""
    p = crop_place(part, whole)
    if p is None:
        return 0.0, 0.0
    return (p.ncc if p.agree >= _crop_detail_need(p.ncc) else 0.0), p.share


def _crop_detail_need(ncc: float) -> float:
    return DETAIL_MIN if ncc >= CROP_SURE else CROP_DETAIL_MIN


def crop_place(part: np.ndarray, whole: np.ndarray) -> Placement | None:
    """The best placement of ``part`` as a crop of ``whole`` under any variant, scale and
    position; shares below :data:`CROP_MIN` are not tried (None when nothing fits).
    Correlations by FFT, window sums by integral images, on a grid of whole pixels and
    :data:`SCALES`; the best placement is then refined to a quarter pixel
    (:func:`_refine`: at 48 pixels a half-pixel offset alone can take a fine-textured crop
    from 0.99 to 0.87)."""
    from scipy.signal import correlate

    wh, ww = whole.shape
    w = whole.astype(np.float64)
    ii = np.pad(w, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ii2 = np.pad(w * w, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, at = -1.0, None
    for v in range(8):
        p = Image.fromarray(_dihedral(part, v))
        for sx in SCALES:
            tw = round(sx * ww)
            th = round(tw * p.height / p.width)
            if th > wh or th < 4 or tw < 4 or (tw * th) / (ww * wh) < CROP_MIN - 0.02:
                continue
            t = np.asarray(p.resize((tw, th), Image.LANCZOS), np.float64)
            t = t - t.mean()
            tn = np.sqrt((t * t).sum())
            if tn == 0:
                continue
            num = correlate(w, t, mode="valid", method="fft")
            s1 = ii[th:, tw:] - ii[:-th, tw:] - ii[th:, :-tw] + ii[:-th, :-tw]
            s2 = ii2[th:, tw:] - ii2[:-th, tw:] - ii2[th:, :-tw] + ii2[:-th, :-tw]
            var = s2 - s1 * s1 / (th * tw)
            ncc = num / (tn * np.sqrt(np.maximum(var, 1e-9)))
            k = int(np.argmax(ncc))
            got = float(ncc.flat[k])
            if got > best:
                y, x = divmod(k, ncc.shape[1])
                best, at = got, (v, float(x), float(y), float(tw), float(th))
    if at is None:
        return None
    p, box = _dihedral(part, at[0]), at[1:]
    if best >= REFINE_FROM:
        best, box = _refine(p, whole, box, best)
    share = min(1.0, (box[2] * box[3]) / (ww * wh))
    return Placement(min(best, 1.0), share, at[0], tuple(box),
                     detail_agreement(*_placed(p, whole, box)))


def _placed(part: np.ndarray, whole: np.ndarray, box: tuple[float, float, float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(part, the region ``box`` = (x, y, width, height) of ``whole`` resampled to the
    part's size): the two aligned at sub-pixel precision, as floats."""
    x, y, tw, th = box
    region = Image.fromarray(whole).transform(
        (part.shape[1], part.shape[0]), Image.EXTENT, (x, y, x + tw, y + th), Image.BICUBIC)
    return part.astype(np.float64), np.asarray(region, np.float64)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally sized arrays (their 1-pixel rims off,
    where resampling reads outside the frame)."""
    a, b = a[1:-1, 1:-1], b[1:-1, 1:-1]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def _refine(part: np.ndarray, whole: np.ndarray, box: tuple[float, float, float, float],
            coarse: float) -> tuple[float, tuple]:
    """Hill-climb the placement ``box`` (x, y, width, height in ``whole``'s pixels; the
    aspect ratio stays the part's) in half, then quarter pixels of position and 1 % of
    scale: (the best correlation, which never falls below ``coarse``, and its box)."""
    wh, ww = whole.shape
    aspect = part.shape[0] / part.shape[1]
    x, y, tw, _ = box
    cur = (x, y, tw)

    def score(c: tuple[float, float, float]) -> float:
        cx, cy, cw = c
        ch = cw * aspect
        if (cx < -0.5 or cy < -0.5 or cx + cw > ww + 0.5 or cy + ch > wh + 0.5
                or cw * ch < (CROP_MIN - 0.02) * ww * wh):
            return -1.0
        return _ncc(*_placed(part, whole, (cx, cy, cw, ch)))

    got = score(cur)
    for step in (0.5, 0.25):
        moved = True
        while moved:
            moved = False
            for d in ((step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0),
                      (0, 0, 0.01 * ww), (0, 0, -0.01 * ww)):
                c = (cur[0] + d[0], cur[1] + d[1], cur[2] + d[2])
                s = score(c)
                if s > got + 1e-6:
                    cur, got, moved = c, s, True
    if got <= coarse:
        return coarse, (x, y, tw, box[3])
    return got, (cur[0], cur[1], cur[2], cur[2] * aspect)


def fine_thumb(rgb: Image.Image, side: int = FINE) -> np.ndarray:
    """The fine grey thumbnail (:data:`FINE` pixels on the long side, never enlarged,
    floating point) that the fine check compares. Not cached: read from the two files of
    a pair only when its confirmation gets that far (:func:`confirm`'s ``fine``)."""
    grey = rgb.convert("L")
    k = max(1, int(max(grey.size) // (3 * side)))
    if k > 1:  # whole-pixel box reduction first: the rounding it adds averages out below
        grey = grey.reduce(k)
    s = min(1.0, side / max(grey.size))
    size = (max(1, round(grey.width * s)), max(1, round(grey.height * s)))
    return np.asarray(grey.convert("F").resize(size, Image.LANCZOS), np.float32)


def _resized(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if x.shape == tuple(shape):
        return x.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(x, np.float32))
    return np.asarray(im.resize((shape[1], shape[0]), Image.LANCZOS), np.float32)


def fine_frame_pair(a_fine: np.ndarray, b_fine: np.ndarray, v: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Two fine thumbnails showing one frame, ``b`` under variant ``v``, both at the
    smaller one's size."""
    b = _dihedral(b_fine, v)
    shape = min(a_fine.shape, b.shape, key=lambda s: s[0] * s[1])
    return _resized(a_fine, shape), _resized(b, shape)


def fine_crop_agreement(part_fine: np.ndarray, whole_fine: np.ndarray,
                        part_thumb: tuple[int, int], whole_thumb: tuple[int, int],
                        at: Placement) -> tuple[float, float]:
    """:func:`detail_stats` of the part and its region at the fine thumbnails'
    resolution (:func:`fine_crop_pair`)."""
    return detail_stats(*fine_crop_pair(part_fine, whole_fine, part_thumb, whole_thumb, at))


def fine_crop_pair(part_fine: np.ndarray, whole_fine: np.ndarray,
                   part_thumb: tuple[int, int], whole_thumb: tuple[int, int],
                   at: Placement) -> tuple[np.ndarray, np.ndarray]:
    """A part and its region of the whole, aligned at the fine thumbnails' resolution,
    at the placement ``at`` that :func:`crop_place` found on the
    thumbnails (shapes ``part_thumb``, ``whole_thumb``), refined again at this resolution
    (a quarter pixel of the coarse thumbnail is most of a pixel here): both are compared
    at the coarser of the two (the part taken down to its region's size when the region
    holds fewer pixels). Neighbouring tiles of one smooth wallpaper that match by shape at
    48 pixels share no detail at 160."""
    p = _dihedral(part_fine, at.variant)
    ky, kx = whole_fine.shape[0] / whole_thumb[0], whole_fine.shape[1] / whole_thumb[1]
    x, y, tw, th = at.box
    box = (x * kx, y * ky, tw * kx, th * ky)
    if box[2] < p.shape[1]:
        p = _resized(p, (max(4, round(box[3])), max(4, round(box[2]))))
    wh, ww = whole_fine.shape
    aspect = box[3] / box[2]
    rim = 0.5 * max(kx, ky) + 1  # the coarse placement may reach half a coarse pixel out

    def score(c: tuple[float, float, float]) -> float:
        cx, cy, cw = c
        ch = cw * aspect
        if (cx < -rim or cy < -rim or cx + cw > ww + rim or cy + ch > wh + rim
                or cw < 4):
            return -1.0
        return detail_agreement(*_placed(p, whole_fine, (cx, cy, cw, ch)))

    # the fine detail agrees only within about a pixel of the true placement, and the
    # coarse one is known to half a coarse pixel: try a grid around it, then climb
    reach = 0.5 * max(kx, ky)
    offsets = np.arange(-reach, reach + 1e-9, reach / 3)
    got, cur = -2.0, (box[0], box[1], box[2])
    for dy in offsets:
        for dx in offsets:
            c = (box[0] + dx, box[1] + dy, box[2])
            sc = score(c)
            if sc > got:
                got, cur = sc, c
    for step in (reach / 6, reach / 12, reach / 24):
        moved = True
        while moved:
            moved = False
            for d in ((step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0),
                      (0, 0, 2 * step), (0, 0, -2 * step)):
                c = (cur[0] + d[0], cur[1] + d[1], cur[2] + d[2])
                sc = score(c)
                if sc > got + 1e-6:
                    cur, got, moved = c, sc, True
    cx, cy, cw = cur
    return _placed(p, whole_fine, (cx, cy, cw, cw * aspect))


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
        pl.ncc if pl.agree >= _crop_detail_need(pl.ncc) else 0.0, pl.share), part)
        for part, pl in places.items()], reverse=True)
    best = tries[0][0][0]
    for (ncc, share), part in tries:
        if ncc < NCC_MIN:
            break
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
