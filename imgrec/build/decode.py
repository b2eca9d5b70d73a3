"""Per-file work of a build, run in worker processes: read, hash, decode once, features."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgrec import images
from imgrec.errors import ImageError
from imgrec.features.color import histogram

#: Bumped whenever decoding or feature definitions change (invalidates resumable work).
PIPELINE_VERSION = 2  # 2: JPEG drafts to >= 448 px (was 512)


@dataclass
class FileResult:
    """What a worker returns for one file."""

    rel: str
    size: int
    mtime_ns: int
    sha256: str = ""
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    exif: str = "{}"
    crop: np.ndarray | None = None  # (s, s, 3) uint8, for the CNN
    hist: np.ndarray | None = None  # (768,) float32
    error: str | None = None
    known: bool = False  # content already has features: nothing was decoded


def process(path: str, rel: str, size: int, mtime_ns: int, crop_size: int,
            known: frozenset[str] | set[str] = frozenset()) -> FileResult:
    """Read one gallery file; decode it once into both features unless its hash is known."""
    res = FileResult(rel, size, mtime_ns)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        res.error = f"unreadable: {exc.strerror or exc}"
        return res
    res.sha256 = hashlib.sha256(data).hexdigest()
    if res.sha256 in known:
        res.known = True
        return res
    try:
        rgb, info = images.load_image(data)
        work = images.prepare(rgb)
        res.hist = histogram(work)
        res.crop = images.center_crop(work, crop_size)
    except ImageError as exc:
        res.error = str(exc)
        return res
    except MemoryError:
        res.error = "too large: out of memory while decoding"
        return res
    res.format, res.mode, res.width, res.height, res.exif = (
        info.format, info.mode, info.width, info.height, info.exif)
    return res


_KNOWN: frozenset[str] = frozenset()  # set once per worker process by init_worker


def init_worker(known: frozenset[str]) -> None:
    global _KNOWN
    _KNOWN = known


def process_many(tasks: list[tuple[str, str, int, int, int]]) -> list[FileResult]:
    """Worker entry point: several files per task to amortise inter-process traffic."""
    return [process(*t, known=_KNOWN) for t in tasks]
