"""The decoder on damaged files: always an RGB image or an ImageError, never another exception.

Hypothesis feeds :func:`imgrec.images.load_image` random bytes, and truncations, bit flips
and random tails of real JPEG, PNG, WebP, GIF, TIFF, HEIC, AVIF, JPEG 2000 and DNG files
made here from a photo. Whatever decodes must go on through the features path
(:func:`prepare`, the colour histogram) and stay within the pixel limit; the profile's
deadline bounds the time of each example. ``HYPOTHESIS_PROFILE=fuzz`` runs many more.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from dng import write_dng
from hypothesis import given
from hypothesis import strategies as st

from imgrec.errors import ImageError
from imgrec.features.color import histogram
from imgrec.images import MAX_PIXELS, load_image, prepare

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "HEIF", "AVIF", "JPEG2000", "DNG")
NAMES = {"JPEG": "f.jpg", "PNG": "f.png", "WEBP": "f.webp", "GIF": "f.gif", "TIFF": "f.tif",
         "HEIF": "f.heic", "AVIF": "f.avif", "JPEG2000": "f.jp2", "DNG": "f.dng"}


class Seeds(dict):
    """Format -> bytes of a real file (shown briefly in Hypothesis' failure reports)."""

    def __repr__(self) -> str:
        return f"<seed files: {', '.join(self)}>"


@pytest.fixture(scope="module")
def seeds(photos, tmp_path_factory) -> Seeds:
    """One small real file per format, all of the same photo."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    img = photos["chelsea"].resize((96, 64))
    out = Seeds()
    for fmt in FORMATS:
        if fmt == "DNG":
            path = write_dng(tmp_path_factory.mktemp("dng") / "f.dng", img, img)
            out[fmt] = path.read_bytes()
            continue
        buf = io.BytesIO()
        img.save(buf, fmt, **({"quality": 80} if fmt in ("JPEG", "WEBP", "HEIF", "AVIF") else {}))
        out[fmt] = buf.getvalue()
    for fmt, data in out.items():  # every seed decodes intact
        assert _decode(data, NAMES[fmt]) is not None, fmt
    return out


def _decode(data: bytes, name: str | None = None):
    """The decode-and-features path; None for a clean refusal."""
    try:
        rgb, info = load_image(data, name=name)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)  # a one-line reason
        return None
    assert rgb.mode == "RGB" and min(rgb.size) >= 1
    assert info.width * info.height <= MAX_PIXELS
    hist = histogram(prepare(rgb))
    assert hist.shape == (768,) and np.isfinite(hist).all()
    return info


fmt = st.sampled_from(FORMATS)
named = st.booleans()  # with the file's name, or as anonymous bytes (an upload)


@given(data=st.binary(max_size=4096))
def test_random_bytes(data):
    _decode(data)


@given(fmt=fmt, keep=st.floats(0.0, 1.0), use_name=named)
def test_truncations(seeds, fmt, keep, use_name):
    data = seeds[fmt]
    _decode(data[: int(len(data) * keep)], NAMES[fmt] if use_name else None)


@given(fmt=fmt, flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 7)),
                               min_size=1, max_size=24), use_name=named)
def test_bit_flips(seeds, fmt, flips, use_name):
    data = bytearray(seeds[fmt])
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    _decode(bytes(data), NAMES[fmt] if use_name else None)


@given(fmt=fmt, head=st.integers(0, 256), tail=st.binary(max_size=2048), use_name=named)
def test_real_header_random_body(seeds, fmt, head, tail, use_name):
    _decode(seeds[fmt][:head] + tail, NAMES[fmt] if use_name else None)


@given(fmt=fmt, pos=st.integers(0, 2**31), value=st.integers(0, 2**32 - 1), use_name=named)
def test_header_fields_overwritten(seeds, fmt, pos, value, use_name):
    data = bytearray(seeds[fmt])
    at = pos % min(len(data), 512)  # sizes, offsets and counts live near the start
    data[at:at + 4] = value.to_bytes(4, "big")
    _decode(bytes(data[: len(seeds[fmt])]), NAMES[fmt] if use_name else None)
