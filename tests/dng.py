"""A minimal DNG writer for tests: a Bayer sensor image from a real photo, with a JPEG preview.

The file is what a camera writes in miniature: IFD0 holds the preview (NewSubFileType 1,
JPEG, YCbCr) and the camera's make, model and orientation; a SubIFD holds the 16-bit RGGB
colour filter array with its black and white levels and a colour matrix for linear sRGB
primaries, so LibRaw's demosaic gives back the photo's colours.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# XYZ (D65) -> linear sRGB: the DNG ColorMatrix1 of a camera whose primaries are sRGB's
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
_TYPES = {1: "B", 3: "H", 4: "I", 5: "I", 10: "i"}  # BYTE SHORT LONG RATIONAL SRATIONAL
WHITE = 4095


def _ifd(entries: list[tuple[int, int, object]], offset: int) -> bytes:
    """One little-endian IFD written at ``offset``, its long values right after it."""
    entries = sorted(entries, key=lambda e: e[0])
    extra_at = offset + 2 + 12 * len(entries) + 4
    head, extra = [struct.pack("<H", len(entries))], b""
    for tag, typ, value in entries:
        if typ == 2:  # ASCII
            raw, count = str(value).encode() + b"\0", len(str(value)) + 1
        else:
            values = list(value) if isinstance(value, list | tuple) else [value]
            flat = [x for v in values for x in v] if typ in (5, 10) else values
            raw, count = struct.pack("<" + _TYPES[typ] * len(flat), *flat), len(values)
        if len(raw) <= 4:
            head.append(struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0"))
        else:
            extra += b"\0" * (len(extra) % 2)
            head.append(struct.pack("<HHII", tag, typ, count, extra_at + len(extra)))
            extra += raw
    return b"".join(head) + struct.pack("<I", 0) + extra


def mosaic(rgb: Image.Image) -> np.ndarray:
    """The RGGB sensor values (linear light, 12 bits) a camera would record for ``rgb``."""
    a = (np.asarray(rgb.convert("RGB"), dtype=np.float64) / 255.0) ** 2.2 * WHITE
    a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]  # whole 2 x 2 cells
    cfa = np.empty(a.shape[:2], np.uint16)
    cfa[0::2, 0::2] = a[0::2, 0::2, 0]
    cfa[0::2, 1::2] = a[0::2, 1::2, 1]
    cfa[1::2, 0::2] = a[1::2, 0::2, 1]
    cfa[1::2, 1::2] = a[1::2, 1::2, 2]
    return cfa


def write_dng(path: Path, sensor: Image.Image, preview: Image.Image | None, *,
              orientation: int = 1, make: str = "Imgrec", model: str = "Test Camera") -> Path:
    """Write a DNG of ``sensor`` (as stored, before ``orientation``) with a JPEG ``preview``."""
    cfa = mosaic(sensor)
    h, w = cfa.shape
    raw = cfa.astype("<u2").tobytes()
    jpeg = b""
    if preview is not None:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=92)
        jpeg = buf.getvalue() + b"\0" * (len(buf.getvalue()) % 2)
    off_raw = 8 + len(jpeg)
    off_ifd0 = off_raw + len(raw)
    tags0 = [(254, 4, 1), (271, 2, make), (272, 2, model), (274, 3, orientation),
             (50706, 1, (1, 4, 0, 0)), (50707, 1, (1, 1, 0, 0)), (50708, 2, f"{make} {model}")]
    if preview is not None:
        pw, ph = preview.size
        tags0 += [(256, 4, pw), (257, 4, ph), (258, 3, (8, 8, 8)), (259, 3, 7), (262, 3, 6),
                  (273, 4, 8), (277, 3, 3), (278, 4, ph), (279, 4, len(jpeg)), (284, 3, 1)]
    sub_at = off_ifd0 + len(_ifd([*tags0, (330, 4, 0)], off_ifd0))
    ifd0 = _ifd([*tags0, (330, 4, sub_at)], off_ifd0)
    matrix = [(round(v * 10000), 10000) for v in _XYZ_TO_SRGB]
    sub = _ifd([(254, 4, 0), (256, 4, w), (257, 4, h), (258, 3, 16), (259, 3, 1),
                (262, 3, 32803), (273, 4, off_raw), (277, 3, 1), (278, 4, h),
                (279, 4, len(raw)), (284, 3, 1), (33421, 3, (2, 2)), (33422, 1, (0, 1, 1, 2)),
                (50714, 3, 0), (50717, 3, WHITE), (50721, 10, matrix),
                (50728, 5, [(1, 1)] * 3), (50778, 3, 21)], sub_at)
    path.write_bytes(b"II*\0" + struct.pack("<I", off_ifd0) + jpeg + raw + ifd0 + sub)
    return path
