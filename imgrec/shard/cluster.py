"""Joining or starting the Ray cluster a distributed build or a sharded index runs on."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from imgrec.errors import ImgrecError

#: Set before Ray is imported: every node of a Ray started here binds 127.0.0.1.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray() -> Any:
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ImgrecError("Ray is not installed: install the extra with "
                          "`pip install 'imgrec[ray]'`") from None
    return ray


@contextlib.contextmanager
def session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """A connected Ray driver for the ``with`` block.

    Joins the session already open in this process, or connects to ``address`` (``auto``
    for a running cluster, ``ray://host:10001``), or, with no address, starts a local Ray
    with this machine's cores (bound to 127.0.0.1) for the block and stops it afterwards.

    Raises:
        ImgrecError: Ray is missing, or the cluster cannot be reached.
    """
    if not address:  # read by Ray when it is imported
        os.environ.setdefault(LOOPBACK_ENV, "0")
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    _init(ray, address, num_cpus)
    try:
        quiet_data()
        yield
    finally:
        ray.shutdown()


#: set while a Ray driver that :func:`start` opened (not one its caller opened) is up; Ray's
#: driver is one per process, and so is this
_STARTED = threading.Event()


def start(address: str | None = None) -> None:
    """Join the Ray session open in this process, or connect to ``address``, or start a
    local Ray (bound to 127.0.0.1) that lives as long as this process.

    Raises:
        ImgrecError: Ray is missing, or the cluster cannot be reached.
    """
    if not address:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    ray = import_ray()
    if not ray.is_initialized():
        _init(ray, address, None)
        _STARTED.set()


def stop_started() -> None:
    """Shut down the Ray driver :func:`start` opened in this process, if it did (a session
    the caller opened stays up). The CLI calls it before it stops routing Ray's prints
    (:func:`ray_prints_to_stderr`): left to the interpreter's exit, Ray's threads print
    what they still hold after the command's output, onto stdout."""
    if not _STARTED.is_set():
        return
    _STARTED.clear()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _init(ray: Any, address: str | None, num_cpus: int | None) -> None:
    try:
        ray.init(address=address or None, num_cpus=None if address else num_cpus,
                 include_dashboard=False if not address else None, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImgrecError(f"cannot reach the Ray cluster at {address or 'local'}: {first}"
                          ) from None


def quiet_data() -> None:
    """Ray Data without progress bars or per-run banners (the build draws its own bar)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


#: what the raylet says when a node runs more worker processes than it has cores: a hint
#: for code that starts tasks by mistake; a sharded index runs one actor per shard on purpose
STARTUP_HINT = "worker processes have been started on node"


class _ByThread:
    """A text stream that hands what Ray's own threads write to ``err``, a line at a time
    and without the raylet's :data:`STARTUP_HINT`, and everything else to ``out`` (any other
    attribute is ``out``'s)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out, self._err = out, err
        self._pending = threading.local()  # a Ray thread's line so far (print writes twice)

    def write(self, text: str) -> int:
        if not threading.current_thread().name.startswith("ray_"):
            return self._out.write(text)
        line = getattr(self._pending, "text", "") + text
        *whole, self._pending.text = line.split("\n")
        for one in whole:
            if STARTUP_HINT not in one:
                self._err.write(one + "\n")
        return len(text)

    def flush(self) -> None:
        self._out.flush()
        self._err.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


@contextlib.contextmanager
def ray_prints_to_stderr() -> Iterator[None]:
    """While the block runs, what Ray's background threads print goes to stderr.

    A Ray driver prints the raylet's messages to stdout from its own threads, which would
    break a command's ``--json`` output; the CLI runs every command inside this block, so
    stdout holds only the command's results. The raylet's hint that a node "started N
    worker processes" (normal for a sharded index: one actor per shard) is left out.
    """
    out = sys.stdout
    router = _ByThread(out, sys.stderr)
    sys.stdout = router  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.stdout is router:
            sys.stdout = out
