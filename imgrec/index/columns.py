"""The catalog columns a user filters on, derived from what a build records of each file.

``taken`` is the EXIF ``DateTimeOriginal`` (the camera's local time) when the file has
one, else its modification time in this machine's local time, as ISO text
``YYYY-MM-DDTHH:MM:SS`` (``taken_from`` says which: ``exif`` or ``mtime``), so dates
compare as text. ``orientation`` is the upright image's shape: ``landscape``,
``portrait`` or ``square``. Catalogs written before these columns existed get them
from their stored EXIF JSON and file times when read (see :mod:`imgrec.index.catalog`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

#: the user-filterable columns after the original eleven, in catalog order
DERIVED = ("taken", "taken_from", "camera_make", "camera_model", "orientation")
ORIENTATIONS = ("landscape", "portrait", "square")
_EXIF_DATE = re.compile(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
# formats a catalog of the previous release can hold: every one decoded by Pillow
_PILLOW_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO", "AVIF",
                             "JPEG2000"})


def exif_date(value: Any) -> str:
    """An EXIF date (``2019:07:14 18:02:11``) as ISO text, or ``""`` when it is not a date."""
    m = _EXIF_DATE.match(value) if isinstance(value, str) else None
    if m is None:
        return ""
    try:
        return datetime(*map(int, m.groups())).isoformat(timespec="seconds")
    except ValueError:  # 0000:00:00 00:00:00, month 13, ...
        return ""


def mtime_date(mtime_ns: int) -> str:
    """A file time (ns since the epoch) as local ISO text, or ``""`` when unknown."""
    if not isinstance(mtime_ns, int) or mtime_ns < 0:
        return ""
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return ""


def orientation(width: int, height: int) -> str:
    """``landscape``, ``portrait`` or ``square`` (``""`` for an unknown size)."""
    if not width or not height:
        return ""
    return "landscape" if width > height else "portrait" if height > width else "square"


def derive(exif: str | None, mtime_ns: int, width: int, height: int) -> dict[str, str]:
    """The :data:`DERIVED` columns of one file from its EXIF JSON, mtime and size."""
    try:
        tags = json.loads(exif or "{}")
    except ValueError:
        tags = {}
    tags = tags if isinstance(tags, dict) else {}
    taken = exif_date(tags.get("DateTimeOriginal"))
    source = "exif" if taken else ""
    if not taken:
        taken = mtime_date(mtime_ns)
        source = "mtime" if taken else ""
    return {"taken": taken, "taken_from": source,
            "camera_make": _text(tags.get("Make")), "camera_model": _text(tags.get("Model")),
            "orientation": orientation(width or 0, height or 0)}


def legacy_decoder(fmt: str | None) -> str:
    """The decoder of a file catalogued before decoders were recorded, from its format."""
    if fmt == "HEIF":
        return "heif"
    return "pillow" if fmt in _PILLOW_FORMATS else ""


def _text(value: Any) -> str:
    return " ".join(value.replace("\x00", " ").split())[:200] if isinstance(value, str) else ""
