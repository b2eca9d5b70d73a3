"""Walk a gallery folder: its image files, the exclude rules, and the entries that cannot be read.

Only regular files are ever opened: a FIFO, socket or device named like an image is reported,
never read (reading a FIFO would block forever). Exclude rules use gitignore syntax, from
``exclude`` patterns and from a ``.imgrecignore`` file at the gallery root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgrec.errors import ImageError, ImgrecError
from imgrec.formats import SUFFIXES

#: Gitignore-syntax exclude rules read from this file at the gallery root.
IGNORE_FILE = ".imgrecignore"

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


@dataclass(frozen=True)
class ScanEntry:
    """One entry found by :func:`scan_entries`.

    Attributes:
        path: Absolute path (links not resolved).
        rel: POSIX path relative to the gallery root; a folder's ends with ``/``.
        problem: Why the entry cannot be indexed, or None for an image file to read.
    """

    path: Path
    rel: str
    problem: str | None = None

    @property
    def is_folder(self) -> bool:
        """True for a folder that could not be listed."""
        return self.rel.endswith("/")


def scan_entries(root: str | os.PathLike, *, exclude: Iterable[str] = (),
                 ignore_file: str | None = IGNORE_FILE) -> Iterator[ScanEntry]:
    """Every image-named entry under ``root``, each with the reason it cannot be read, if any.

    Hidden entries (names starting with ``.``) and files without an image suffix are passed
    over; so are excluded files and folders, which are not reported either. Symbolic links
    are followed only when their target stays inside ``root`` (others are passed over, as
    are links to folders). Reported problems: a folder that cannot be listed, a symbolic
    link loop, a broken link, and anything that is not a regular file. The order is that of
    a sorted top-down walk: a folder's files, then its sub-folders.

    Args:
        root: The gallery folder.
        exclude: Gitignore-syntax patterns matched against paths relative to ``root``
            (``*.png``, ``raw/``, ``/drafts``, ``!keep.jpg``), applied after the ignore file.
        ignore_file: Name of the rules file at the root (None: do not read one).

    Raises:
        ImgrecError: the rules file cannot be read or a rule is invalid.

    Example:
        >>> os.makedirs("mixed/ok")
        >>> os.symlink("gone.jpg", "mixed/broken.jpg")
        >>> [e.rel for e in scan_entries("mixed") if e.problem]
        ['broken.jpg']
    """
    base = Path(root).resolve()
    rules = exclude_rules(base, exclude, ignore_file)
    stack: list[tuple[Path, str]] = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield ScanEntry(folder, prefix or "./", f"folder unreadable: {_reason(exc)}")
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            rel = prefix + e.name
            if _is_dir(e):
                if rules is None or not rules.match_file(rel + "/"):
                    subdirs.append((Path(e.path), rel + "/"))
                continue
            if os.path.splitext(e.name)[1].lower() not in SUFFIXES:
                continue
            if rules is not None and rules.match_file(rel):
                continue
            entry = _file_entry(e, rel, base)
            if entry is not None:
                yield entry
        stack.extend(reversed(subdirs))


def scan(root: str | os.PathLike, *, exclude: Iterable[str] = (),
         ignore_file: str | None = IGNORE_FILE) -> Iterator[Path]:
    """Yield the image files under ``root`` (see :func:`scan_entries`), sorted.

    Entries named like images that cannot be read (a link loop, a broken link, a FIFO) are
    yielded too, so that reading them records why; folders that cannot be listed are only
    reported by :func:`scan_entries`.

    Example:
        >>> files = list(scan("photos"))
        >>> len(files), files[0].name
        (38, 'astronaut_blur.jpg')
    """
    for entry in scan_entries(root, exclude=exclude, ignore_file=ignore_file):
        if not entry.is_folder:
            yield entry.path


def exclude_rules(root: str | os.PathLike, exclude: Iterable[str] = (),
                  ignore_file: str | None = IGNORE_FILE) -> Any:
    """The compiled exclude rules of a gallery (a ``pathspec.GitIgnoreSpec``), or None.

    Raises:
        ImgrecError: the rules file cannot be read, pathspec is missing, or a rule is invalid.
    """
    lines: list[str] = []
    if ignore_file:
        path = Path(root) / ignore_file
        try:
            lines += read_regular(path).decode("utf-8", "replace").splitlines()
        except ImageError as exc:
            if "no such file" not in str(exc):
                raise ImgrecError(f"{path}: cannot read the exclude rules: {exc}") from None
    for pattern in exclude:
        if not isinstance(pattern, str):
            raise ImgrecError(f"an exclude rule must be text, not {type(pattern).__name__}")
        lines.append(pattern)
    if not any(s.strip() and not s.lstrip().startswith("#") for s in lines):
        return None
    try:
        import pathspec
    except ImportError:
        raise ImgrecError("exclude rules need the pathspec package (pip install pathspec)") from None
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError) as exc:
        raise ImgrecError(f"invalid exclude rule: {exc}") from None


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded and links resolved; a link loop is an ``OSError``.

    Python before 3.13 raises ``RuntimeError`` for a loop; this raises ``OSError(ELOOP)``
    naming the path, which callers report like any other unusable path.
    """
    p = Path(path).expanduser()
    try:
        return p.resolve()
    except RuntimeError:  # a loop (Python < 3.13); later versions raise OSError themselves
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(p)) from None


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (links resolved) lies inside ``root``; False for a link loop."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a loop (Python < 3.13)
        return False
    return True


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file (links followed), without ever blocking on a FIFO.

    The type is checked with ``stat`` before opening, and again on the open descriptor
    (opened non-blocking), so a file swapped for a FIFO in between is refused too.

    Raises:
        ImageError: one-line reason without the path: ``no such file``, ``is a folder, not
            an image``, ``not a regular file (a FIFO)``, ``unreadable: ...``.
    """
    try:
        _check_regular(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ImageError("no such file") from None
        raise ImageError(f"unreadable: {_reason(exc)}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_regular(os.fstat(fd).st_mode)
        try:
            return fh.read()
        except OSError as exc:
            raise ImageError(f"unreadable: {_reason(exc)}") from None


def _check_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ImageError("is a folder, not an image")
    raise ImageError(f"not a regular file ({_kind(mode)})")


def _file_entry(e: os.DirEntry, rel: str, base: Path) -> ScanEntry | None:
    path = Path(e.path)
    try:
        if not e.is_symlink():
            if e.is_file(follow_symlinks=False):
                return ScanEntry(path, rel)
            mode = e.stat(follow_symlinks=False).st_mode
        else:
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return ScanEntry(path, rel, "unreadable: symbolic link loop")
                if not is_within(path, base):
                    return None  # points out of the gallery: never followed
                return ScanEntry(path, rel, f"unreadable: broken symbolic link ({_reason(exc)})")
            if not is_within(path, base):
                return None
    except OSError as exc:
        return ScanEntry(path, rel, f"unreadable: {_reason(exc)}")
    if stat.S_ISDIR(mode):
        return None  # a link to a folder: folders are walked only where they are
    if not stat.S_ISREG(mode):
        return ScanEntry(path, rel, f"not a regular file ({_kind(mode)})")
    return ScanEntry(path, rel)


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)
