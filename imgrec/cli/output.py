"""What the command line prints: safe file names in tables, the progress bar, OS errors."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from imgrec.build.builder import Progress


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\n``, ``\\x1b``),
    so a file name cannot break a table line or send terminal escape sequences."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def os_error(exc: OSError) -> str:
    """One line naming the path(s) and the cause of an operating-system error."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(printable(p) for p in paths)
    return f"{where}: {cause}" if where else cause


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in an OS error raised while writing it that names no file (a full
    disk fails in ``write``, which knows no path)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


class ProgressBar:
    """Progress on stderr: count, percentage, rate and ETA (redrawn in place on a terminal,
    one line every few seconds otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.finished: tuple[str, int] | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.done >= p.total
        if final and self.finished == (p.stage, p.total):
            return  # the last line of a stage is printed once
        if now - self.last < (0.1 if self.tty else 2.0) and not final:
            return
        self.last = now
        self.finished = (p.stage, p.total) if final else None
        frac = p.done / p.total if p.total else 1.0
        eta = f"{p.eta:.0f}s" if p.eta is not None else "?"
        line = (f"{p.stage:8} [{'#' * int(frac * 30):<30}] {p.done}/{p.total} {frac:5.1%} "
                f"{p.rate:6.1f} img/s ETA {eta}")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
