"""Keep an index in sync with its gallery while running: filesystem events (watchdog),
debounced, batched into incremental syncs under the build lock."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgrec.build.builder import build_index
from imgrec.build.report import BuildReport
from imgrec.errors import ImgrecError

#: seconds without a filesystem event before the pending changes are synced
DEBOUNCE_S = 2.0


class _Events:
    """Receives watchdog events: remembers when the last relevant one came."""

    def __init__(self, root: Path, index_dir: Path) -> None:
        self.root, self.index_dir = root, index_dir
        self.last = 0.0  # monotonic time of the last event; 0 = none pending
        self.lock = threading.Lock()

    def dispatch(self, event: Any) -> None:  # the watchdog handler interface
        for p in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
            if p and not _inside(Path(os.fsdecode(p)), self.index_dir):
                with self.lock:
                    self.last = time.monotonic()
                return

    def take(self, debounce: float) -> bool:
        """True (and clears the flag) when events are pending and quiet for ``debounce`` s."""
        with self.lock:
            if self.last and time.monotonic() - self.last >= debounce:
                self.last = 0.0
                return True
            return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def watch(gallery: str | os.PathLike, index_dir: str | os.PathLike, *,
          debounce: float = DEBOUNCE_S, on_sync: Callable[[BuildReport], None] | None = None,
          on_ready: Callable[[], None] | None = None, stop: threading.Event | None = None,
          on_error: Callable[[str], None] | None = None, **build_options: Any) -> None:
    """Sync ``index_dir`` with ``gallery`` now, then again after each burst of changes.

    A burst ends when no file event came for ``debounce`` seconds; its changes are synced
    in one incremental build (``build_index(..., wait=True)``: under the build lock, after
    any other build of the index). Runs until ``stop`` is set or KeyboardInterrupt (Ctrl-C):
    a sync interrupted that way publishes nothing, so the index stays at its last version.

    Args:
        gallery: the folder watched (recursively).
        index_dir: the index kept in sync.
        debounce: quiet seconds before a sync.
        on_sync: called with each sync's :class:`BuildReport`.
        on_ready: called once the first sync is done and events are being watched.
        stop: set it (from another thread) to end the loop.
        on_error: called with the message of a sync that failed (an emptied gallery, a
            locked index, ...); watching goes on. Without it the error is raised.
        **build_options: passed to :func:`build_index` (embedder, exclude, workers, ...).

    Raises:
        ImgrecError: the gallery is missing, watchdog is not installed, or a sync fails
            for a reason that is not about the gallery's files (e.g. a bad exclude rule).

    Example:
        >>> watch("photos", "photos-index", debounce=2.0)  # doctest: +SKIP
    """
    root = Path(gallery).expanduser().resolve()
    target = Path(index_dir).expanduser().resolve()
    if not root.is_dir():
        raise ImgrecError(f"gallery folder not found: {gallery}")
    if not (isinstance(debounce, int | float) and 0 <= debounce < 3600):
        raise ImgrecError(f"debounce must be between 0 and 3600 seconds, not {debounce!r}")
    try:
        from watchdog.observers import Observer
    except ImportError:
        raise ImgrecError("imgrec watch needs the watchdog package (pip install watchdog)") from None
    stop = stop or threading.Event()
    events = _Events(root, target)
    observer = Observer()
    observer.schedule(events, str(root), recursive=True)  # type: ignore[arg-type]
    observer.start()
    try:
        _sync(root, target, on_sync, on_error, build_options)
        if on_ready:
            on_ready()
        while not stop.wait(0.2):
            if events.take(debounce):
                _sync(root, target, on_sync, on_error, build_options)
    finally:
        observer.stop()
        observer.join(timeout=5)


def _sync(root: Path, target: Path, on_sync: Callable[[BuildReport], None] | None,
          on_error: Callable[[str], None] | None, options: dict[str, Any]) -> None:
    try:
        report = build_index(root, target, wait=True, **options)
    except ImgrecError as exc:
        if on_error is None:
            raise
        on_error(str(exc))
        return
    if on_sync:
        on_sync(report)
