"""The checks of folders typed into the dashboard: where it may look, and a gallery's contents.

Whoever reaches the dashboard's port can type a folder; ``IMGREC_ALLOWED_ROOTS`` (folders
separated by ``os.pathsep``) confines what it may index or open. By default: the user's home,
imgrec's data folder and the index and demo folders the settings name.
"""

from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from imgrec import formats, images
from imgrec.folders import resolve_path
from imgrec.settings import Settings

ROOTS_ENV = "IMGREC_ALLOWED_ROOTS"
HEADER_CHECKS = 500  # files whose header the folder check reads (the build reads them all)


def allowed_roots() -> tuple[Path, ...]:
    """The folders the dashboard may index or switch to (``IMGREC_ALLOWED_ROOTS``, else the
    home folder, the data folder and the configured index and demo folders)."""
    env = os.environ.get(ROOTS_ENV, "").strip()
    if env:
        roots = [Path(p.strip()).expanduser() for p in env.split(os.pathsep) if p.strip()]
    else:
        s = Settings.from_env()
        roots = [Path.home(), s.data_dir, s.index_dir, s.demo_dir]
    return tuple(dict.fromkeys(r.resolve() for r in roots))


def refused(path: str | os.PathLike) -> str | None:
    """Why the dashboard may not use ``path`` (outside every allowed root), or None.

    Example:
        >>> refused(Path.home() / "photos") is None
        True
    """
    try:
        p = resolve_path(path)
    except OSError as exc:  # a symbolic link loop
        return f"{path} cannot be used: {exc.strerror}."
    roots = allowed_roots()
    if any(p == r or images.is_within(p, r) for r in roots):
        return None
    return (f"{p} is outside the folders this dashboard may open "
            f"({', '.join(str(r) for r in roots)}); set {ROOTS_ENV} to allow others.")


@dataclass(frozen=True)
class FolderCheck:
    """The verdict on a folder typed into the folder picker."""

    ok: bool
    message: str
    path: Path | None = None
    images: int = 0


def check_gallery_folder(text: str, index_dir: str | os.PathLike, limit: int = 100_000
                         ) -> FolderCheck:
    """Validate a gallery folder typed by the user (exists, holds images, not the index).

    Example:
        >>> check_gallery_folder("", "data/index").ok
        False
    """
    text = (text or "").strip()
    if not text:
        return FolderCheck(False, "Type the path of a folder of images.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        path = resolve_path(path)
    except OSError as exc:  # a symbolic link loop
        return FolderCheck(False, f"{path} cannot be used: {exc.strerror}.", path)
    if (why := refused(path)) is not None:
        return FolderCheck(False, why, path)
    if not path.exists():
        return FolderCheck(False, f"{path} does not exist.", path)
    if not path.is_dir():
        return FolderCheck(False, f"{path} is a file, not a folder.", path)
    if not os.access(path, os.R_OK | os.X_OK):
        return FolderCheck(False, f"{path} cannot be read (permission denied).", path)
    try:
        index = resolve_path(index_dir)
    except OSError as exc:
        return FolderCheck(False, f"The index folder {index_dir} cannot be used: "
                           f"{exc.strerror}; choose another index folder.", path)
    if index == path or images.is_within(index, path):
        return FolderCheck(False, f"The index folder {index} lies inside {path}; choose another "
                           "gallery or another index folder.", path)
    if images.is_within(path, index):
        return FolderCheck(False, f"{path} is inside the index folder {index}.", path)
    files = list(itertools.islice(images.scan(path), limit))
    if not files:
        return FolderCheck(False, f"No images in {path} (looked for "
                           f"{', '.join(sorted(images.SUFFIXES))}, in sub-folders too).", path)
    checked = files[:HEADER_CHECKS]
    bad = [f for f in checked if not readable_header(f)]
    n = len(files) - len(bad)
    more = "+" if len(files) >= limit else ""
    msg = f"{n:,}{more} image{'s' if n != 1 else ''} found in {path}"
    if bad:
        names = ", ".join(str(f.relative_to(path)) for f in bad[:3]) + (", …" if len(bad) > 3 else "")
        msg += (f"; {len(bad):,} file{'s' if len(bad) != 1 else ''} named like an image "
                f"cannot be read ({names}) and will be skipped")
    if len(files) > len(checked):
        msg += f" (the first {len(checked):,} checked; the build checks every file)"
    return FolderCheck(n > 0, msg + "." if n else f"No readable images in {path}: {msg}.", path, n)


def readable_header(path: Path) -> bool:
    """True when ``path`` starts like an image Pillow (or the RAW/HEIF readers) can open;
    reads the header only (the build decodes every file and gives each reason)."""
    suffix = path.suffix.lower()
    if suffix in formats.RAW_SUFFIXES:
        return True  # RAW files are read by rawpy at build time
    try:
        if suffix in formats.HEIF_SUFFIXES:
            formats.ensure_heif()
        # opened without blocking, and only a regular file is read: a FIFO would block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return False
            with Image.open(fh) as im:
                return im.width > 0 and im.height > 0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
