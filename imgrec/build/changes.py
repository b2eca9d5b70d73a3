"""What changed in a gallery since its last build, from a fast scan (size + mtime, no decoding)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imgrec import images
from imgrec.index.index import Index


@dataclass(frozen=True)
class Changes:
    """Files new, changed and removed since the published version (see :func:`changes`).

    Attributes:
        new: image files the catalog does not list.
        changed: listed files whose size or modification time differ.
        removed: listed files that are gone (or now excluded).
        unchanged: listed files as they were.
        examples: up to ten paths of each kind, for display.
    """

    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """How many files a sync would look at again."""
        return self.new + self.changed + self.removed

    def summary(self) -> str:
        """One line: ``3 new, 1 changed, 0 removed since the last build``."""
        if not self.pending:
            return "up to date: nothing changed since the last build"
        return f"{self.new} new, {self.changed} changed, {self.removed} removed since the last build"


def changes(index: Index, gallery: str | os.PathLike | None = None, *,
            exclude: Iterable[str] = (), ignore_file: str | None = images.IGNORE_FILE
            ) -> Changes:
    """Compare the gallery's files (size and mtime, nothing read) with the index's catalog.

    Args:
        index: the opened index.
        gallery: the folder to scan (default: the index's gallery root).
        exclude, ignore_file: the exclude rules, as for a build.

    Example:
        >>> changes(Index.open("data/index")).summary()
        'up to date: nothing changed since the last build'
    """
    root = Path(gallery) if gallery is not None else index.root
    return compare(root, index.file_stats(), exclude=exclude, ignore_file=ignore_file)


def sharded_changes(folder: str | os.PathLike, *, exclude: Iterable[str] = (),
                    ignore_file: str | None = images.IGNORE_FILE) -> Changes:
    """:func:`changes` of the sharded index at ``folder``: its gallery against the union of
    its shards' catalogs (each shard opened here, at the version its manifest names).

    Raises:
        IndexFormatError: the manifest or a shard cannot be read.
    """
    from imgrec.shard.split import ShardedManifest, open_shard

    folder = Path(folder)
    m = ShardedManifest.read(folder)
    known: dict[str, tuple[int, int, bool]] = {}
    for s in m.shards:
        known.update(open_shard(folder / s.name, s.version).file_stats())
    return compare(Path(m.gallery_root), known, exclude=exclude, ignore_file=ignore_file)


def compare(root: Path, known: dict[str, tuple[int, int, bool]], *,
            exclude: Iterable[str] = (), ignore_file: str | None = images.IGNORE_FILE
            ) -> Changes:
    """The files under ``root`` against ``known`` (path -> size, mtime_ns, indexed)."""
    seen: set[str] = set()
    kinds: dict[str, list[str]] = {"new": [], "changed": [], "removed": []}
    counts = dict.fromkeys(("new", "changed", "removed", "unchanged"), 0)
    for e in images.scan_entries(root, exclude=exclude, ignore_file=ignore_file):
        if e.is_folder:
            continue
        seen.add(e.rel)
        old = known.get(e.rel)
        try:
            st = e.path.stat()
            now = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = (-1, -1)
        if old is None:
            kind = "new"
        elif e.problem is not None:  # recorded as skipped: nothing a stat can compare
            kind = "unchanged"
        else:
            kind = "unchanged" if old[:2] == now else "changed"
        counts[kind] += 1
        if kind != "unchanged" and len(kinds[kind]) < 10:
            kinds[kind].append(e.rel)
    for p in known:
        if p not in seen and not p.endswith("/"):
            counts["removed"] += 1
            if len(kinds["removed"]) < 10:
                kinds["removed"].append(p)
    return Changes(**counts, examples=kinds)
