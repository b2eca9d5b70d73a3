"""The fine check at 160 pixels: fine thumbnails read from the two files of a pair, and
the pair aligned at that resolution (one frame, or a crop at its placement refined again).

Not cached: read only for a pair that the 48-pixel thumbnails would confirm. At 48 pixels
two different tiles of one smooth, streaked or symmetric wallpaper can match as a crop, at
160 their detail does not.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imgrec.insights.duplicates.bands import detail_agreement, detail_stats
from imgrec.insights.duplicates.dihedral import dihedral
from imgrec.insights.duplicates.placement import Placement, climb, placed

FINE = 160  # long side of the fine thumbnail (see fine_thumb)



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
    b = dihedral(b_fine, v)
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
    p = dihedral(part_fine, at.variant)
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
        return detail_agreement(*placed(p, whole_fine, (cx, cy, cw, ch)))

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
    cur, got = climb(score, cur, got, ((reach / k, 2 * reach / k) for k in (6, 12, 24)))
    cx, cy, cw = cur
    return placed(p, whole_fine, (cx, cy, cw, cw * aspect))
