"""Background index builds: one runner per process, one build per index, honest progress."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgrec.app.formatting import format_duration
from imgrec.build import lock
from imgrec.build.builder import Progress, build_index
from imgrec.errors import BuildLockedError, ImgrecError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobState:
    """A snapshot of a background build, safe to read from any session."""

    id: int
    index_dir: str
    gallery: str
    kind: str  # "rebuild", "folder" or "demo"
    status: str  # "running", "done" or "failed"
    stage: str = "starting"
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    started: float = 0.0
    finished: float | None = None
    message: str = ""
    count: int | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        if self.stage == "write":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    def progress_text(self) -> str:
        """One line for a progress bar: stage, count, rate and ETA."""
        if self.stage == "starting":
            return "Starting the build…"
        if self.stage == "write":
            return f"Writing the index ({self.total:,} images): PCA, catalog, publish…"
        what = "Writing demo images" if self.stage == "demo" else "Indexing images"
        text = f"{what}: {self.done:,} / {self.total:,}"
        if self.rate > 0:
            text += f" · {self.rate:.1f} images/s"
        if self.eta is not None and self.done < self.total:
            text += f" · about {format_duration(self.eta)} left"
        return text


def _dir_key(index_dir: str | os.PathLike) -> str:
    return str(Path(index_dir).expanduser().resolve())


def running_build(index_dir: str | os.PathLike) -> str | None:
    """A message when another process holds the build lock of ``index_dir``, else None."""
    info = lock.holder(Path(index_dir).expanduser())
    if not info:
        return None
    return (f"a build is running for this index (pid {info.get('pid', '?')}, started "
            f"{info.get('started', '?')}); wait for it to finish")


class _Job:
    """Mutable state of one build, updated by its thread under a lock."""

    def __init__(self, state: JobState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._stage_start: tuple[str, int, float] | None = None
        self.thread: threading.Thread | None = None

    def snapshot(self) -> JobState:
        with self._lock:
            return self._state

    def update(self, stage: str, done: int, total: int, rate: float | None = None,
               eta: float | None = None) -> None:
        """Record progress; without ``rate`` it is measured here since the stage began."""
        now = time.monotonic()
        with self._lock:
            if self._stage_start is None or self._stage_start[0] != stage:
                self._stage_start = (stage, done, now)
            if rate is None:
                _, done0, t0 = self._stage_start
                dt = now - t0
                rate = (done - done0) / dt if dt > 0.2 and done > done0 else 0.0
                eta = (total - done) / rate if rate > 0 else None
            self._state = replace(self._state, stage=stage, done=done, total=total, rate=rate,
                                  eta=eta)

    def on_progress(self, p: Progress) -> None:
        """The build's own count of finished images (features written), rate and ETA."""
        self.update(p.stage, p.done, p.total, p.rate, p.eta)

    def finish(self, status: str, message: str, count: int | None = None) -> None:
        with self._lock:
            self._state = replace(self._state, status=status, message=message, count=count,
                                  finished=time.time(), eta=None)


class BuildRunner:
    """Runs index builds in background threads: at most one per index directory.

    One runner is shared by every session of the dashboard (it is the only process-wide
    mutable state), so a second browser tab sees the running build and cannot start
    another. Builds by other processes (the CLI) are detected through the index's lock file.

    Args:
        build: the build function (default :func:`imgrec.build_index`).
        demo: the demo-gallery builder (default :func:`imgrec.demo.build_demo_gallery`).

    Example:
        >>> runner = BuildRunner()
        >>> runner.start("photos", "photos-index").status
        'running'
        >>> final = runner.wait("photos-index")
        >>> final.status, final.count
        ('done', 38)
    """

    def __init__(self, build: Callable[..., Any] | None = None,
                 demo: Callable[..., Any] | None = None) -> None:
        self._build = build or build_index
        self._demo = demo
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)

    def job(self, index_dir: str | os.PathLike) -> JobState | None:
        """The latest build of ``index_dir`` started here (running or finished), if any."""
        with self._lock:
            j = self._jobs.get(_dir_key(index_dir))
        return j.snapshot() if j else None

    def busy(self, index_dir: str | os.PathLike) -> str | None:
        """Why a build of ``index_dir`` cannot start now, or None."""
        j = self.job(index_dir)
        if j is not None and j.running:
            return "a build is running for this index; wait for it to finish"
        return running_build(index_dir)

    def start(self, gallery: str | os.PathLike | None, index_dir: str | os.PathLike, *,
              kind: str = "rebuild", embedder: Any = None, workers: int | None = None,
              demo_dir: str | os.PathLike | None = None,
              on_success: Callable[[JobState], None] | None = None) -> JobState:
        """Start a build in a background thread and return its first snapshot.

        Args:
            gallery: the folder to index (ignored when ``demo_dir`` is given).
            index_dir: the index directory to (re)build.
            kind: a label for the UI ("rebuild", "folder", "demo").
            embedder: the shared CNN passed to :func:`imgrec.build_index`.
            workers: decoding processes (None: one per CPU).
            demo_dir: build the demo gallery there first, then index it.
            on_success: called (in the build thread) with the final state after a build.

        Raises:
            BuildLockedError: a build of this index is running (here or in another process).
        """
        key = _dir_key(index_dir)
        with self._lock:
            cur = self._jobs.get(key)
            if cur is not None and cur.snapshot().running:
                raise BuildLockedError("a build is running for this index; wait for it to finish")
            other = running_build(index_dir)
            if other:
                raise BuildLockedError(other)
            src = str(demo_dir if demo_dir is not None else gallery)
            job = _Job(JobState(next(self._ids), key, src, kind, "running", started=time.time()))
            self._jobs[key] = job
        job.thread = threading.Thread(
            target=self._run, args=(job, gallery, index_dir, embedder, workers, demo_dir,
                                    on_success), name=f"imgrec-build-{job.snapshot().id}",
            daemon=True)
        job.thread.start()
        return job.snapshot()

    def wait(self, index_dir: str | os.PathLike, timeout: float | None = None) -> JobState | None:
        """Block until the build of ``index_dir`` ends (for tests and scripts)."""
        with self._lock:
            j = self._jobs.get(_dir_key(index_dir))
        if j is not None and j.thread is not None:
            j.thread.join(timeout)
        return j.snapshot() if j else None

    def _run(self, job: _Job, gallery: Any, index_dir: Any, embedder: Any, workers: int | None,
             demo_dir: Any, on_success: Callable[[JobState], None] | None) -> None:
        try:
            if demo_dir is not None:
                demo = self._demo
                if demo is None:
                    from imgrec.demo import build_demo_gallery as demo
                job.update("demo", 0, 1)
                gallery = demo(demo_dir, progress=lambda d, t: job.update("demo", d, t)).root
            report = self._build(gallery, index_dir, embedder=embedder, workers=workers,
                                 progress=job.on_progress)
            skipped = len(report.skipped)
            msg = (f"Indexed {report.indexed:,} images from {report.gallery} in "
                   f"{format_duration(report.seconds)} ({report.computed:,} computed, "
                   f"{report.unchanged:,} unchanged"
                   + (f", {skipped:,} skipped" if skipped else "") + ").")
            job.finish("done", msg, report.indexed)
        except BuildLockedError as exc:
            job.finish("failed", str(exc))
        except (ImgrecError, ValueError, OSError, RuntimeError, MemoryError) as exc:
            job.finish("failed", str(exc) or type(exc).__name__)
        except Exception as exc:  # never let a build thread die silently
            _log.exception("build of %s failed", index_dir)
            job.finish("failed", f"{type(exc).__name__}: {exc}")
        state = job.snapshot()
        if state.status == "done" and on_success is not None:
            try:
                on_success(state)
            except Exception:
                _log.exception("after-build hook failed")
