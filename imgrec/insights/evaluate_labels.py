"""Ground-truth labels for an evaluation: from the folder structure or from a CSV file.

Labels come as one tuple of label strings per indexed image (empty = unlabelled):

* ``"folder"``: the image's immediate folder (``animals/cats/a.png`` -> ``animals/cats``);
* ``"depth:N"``: the folder at depth N (``depth:1`` is the top folder); an image in a
  shallower folder is labelled by its own folder;
* a CSV file ``path,label[,label...]`` (paths relative to the gallery root, as
  ``imgrec search`` prints them, or absolute paths inside it; an optional header row whose
  first cell is ``path``; several rows for one path add up). Images the CSV does not name
  are unlabelled; CSV paths that are not in the index are reported, not fatal.

Images directly in the gallery root have no folder and are unlabelled in the folder modes.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imgrec.errors import ImgrecError


@dataclass
class Labels:
    """One tuple of labels per image (row order), and what the source said beyond that."""

    source: str
    per_image: list[tuple[str, ...]]
    #: CSV paths that name no indexed image
    unknown_paths: list[str] = field(default_factory=list)


def folder_labels(paths: list[str], depth: int | None = None) -> list[tuple[str, ...]]:
    """The folder label of each relative path (``depth`` None: the immediate folder)."""
    out = []
    for p in paths:
        parts = PurePosixPath(p.replace(os.sep, "/")).parent.parts
        if not parts:
            out.append(())
            continue
        out.append(("/".join(parts if depth is None else parts[:depth]),))
    return out


def read_csv_labels(csv_path: str | os.PathLike, paths: list[str],
                    gallery_root: str | os.PathLike | None = None) -> Labels:
    """Labels from a ``path,label[,label...]`` CSV, aligned to ``paths`` (row order).

    Raises:
        ImgrecError: the file cannot be read, or it names no indexed image.
    """
    f = Path(csv_path)
    try:
        with f.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ImgrecError(f"cannot read the labels CSV {f}: {exc}") from None
    if rows and rows[0] and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    where = {p: i for i, p in enumerate(paths)}
    root = Path(gallery_root).resolve() if gallery_root is not None else None
    found: dict[int, set[str]] = {}
    unknown: list[str] = []
    for row in rows:
        if not row or not row[0].strip():
            continue
        key = _relative(row[0].strip(), root)
        labels = {c.strip() for c in row[1:] if c.strip()}
        if key not in where:
            unknown.append(row[0].strip())
            continue
        found.setdefault(where[key], set()).update(labels)
    if not found:
        raise ImgrecError(f"the labels CSV {f} names none of the {len(paths)} indexed images "
                          "(paths must be relative to the gallery root, as `imgrec search` "
                          "prints them)")
    per = [tuple(sorted(found.get(i, ()))) for i in range(len(paths))]
    return Labels(str(f), per, unknown)


def _relative(p: str, root: Path | None) -> str:
    q = Path(p)
    if q.is_absolute() and root is not None:
        try:
            return q.resolve().relative_to(root).as_posix()
        except ValueError:
            return p
    return PurePosixPath(p.replace("\\", "/")).as_posix()


def load_labels(spec: str | os.PathLike, paths: list[str],
                gallery_root: str | os.PathLike | None = None) -> Labels:
    """Labels from ``"folder"``, ``"depth:N"`` or a CSV path.

    Raises:
        ImgrecError: an unknown spec, a bad depth, or an unusable CSV.
    """
    s = str(spec)
    if s == "folder":
        return Labels("folder", folder_labels(paths))
    if s.startswith("depth:"):
        try:
            depth = int(s.split(":", 1)[1])
        except ValueError:
            depth = 0
        if depth < 1:
            raise ImgrecError(f"labels {s!r}: the depth must be a whole number >= 1 (depth:1 "
                              "is the top folder)")
        return Labels(s, folder_labels(paths, depth))
    if not Path(s).is_file():
        raise ImgrecError(f"labels {s!r}: give 'folder', 'depth:N' or an existing CSV file "
                          "path,label[,label...]")
    return read_csv_labels(s, paths, gallery_root)
