"""One build at a time per index: an advisory file lock naming its holder.

The operating system releases the lock when the holding process dies, so a lock left by
a killed build is never mistaken for a running one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from imgrec.errors import BuildLockedError

LOCK_NAME = "build.lock"


class BuildLock:
    """Hold ``index_dir/build.lock`` for the duration of a ``with`` block.

    Args:
        index_dir: the index directory.
        wait: block until the running build ends instead of raising.

    Raises:
        BuildLockedError: another build holds the lock (message names pid and start time).
    """

    def __init__(self, index_dir: str | Path, wait: bool = False) -> None:
        self.path = Path(index_dir) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            raise BuildLockedError(describe(info)) from None
        except BaseException:
            os.close(fd)
            raise
        # The lock is ours: whatever the file says is left by a build that died (the OS
        # released its lock), so it is simply overwritten.
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started_ts": time.time()}
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds the lock file at ``path`` (None when no build is running)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_info(fd: int) -> dict[str, Any]:
    """The holder's pid/start record. It writes it just after locking, over what a dead
    build left, so allow it a moment and ignore a record naming a dead local process."""
    for _ in range(50):
        raw = os.pread(fd, 4096, 0)
        try:
            info = json.loads(raw) if raw else None
        except ValueError:
            info = None
        if isinstance(info, dict) and info and _alive(info):
            return info
        time.sleep(0.01)
    return {"pid": "?"}


def _alive(info: dict[str, Any]) -> bool:
    if info.get("host") not in (None, socket.gethostname()):
        return True  # another machine's process: cannot tell
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except (ValueError, TypeError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(info["pid"]) > 0


def describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "a build of this index is already running"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return (f"a build of this index is already running (pid {info.get('pid', '?')}{where}, "
            f"started {info.get('started', '?')}); wait for it to finish or use --wait")
