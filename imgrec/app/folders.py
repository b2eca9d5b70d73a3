"""The check of a gallery folder typed into the Dataset page."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from imgrec import images


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
    path = path.resolve()
    if not path.exists():
        return FolderCheck(False, f"{path} does not exist.", path)
    if not path.is_dir():
        return FolderCheck(False, f"{path} is a file, not a folder.", path)
    if not os.access(path, os.R_OK | os.X_OK):
        return FolderCheck(False, f"{path} cannot be read (permission denied).", path)
    index = Path(index_dir).expanduser().resolve()
    if index == path or images.is_within(index, path):
        return FolderCheck(False, f"The index folder {index} lies inside {path}; choose another "
                           "gallery or another index folder.", path)
    if images.is_within(path, index):
        return FolderCheck(False, f"{path} is inside the index folder {index}.", path)
    n = sum(1 for _ in itertools.islice(images.scan(path), limit))
    if n == 0:
        return FolderCheck(False, f"No images in {path} (looked for "
                           f"{', '.join(sorted(images.SUFFIXES))}, in sub-folders too).", path)
    more = "+" if n >= limit else ""
    return FolderCheck(True, f"{n:,}{more} image{'s' if n != 1 else ''} found in {path}.", path, n)
