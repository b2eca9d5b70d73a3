"""Open, verify and normalise images; scan gallery folders.

Every image, at index time and at query time, goes through :func:`load_image` and
:func:`prepare`, so a gallery file used as a query reproduces its stored features exactly.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from imgrec.errors import ImageError

SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Shorter side of the working image both features are computed from.
WORK_SIZE = 256
#: JPEG draft decoding keeps the shorter side at least this large (2x the working size).
#: JPEG draft decoding stops at the smallest DCT scale whose shorter side is still at least
#: twice the 224-pixel model input (and so above WORK_SIZE). 448 rather than 512 lets a
#: 2560 x 1920 photo decode at 1/4 scale instead of 1/2: decoding the indexing benchmark's
#: photos went from 16 to 12 ms each.
DRAFT_MIN = 2 * 224
#: Longest side / shortest side beyond which the long side is centre-cropped first.
MAX_ASPECT = 4.0
#: Images with more pixels than this are refused as decompression bombs.
MAX_PIXELS = 150_000_000

ImageSource = str | os.PathLike | bytes | IO[bytes] | Image.Image


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog records of a decoded image (size after EXIF orientation)."""

    format: str
    mode: str
    width: int
    height: int
    exif: str  # JSON object


def scan(root: str | os.PathLike) -> Iterator[Path]:
    """Yield image files under ``root`` recursively, sorted, skipping hidden entries.

    Symbolic links are followed only when their target stays inside ``root``.

    Example:
        >>> files = list(scan("data/demo"))  # doctest: +SKIP
    """
    base = Path(root).resolve()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in SUFFIXES:
                continue
            path = Path(dirpath) / name
            if path.is_symlink() and not is_within(path, base):
                continue
            yield path


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (links resolved) lies inside ``root``."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError):
        return False
    return True


def read_bytes(source: str | os.PathLike | bytes | IO[bytes]) -> bytes:
    """Return the raw bytes of a path, a bytes object or a binary file-like object."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        return source.read()  # type: ignore[union-attr]
    path = Path(source)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    return path.read_bytes()


def load_image(source: ImageSource, *, draft: bool = True) -> tuple[Image.Image, ImageInfo]:
    """Decode an image into upright RGB, ready for :func:`prepare`.

    EXIF orientation is applied; palette, grey, CMYK and 16-bit images become RGB;
    transparency is composited onto white; animations give their first frame. JPEGs are
    draft-decoded (DCT scaling) to the smallest size whose shorter side is still at least
    ``DRAFT_MIN``.

    Raises:
        ImageError: with a one-line reason (empty, not an image, truncated, too large, ...).
    """
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
            return load_image(data, draft=draft)
        im = source.copy()  # never change the caller's image
        im.format = source.format
    else:
        data = read_bytes(source)
        if not data:
            raise ImageError("empty file (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError(f"too large: {exc}") from None
        except UnidentifiedImageError:
            raise ImageError("not an image (unrecognised format)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"unreadable: {exc}") from None
    fmt = im.format or "unknown"
    mode = im.mode
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"empty image ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(f"too large: {w}x{h} pixels (limit {MAX_PIXELS // 1_000_000} megapixels)")
    try:
        exif = _exif_json(im)
        if draft and fmt == "JPEG" and min(w, h) > 2 * DRAFT_MIN:
            s = DRAFT_MIN / min(w, h)
            im.draft(im.mode, (math.ceil(w * s), math.ceil(h * s)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
            im = ImageOps.exif_transpose(im) or im
        rgb = to_rgb(im)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        reason = "truncated" if "truncat" in msg.lower() else "corrupt"
        raise ImageError(f"{reason}: {msg}") from None
    if _swaps_axes(exif):  # report the upright size
        w, h = h, w
    return rgb, ImageInfo(format=fmt, mode=mode, width=w, height=h, exif=exif)


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


_EXIF_KEEP = {"Make", "Model", "DateTime", "Orientation", "Software", "Artist", "Copyright",
              "ImageDescription", "XResolution", "YResolution"}


def _exif_json(im: Image.Image) -> str:
    try:
        raw = im.getexif()
    except Exception:
        return "{}"
    out: dict[str, Any] = {}
    for tag, value in raw.items():
        name = ExifTags.TAGS.get(tag)
        if name not in _EXIF_KEEP:
            continue
        if isinstance(value, bytes):
            continue
        if not isinstance(value, int | float | str):
            value = str(value)
        out[name] = value if not isinstance(value, str) else value.strip("\x00")[:200]
    try:
        return json.dumps(out, sort_keys=True)
    except (TypeError, ValueError):
        return "{}"


def _swaps_axes(exif: str) -> bool:
    try:
        return int(json.loads(exif).get("Orientation", 1)) in (5, 6, 7, 8)
    except (ValueError, TypeError):
        return False
