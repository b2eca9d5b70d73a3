"""How much of a picture is clipped: pixels pushed to pure white or pure black.

A copy brightened or with its contrast raised pushes highlights to 255 and shadows to 0:
what was there is gone for good, while the brighter copy measures as much detail as its
original and its file is often the larger. A version of a picture with clearly more of
its frame clipped than another of (nearly) its size never keeps over that one, unless the
other spans clearly fewer tones or colours, or is clipped more on one side: a copy with
its contrast lowered clips nothing, having squeezed its original's clipped areas into flat
grey, a desaturated copy of a pure red clips no channel, and a darkened copy with raised
contrast trades blown highlights for crushed shadows; all have lost as much.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

#: a pixel is clipped when its brightest channel is at least HIGH or at most LOW, measured
#: on the picture reduced by averaging (at least 2 x 2 pixels, at most MEASURED_SIDE on
#: its long side): a heavy JPEG re-encode scatters a clipped area's 255s into 240-255
#: noise, which would make it look less clipped than its original
HIGH, LOW = 252, 3
#: share of the frame by which another version must be less clipped (and at most half
#: as clipped) before a keeper gives way to it
CLEARLY_LESS = 0.01
#: the share of the other's tonal spread and colourfulness that the less clipped version
#: must keep
KEPT = 0.85
#: how much more of its frame the less clipped version may clip on one side (highlights or
#: shadows) than the other
SIDE_SLACK = 0.005
MEASURED_SIDE = 512

Clipping = tuple[float, float, float, float]


def clipping(rgb: Image.Image) -> Clipping:
    """(the shares of ``rgb``'s pixels whose brightest channel is clipped to white, and to
    black, the spread of its tones: the 1st to the 99th percentile of the brightest channel
    over the 99th, its colourfulness: the mean saturation, (brightest - darkest channel) /
    brightest). The spread and the colourfulness do not change with brightness: a copy
    brightened without clipping measures as its original."""
    rgb = rgb.convert("RGB")
    if min(rgb.size) >= 2:
        rgb = rgb.reduce(max(2, math.ceil(max(rgb.size) / MEASURED_SIDE)))
    px = np.asarray(rgb)
    top, bottom = px.max(axis=2).astype(np.float32), px.min(axis=2)
    lo, hi = np.percentile(top, [1, 99])
    sat = (top - bottom) / np.maximum(top, 1)
    return (float((top >= HIGH).mean()), float((top <= LOW).mean()),
            float((hi - lo) / max(hi, 1)), float(sat.mean()))


def clearly_less_clipped(a: Clipping | None, b: Clipping | None) -> bool:
    """Whether a version measuring ``a`` (:func:`clipping`) is clearly less clipped than
    one measuring ``b``: in all by :data:`CLEARLY_LESS` of the frame and at most half as
    much, on neither side by more than :data:`SIDE_SLACK` more, keeping at least
    :data:`KEPT` of its tonal spread and of its colourfulness."""
    if a is None or b is None:
        return False
    ta, tb = a[0] + a[1], b[0] + b[1]
    return (tb >= ta + CLEARLY_LESS and tb >= 2 * ta and a[0] <= b[0] + SIDE_SLACK
            and a[1] <= b[1] + SIDE_SLACK and a[2] >= KEPT * b[2] and a[3] >= KEPT * b[3])


def clipped(c: Clipping) -> float:
    """The share of the frame clipped to white or black."""
    return c[0] + c[1]
