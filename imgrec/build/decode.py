"""Per-file work of a build, run in worker processes: read, hash, decode once, features."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from imgrec import images
from imgrec.errors import ImageError
from imgrec.features.color import histogram
from imgrec.features.recipe import frame
from imgrec.folders import read_regular

#: Bumped whenever decoding or feature definitions change (invalidates resumable work).
PIPELINE_VERSION = 2  # 2: JPEG drafts to >= 448 px (was 512); the recipe is versioned apart
TASK_FILES = 8  # files per worker task


class Task(NamedTuple):
    """One gallery file to read: its path, gallery-relative name, size, mtime, the side of
    the network input, the pixel limit (``--max-megapixels``) and the recipe's framing
    (:data:`imgrec.features.recipe.FRAMINGS`)."""

    path: str
    rel: str
    size: int
    mtime_ns: int
    crop_size: int
    max_megapixels: float = images.MAX_MEGAPIXELS
    framing: str = "crop"


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
    decoder: str = ""  # pillow | heif | raw-preview | raw-demosaic (see images.ImageInfo)
    crop: np.ndarray | None = None  # (h, w, 3) uint8 network input, framed by the recipe
    hist: np.ndarray | None = None  # (768,) float32
    error: str | None = None
    known: bool = False  # content already has features: nothing was decoded


def process(path: str, rel: str, size: int, mtime_ns: int, crop_size: int,
            max_megapixels: float = images.MAX_MEGAPIXELS, framing: str = "crop",
            known: frozenset[str] | set[str] = frozenset()) -> FileResult:
    """Read one gallery file; decode it once into both features unless its hash is known.

    Only a regular file is read (a FIFO or device named like an image is recorded as
    skipped, never opened for a blocking read); its name picks the decoder (camera RAW).
    Images over ``max_megapixels`` are skipped with a reason naming ``--max-megapixels``.
    ``framing`` cuts the network input (the centre crop, the whole image letterboxed, or
    the whole image at its own aspect ratio: :func:`imgrec.features.recipe.frame`).
    """
    res = FileResult(rel, size, mtime_ns)
    try:
        data = read_regular(path)
    except ImageError as exc:
        msg = str(exc)
        res.error = msg if msg.startswith("unreadable") else f"unreadable: {msg}"
        return res
    res.sha256 = hashlib.sha256(data).hexdigest()
    if res.sha256 in known:
        res.known = True
        return res
    try:
        rgb, info = images.load_image(data, name=path, max_megapixels=max_megapixels)
        work = images.prepare(rgb)
        res.hist = histogram(work)
        res.crop = frame(work, crop_size, framing)
    except ImageError as exc:
        res.error = str(exc)
        return res
    except MemoryError:
        res.error = "too large: out of memory while decoding"
        return res
    res.format, res.mode, res.width, res.height, res.exif, res.decoder = (
        info.format, info.mode, info.width, info.height, info.exif, info.decoder)
    return res


_KNOWN: frozenset[str] = frozenset()  # set once per worker process by init_worker


def init_worker(known: frozenset[str]) -> None:
    """Worker initialiser: the content hashes whose features are already known."""
    global _KNOWN
    _KNOWN = known


def process_safe(task: Task, known: frozenset[str]) -> FileResult:
    """:func:`process`, with any unexpected decoder failure recorded as the file's error."""
    try:
        return process(*task, known=known)
    except Exception as exc:  # a bad file must never stop a build
        res = FileResult(task.rel, task.size, task.mtime_ns)
        res.error = f"unreadable: {type(exc).__name__}: {exc}"
        return res


def _process_tasks(tasks: list[Task]) -> list[FileResult]:
    """Worker entry point: several files per task to amortise inter-process traffic."""
    return [process_safe(t, _KNOWN) for t in tasks]


def decode_all(todo: list[Task], workers: int, known: frozenset[str],
               inflight: int | None = None) -> Iterator[FileResult]:
    """Process ``todo`` in ``workers`` processes with bounded look-ahead, results in order.

    With ``workers`` 0 (or only a few files) everything runs in this process.
    """
    if workers <= 0 or len(todo) < 2 * TASK_FILES:
        for t in todo:
            yield process_safe(t, known)
        return
    inflight = inflight or max(4, 2 * workers + 2)
    tasks = iter([todo[i:i + TASK_FILES] for i in range(0, len(todo), TASK_FILES)])
    ctx = mp.get_context("spawn")  # safe beside torch threads and Streamlit's threads
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                             initargs=(known,)) as pool:
        pending: deque[Future[list[FileResult]]] = deque(
            pool.submit(_process_tasks, t) for _, t in zip(range(inflight), tasks, strict=False))
        while pending:
            done = pending.popleft().result()
            nxt = next(tasks, None)
            if nxt is not None:
                pending.append(pool.submit(_process_tasks, nxt))
            yield from done
