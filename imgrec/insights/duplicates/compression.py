"""How hard a file was compressed: the JPEG quality its quantization tables were made with.

A copy saved again at a lower JPEG quality (a web export, a messenger's re-encode) loses
detail for good, while its blocking adds high frequencies that a spectral detail measure
can mistake for detail; the quality its luminance table was scaled to says it directly.
Read from the file's header alone (no decoding).
"""

from __future__ import annotations

from pathlib import Path

#: the JPEG standard's luminance table (Annex K), which libjpeg and most encoders scale
BASE_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
             14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
             18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)

#: quality points by which another version must be finer before a keeper gives way to it
CLEARLY_FINER = 15


def quality_from_table(table: list[int] | tuple[int, ...]) -> float:
    """The libjpeg quality (1-100) whose scaling of :data:`BASE_LUMA` gives ``table``
    (64 luminance quantizers in natural order; the quantizers that scaling clipped to 1
    or 255 are left out, unless all were)."""
    pairs = [(int(v), b) for v, b in zip(table, BASE_LUMA, strict=True) if 1 < int(v) < 255]
    if not pairs:  # every quantizer clipped: quality 100 (all 1) or the coarsest (all 255)
        return 100.0 if max(int(v) for v in table) <= 1 else 1.0
    scale = 100.0 * sum(v for v, _ in pairs) / sum(b for _, b in pairs)
    q = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return round(min(100.0, max(1.0, q)), 1)


def jpeg_quality(source: str | Path | bytes) -> float | None:
    """The estimated JPEG quality of a file (a path or its bytes), or None when it is not
    a JPEG or its tables cannot be read."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.format != "JPEG":
                return None
            tables = getattr(im, "quantization", None) or {}
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    luma = tables.get(0)
    return quality_from_table(luma) if luma is not None and len(luma) == 64 else None


def clearly_finer(a: float | None, b: float | None) -> bool:
    """Whether a file of quality ``a`` was compressed clearly less than one of ``b``
    (both JPEGs, :data:`CLEARLY_FINER` points or more apart)."""
    return a is not None and b is not None and a >= b + CLEARLY_FINER
