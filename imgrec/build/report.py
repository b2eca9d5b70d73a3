"""What a build reports: progress while it runs, and a summary when it is done."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Progress:
    """A progress report: ``done`` of ``total`` files in ``stage`` (features/write).

    In the features stage a file is done once it is finished: its features are computed
    and handed to the work store, or it is skipped with a reason, or nothing had to be
    computed for it. A file that is decoded and waits for the CNN is not done yet.
    """

    stage: str
    done: int
    total: int
    elapsed: float
    start: int = 0  # files already done (unchanged) when the stage began

    @property
    def rate(self) -> float:
        """Files per second finished in this stage (files done at its start not counted)."""
        return (self.done - self.start) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None before the first file is finished)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass
class BuildReport:
    """What a build did."""

    gallery: Path
    index_dir: Path
    version: str = ""
    model: str = ""
    indexed: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    computed: int = 0  # images that went through decode + CNN in this run
    resumed: int = 0  # images whose features came from an interrupted build
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [f"indexed {self.indexed} images from {self.gallery} into {self.index_dir} "
                 f"({self.model}) in {self.seconds:.1f} s"
                 + (f", {self.rate:.1f} images/s" if self.computed else ""),
                 f"added {self.added}, updated {self.updated}, moved {self.moved}, "
                 f"removed {self.removed}, unchanged {self.unchanged}, "
                 f"skipped {len(self.skipped)}"
                 + (f", resumed {self.resumed} from an interrupted build" if self.resumed else "")]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more (see `imgrec info`)")
        return "\n".join(lines + self.notes)


class Tracker:
    """Counts finished files and reports :class:`Progress` (every 8 files, and the last)."""

    def __init__(self, progress: Callable[[Progress], None] | None, total: int, start: int
                 ) -> None:
        self.progress, self.total, self.start = progress, total, start
        self.done = start
        self.t0 = time.perf_counter()
        self._last = -1

    def finish(self, n: int, final: bool = False) -> None:
        """``n`` more files are finished; report when a multiple of 8 is passed (or ``final``)."""
        self.done += n
        if final or self.done // 8 != self._last // 8 or self.done == self.total:
            self.tick()

    def tick(self) -> None:
        """Report the current count."""
        self._last = self.done
        if self.progress:
            self.progress(Progress("features", self.done, self.total,
                                   time.perf_counter() - self.t0, self.start))
