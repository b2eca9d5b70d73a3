"""The detail view's zoom: a window of the full-resolution original, cut and scaled here.

Streamlit's own image viewer only enlarges what it was sent; the detail dialog sends a
2048-pixel view. Zooming in instead cuts a window of the original (decoded at full
resolution, upright, from the file under the gallery root) and scales it to the view, so at
high zoom one pixel of the photo is several pixels of the screen. No Streamlit here.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image

from imgrec.images import load_image

#: the zoom levels offered (1: the whole image)
ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
#: width of the zoomed view sent to the browser, in pixels
VIEW_WIDTH = 1200


@dataclass(frozen=True)
class Window:
    """The part of the original a zoomed view shows, in the original's pixels."""

    left: int
    top: int
    right: int
    bottom: int
    full: tuple[int, int]  # the original's (width, height), upright
    scale: float  # view pixels per original pixel

    def caption(self) -> str:
        """``"pixels 100-400 × 50-275 of 1,200 × 900 · 1 photo pixel = 4.0 screen pixels"``."""
        w, h = self.full
        return (f"pixels {self.left:,}–{self.right:,} × {self.top:,}–{self.bottom:,} of "
                f"{w:,} × {h:,} · 1 photo pixel = {self.scale:.1f} view pixels")


def window(width: int, height: int, zoom: float, cx: float, cy: float) -> tuple[int, ...]:
    """``(left, top, right, bottom)`` of the ``1/zoom`` window centred at (``cx``, ``cy``)
    (fractions 0..1 of the width and height), moved inside the image where it would stick
    out.

    Example:
        >>> window(1000, 800, 4, 0.5, 0.5), window(1000, 800, 4, 1.0, 0.0)
        ((375, 300, 625, 500), (750, 0, 1000, 200))
    """
    zoom = max(1.0, float(zoom))
    w, h = max(1, round(width / zoom)), max(1, round(height / zoom))
    left = min(max(0, round(cx * width - w / 2)), width - w)
    top = min(max(0, round(cy * height - h / 2)), height - h)
    return left, top, left + w, top + h


def zoomed(file: str | os.PathLike, zoom: float, cx: float = 0.5, cy: float = 0.5,
           view_width: int = VIEW_WIDTH) -> tuple[bytes, Window]:
    """A JPEG of the ``zoom`` x window of ``file`` centred at (``cx``, ``cy``), ``view_width``
    pixels wide (enlarged without smoothing past one photo pixel per view pixel, so the
    photo's own pixels show), and which window it is.

    Raises:
        ImageError: the file cannot be decoded; OSError: it cannot be read.

    Example:
        >>> data, win = zoomed("query.jpg", 4, 0.5, 0.5)  # a 451 x 300 photo
        >>> win.caption()
        'pixels 169–282 × 112–187 of 451 × 300 · 1 photo pixel = 10.6 view pixels'
        >>> data[:2] == b"\\xff\\xd8"
        True
    """
    rgb, _ = load_image(file, draft=False)  # the full resolution, upright
    box = window(rgb.width, rgb.height, zoom, cx, cy)
    part = rgb.crop(box)
    scale = view_width / part.width
    size = (view_width, max(1, round(part.height * scale)))
    part = part.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    part.save(buf, "JPEG", quality=90)
    return buf.getvalue(), Window(*box, full=(rgb.width, rgb.height), scale=round(scale, 2))
