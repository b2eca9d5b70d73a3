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


def data_uri(jpeg: bytes, frame: str | None = None, width: int = 4) -> str:
    """A ``data:`` URI of JPEG bytes (for plotly layout images), with a ``width``-pixel
    border of colour ``frame`` (``"#rrggbb"``) drawn on the image when given."""
    if frame:
        from PIL import Image, ImageDraw, ImageOps

        with Image.open(io.BytesIO(jpeg)) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        ImageDraw.Draw(rgb).rectangle((0, 0, rgb.width - 1, rgb.height - 1), outline=frame,
                                      width=width)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=85)
        jpeg = buf.getvalue()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
