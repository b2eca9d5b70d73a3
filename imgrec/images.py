"""Open, verify and normalise images; scan gallery folders.

Every image, at index time and at query time, goes through :func:`load_image` and
:func:`prepare`, so a gallery file used as a query reproduces its stored features exactly.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgrec import formats
from imgrec.errors import ImageError, ImgrecError
from imgrec.folders import (
    IGNORE_FILE,
    ScanEntry,
    exclude_rules,
    is_within,
    read_regular,
    scan,
    scan_entries,
)
from imgrec.formats import SUFFIXES

__all__ = ["DRAFT_MIN", "IGNORE_FILE", "MAX_ASPECT", "MAX_MEGAPIXELS", "MAX_PIXELS", "SUFFIXES",
           "WORK_SIZE", "ImageInfo", "ImageSource", "ScanEntry", "center_crop", "exclude_rules",
           "is_within", "load_image", "prepare", "read_bytes", "scan", "scan_entries",
           "thumbnail", "to_rgb"]

#: Shorter side of the working image both features are computed from.
WORK_SIZE = 256
#: JPEG draft decoding stops at the smallest DCT scale whose shorter side is still at least
#: twice the 224-pixel model input (and so above WORK_SIZE). 448 rather than 512 lets a
#: 2560 x 1920 photo decode at 1/4 scale instead of 1/2: decoding the indexing benchmark's
#: photos went from 16 to 12 ms each. A camera RAW's embedded preview is used when its
#: shorter side reaches this size too, and its sensor data is demosaiced at half size when
#: that still does.
DRAFT_MIN = 2 * 224
#: Longest side / shortest side beyond which the long side is centre-cropped first.
MAX_ASPECT = 4.0
#: Default pixel limit in megapixels (``--max-megapixels``): larger images are refused.
MAX_MEGAPIXELS = 150
#: The default limit in pixels.
MAX_PIXELS = MAX_MEGAPIXELS * 1_000_000

ImageSource = str | os.PathLike | bytes | IO[bytes] | Image.Image

# Pillow refuses images over twice its own limit in Image.open, before imgrec's check; a
# caller who raised --max-megapixels past it opens under this lock with Pillow's limit raised
_PILLOW_LIMIT = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog records of a decoded image (size after EXIF orientation).

    ``decoder`` says how it was decoded: ``pillow``, ``heif`` (pillow-heif),
    ``raw-preview`` (a camera RAW's embedded JPEG) or ``raw-demosaic`` (its sensor data).
    """

    format: str
    mode: str
    width: int
    height: int
    exif: str  # JSON object
    decoder: str = "pillow"


def read_bytes(source: str | os.PathLike | bytes | IO[bytes]) -> bytes:
    """Return the raw bytes of a path, a bytes object or a binary file-like object.

    A path is read only when it is a regular file (never a FIFO or a device).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        return source.read()  # type: ignore[union-attr]
    try:
        return read_regular(source)
    except ImageError as exc:
        raise ImageError(f"{os.fspath(source)}: {exc}") from None


def load_image(source: ImageSource, *, draft: bool = True, name: str | None = None,
               max_megapixels: float = MAX_MEGAPIXELS) -> tuple[Image.Image, ImageInfo]:
    """Decode an image into upright RGB, ready for :func:`prepare`.

    EXIF orientation is applied; palette, grey, CMYK and 16-bit images become RGB;
    transparency is composited onto white; animations give their first frame. JPEGs are
    draft-decoded (DCT scaling) to the smallest size whose shorter side is still at least
    ``DRAFT_MIN``. HEIC/HEIF needs pillow-heif and camera RAW needs rawpy (see
    :mod:`imgrec.formats`).

    Args:
        source: A path, bytes, a binary file object or a PIL image.
        draft: Allow reduced-size decoding (JPEG DCT scaling, RAW half-size demosaic).
        name: The file name where ``source`` is not a path (an upload): its suffix tells
            camera RAW formats apart.
        max_megapixels: Larger images are refused (``--max-megapixels``).

    Raises:
        ImageError: with a one-line reason (empty, not an image, truncated, too large, a
            decoder package missing, ...).

    Example:
        >>> rgb, info = load_image("query.jpg")
        >>> rgb.mode, info.format, info.decoder
        ('RGB', 'JPEG', 'pillow')

        A HEIC photo (skipped as a test: no HEIC file ships with the tests):

        >>> rgb, info = load_image("photo.heic")  # doctest: +SKIP
        >>> info.decoder                            # doctest: +SKIP
        'heif'
    """
    limit = _pixel_limit(max_megapixels)
    try:
        with warnings.catch_warnings():  # damaged files make decoders warn: the reason is
            warnings.simplefilter("ignore")  # in the ImageError, or the image decoded fine
            return _load(source, draft, name, limit)
    except ImageError as exc:
        msg = " ".join(str(exc).split())  # decoders' messages may span lines
        if msg == str(exc) and len(msg) <= 300:
            raise
        raise ImageError(msg[:300]) from None


def _load(source: ImageSource, draft: bool, name: str | None,
          limit: int) -> tuple[Image.Image, ImageInfo]:
    if isinstance(source, Image.Image):
        fp = getattr(source, "fp", None)
        if getattr(source, "_im", None) is None and fp is not None and hasattr(fp, "seek"):
            # not decoded yet: decode its bytes exactly as a file would be
            pos = fp.tell()
            try:
                fp.seek(0)
                data = fp.read()
            finally:
                fp.seek(pos)
            return _load(data, draft, name or getattr(source, "filename", None) or None, limit)
        im = source.copy()  # never change the caller's image
        im.format = source.format
        return _finish(im, draft, limit)
    if name is None and isinstance(source, str | os.PathLike):
        name = os.fspath(source)
    data = read_bytes(source)
    if not data:
        raise ImageError("empty file (0 bytes)")
    kind = formats.raw_kind(data, name)
    if kind:
        return _load_raw(data, kind, draft, limit)
    if formats.is_heif(data):
        formats.ensure_heif()
    im = _open(data, limit)
    if name is None and im.format == "TIFF" and _DNG_VERSION in getattr(im, "tag_v2", {}):
        return _load_raw(data, "DNG", draft, limit)  # a DNG given without its name
    return _finish(im, draft, limit, "heif" if im.format == "HEIF" else "pillow")


_DNG_VERSION = 50706  # TIFF tag present in every DNG


def _pixel_limit(max_megapixels: float) -> int:
    ok = isinstance(max_megapixels, int | float) and not isinstance(max_megapixels, bool)
    if not ok or not math.isfinite(max_megapixels) or max_megapixels <= 0:
        raise ImgrecError(f"max_megapixels must be a positive number, not {max_megapixels!r}")
    return int(max_megapixels * 1_000_000)


def _too_large(pixels: float, limit: int, size: str = "") -> ImageError:
    def mp(n: float) -> str:
        return f"{n / 1e6:,.0f}" if n >= 1e7 else f"{n / 1e6:.2g}"

    return ImageError(f"too large: {size}{mp(pixels)} megapixels (limit {mp(limit)}; "
                      "raise it with --max-megapixels)")


def _open(data: bytes, limit: int) -> Image.Image:
    """``Image.open`` with every failure as an ImageError (header only: nothing decoded)."""
    try:
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else 0
            if not pixels or pixels > limit:
                raise _too_large(pixels or limit + 1, limit) from None
            with _PILLOW_LIMIT:  # the caller raised the limit past Pillow's own
                before = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = limit
                try:
                    return Image.open(io.BytesIO(data))
                finally:
                    Image.MAX_IMAGE_PIXELS = before
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"unreadable: {exc}") from None


#: What Pillow and its plugins raise on damaged data (the decoder fuzz tests found Pillow's
#: AVIF plugin and pillow-heif raising RuntimeError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError)


def _finish(im: Image.Image, draft: bool, limit: int,
            decoder: str = "pillow") -> tuple[Image.Image, ImageInfo]:
    """Check the size, draft, decode, turn upright and convert an opened image."""
    fmt = im.format or "unknown"
    mode = im.mode
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"empty image ({w}x{h})")
    if w * h > limit:
        raise _too_large(w * h, limit, f"{w}x{h} pixels, ")
    try:
        exif = formats.exif_json(im)
        orientation = formats.orientation_of(im)
        if draft and fmt == "JPEG" and min(w, h) > 2 * DRAFT_MIN:
            s = DRAFT_MIN / min(w, h)
            im.draft(im.mode, (math.ceil(w * s), math.ceil(h * s)))
        im.load()
        im = ImageOps.exif_transpose(im) or im
        rgb = to_rgb(im)
    except ImageError:
        raise
    except _DECODE_ERRORS as exc:
        msg = str(exc)
        reason = "truncated" if "truncat" in msg.lower() else "corrupt"
        raise ImageError(f"{reason}: {msg}") from None
    if orientation in (5, 6, 7, 8):  # report the upright size
        w, h = h, w
    if decoder == "heif":  # libheif turned it upright already: record what the file says
        exif = formats.with_orientation(exif, im.info.get("original_orientation"))
    return rgb, ImageInfo(format=fmt, mode=mode, width=w, height=h, exif=exif, decoder=decoder)


def _load_raw(data: bytes, kind: str, draft: bool, limit: int) -> tuple[Image.Image, ImageInfo]:
    """A camera RAW: its embedded preview when large enough, else its sensor data."""
    with formats.RawFile(data, kind) as raw:
        w, h = raw.size
        if w < 1 or h < 1:
            raise ImageError(f"empty image ({w}x{h})")
        if w * h > limit:
            raise _too_large(w * h, limit, f"{w}x{h} pixels, ")
        orientation = raw.orientation
        preview, rgb = raw.preview(), None
        if isinstance(preview, bytes):
            try:
                p_rgb, p_info = load_image(preview, draft=draft, name="preview.jpg",
                                           max_megapixels=limit / 1e6)
            except ImageError:
                p_rgb = None  # a damaged preview: demosaic instead
            if p_rgb is not None and min(p_info.width, p_info.height) >= DRAFT_MIN:
                turned = json.loads(p_info.exif).get("Orientation", 1) not in (1, None)
                rgb = p_rgb if turned else formats.orientation_transpose(p_rgb, orientation)
        elif preview is not None and min(preview.size) >= DRAFT_MIN:
            rgb = formats.orientation_transpose(preview, orientation)
        decoder = "raw-preview"
        if rgb is None:
            rgb, decoder = raw.demosaic(draft and min(w, h) // 2 >= DRAFT_MIN), "raw-demosaic"
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    exif = formats.with_orientation(formats.container_exif(data), orientation)
    return rgb, ImageInfo(format=kind, mode="RGB", width=w, height=h, exif=exif, decoder=decoder)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, compositing transparency onto white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0 if a.max(initial=0) <= 65535 else a * (255.0 / a.max())
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode in ("L", "1") and "transparency" in im.info:
        return to_rgb(im.convert("LA"))
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported mode {im.mode}: {exc}") from None


def prepare(rgb: Image.Image) -> Image.Image:
    """Resize an RGB image so its shorter side is ``WORK_SIZE`` (both features use this).

    Extreme panoramas are centre-cropped to an aspect ratio of ``MAX_ASPECT`` first.
    """
    w, h = rgb.size
    if max(w, h) > MAX_ASPECT * min(w, h):
        if w > h:
            cw, ch = max(1, round(h * MAX_ASPECT)), h
        else:
            cw, ch = w, max(1, round(w * MAX_ASPECT))
        left, top = (w - cw) // 2, (h - ch) // 2
        rgb = rgb.crop((left, top, left + cw, top + ch))
        w, h = rgb.size
    s = WORK_SIZE / min(w, h)
    size = (max(WORK_SIZE, round(w * s)), max(WORK_SIZE, round(h * s)))
    if size == (w, h):
        return rgb
    return rgb.resize(size, Image.BILINEAR)


def center_crop(im: Image.Image, size: int) -> np.ndarray:
    """Centre crop of ``size`` x ``size`` pixels as a uint8 HxWx3 array."""
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def thumbnail(path: str | os.PathLike, size: int = 256) -> Image.Image:
    """An upright RGB thumbnail whose longer side is at most ``size`` pixels."""
    rgb, _ = load_image(path)
    rgb = rgb.copy()
    rgb.thumbnail((size, size), Image.BILINEAR)
    return rgb
