"""A writable home for numba's compiled-kernel cache, chosen before any kernel is defined.

imgrec's numba kernels use ``cache=True``. numba keeps that cache beside the source (the
package's ``__pycache__``) or in the user's cache folder, and refuses to define the kernels,
so that ``import imgrec`` fails, where neither is writable: a system-wide install run by a
service user, a read-only container. :func:`configure` (run by ``imgrec/__init__.py``) then
points ``NUMBA_CACHE_DIR`` at the first writable of ``~/.cache/imgrec/numba`` (or
``$XDG_CACHE_HOME``), a private folder in the temporary directory, or one in ``/dev/shm``.
A ``NUMBA_CACHE_DIR`` set by the user is always kept. Where nothing at all is writable,
:data:`CACHE` is False, for decorators that read it (``@njit(cache=CACHE)``).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

#: The package folders whose modules define cached numba kernels.
KERNEL_FOLDERS = ("search", "insights")


def configure(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Make sure numba can write its cache; True when caching is possible.

    Sets ``environ["NUMBA_CACHE_DIR"]`` only where it is unset and the package folders
    cannot hold the cache themselves.
    """
    if environ.get("NUMBA_CACHE_DIR") or package_writable():
        return True
    for folder in candidates(environ):
        if usable(folder):
            environ["NUMBA_CACHE_DIR"] = str(folder)
            if environ is os.environ and "numba" in sys.modules:  # numba read it already
                from numba.core import config

                config.reload_config()
            return True
    return False


def package_writable(package: Path = Path(__file__).parent) -> bool:
    """True when numba can keep the cache in every kernel folder's ``__pycache__``."""
    for name in KERNEL_FOLDERS:
        cache = package / name / "__pycache__"
        target = cache if cache.is_dir() else package / name
        if not os.access(target, os.W_OK | os.X_OK):
            return False
    return True


def candidates(environ: MutableMapping[str, str] = os.environ) -> Iterator[Path]:
    """Folders to try, best first: the user's cache folder, then private temporary ones."""
    base = environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError, OSError):  # no home directory at all
            base = None
    if base and os.path.isabs(base):
        yield Path(base) / "imgrec" / "numba"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    try:
        tmp: str | None = tempfile.gettempdir()
    except OSError:  # no usable temporary directory
        tmp = None
    if tmp:
        yield Path(tmp) / f"imgrec-numba-{uid}"
    if os.path.isdir("/dev/shm"):
        yield Path("/dev/shm") / f"imgrec-numba-{uid}"


def usable(folder: Path) -> bool:
    """Create ``folder`` if needed and check it is ours and writable (numba's own test).

    A folder in a shared temporary directory must belong to this user and be writable by
    no one else: numba loads what it finds there.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode):
            return False
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return False
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


#: Whether numba can cache compiled kernels in this process (see :func:`configure`).
CACHE = configure()
