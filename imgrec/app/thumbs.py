"""Square JPEG thumbnails of indexed images and uploads, and data URIs for plot images."""

from __future__ import annotations

import base64
import io
from typing import Any

from imgrec import images
from imgrec.errors import ImageError
from imgrec.index.index import Index

THUMB_SIZE = 256


#: Letterbox colour of thumbnails (the theme's secondary background).
THUMB_BACKGROUND = (243, 245, 249)


def _encode(im: Any, size: int) -> bytes:
    """JPEG bytes of ``im`` centred on a square canvas, so result grids line up."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), THUMB_BACKGROUND)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def thumbnail_bytes(idx: Index, path: str, size: int = THUMB_SIZE) -> bytes | None:
    """A square JPEG thumbnail of an indexed image, or None when the file is gone or unreadable.

    The path goes through :meth:`Index.resolve`, which refuses anything outside the gallery;
    thumbnails are kept on disk beside the index (see :mod:`imgrec.thumbcache`).
    """
    from imgrec.thumbcache import ThumbCache

    return ThumbCache.for_index(idx).thumbnail(idx, path, size)  # cached on disk


def upload_thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes | None:
    """A square JPEG thumbnail of uploaded bytes (None when they do not decode)."""
    try:
        rgb, _ = images.load_image(data)
    except (ImageError, MemoryError):
        return None
    rgb = rgb.copy()
    rgb.thumbnail((size, size))
    return _encode(rgb, size)


def data_uri(jpeg: bytes) -> str:
    """A ``data:`` URI of JPEG bytes (for plotly layout images)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


#: Height of the caption strip under a plot thumbnail, as a share of its width.
CAPTION_SHARE = 0.22
#: Side of the thumbnails drawn on plots (shown at about 70 px: sharp on a 1.3x screen too).
PLOT_THUMB = 96


def plot_thumb_uri(jpeg: bytes, frame: str | None, caption: str, width: int = 4) -> str:
    """A data URI of a thumbnail drawn on a plot: a ``width``-pixel frame of colour ``frame``
    (``"#rrggbb"``) around the picture and ``caption`` (cut with "…" to fit) on a white strip
    under it, both part of the image, so the caption scales with it and never runs into a
    neighbour's."""
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(io.BytesIO(jpeg)) as im:
        pic = im.convert("RGB")
    w, h = pic.size
    strip = max(12, round(CAPTION_SHARE * w))
    out = Image.new("RGB", (w, h + strip), (255, 255, 255))
    out.paste(pic, (0, 0))
    draw = ImageDraw.Draw(out)
    if frame:
        draw.rectangle((0, 0, w - 1, h - 1), outline=frame, width=width)
    font = ImageFont.load_default(size=max(8, round(0.62 * strip)))
    text = caption
    while text and draw.textlength(text, font=font) > w - 2:
        text = text[:-1]
    if text != caption:
        text = text[:-1].rstrip() + "…"
    draw.text((w / 2, h + strip / 2), text, fill=(31, 35, 48), font=font, anchor="mm")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=88)
    return data_uri(buf.getvalue())
