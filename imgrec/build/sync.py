"""Scan the gallery and diff it against the previous version: what each file becomes."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import images
from imgrec.build.decode import PIPELINE_VERSION, FileResult, Task
from imgrec.build.workstore import META
from imgrec.errors import ImgrecError, IndexFormatError, IndexNotFoundError
from imgrec.features.embedding import Embedder
from imgrec.index import catalog
from imgrec.index.index import Index
from imgrec.index.verify import NORM_TOL

_SCAN_STEP = 8192


@dataclass
class Previous:
    """The published version a build syncs against, its catalog keyed by path."""

    index: Index
    entries: dict[str, catalog.Entry]
    by_sha: dict[str, catalog.Entry] = field(init=False)

    def __post_init__(self) -> None:
        self.by_sha = {e.sha256: e for e in self.entries.values() if e.row is not None}

    @property
    def labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        i = self.index
        if i.labels_top5 is None or i.labels_prob5 is None:
            return None
        return i.labels_top5, i.labels_prob5


def previous(index_dir: Path, root: Path, emb: Embedder, notes: list[str],
             recipe: str = "v1") -> Previous | None:
    """The published version to sync against, if it is usable for this gallery, model and
    embedding recipe (``recipe``: the new build's; an index without one used ``v1``).

    Skipped entries and rows whose stored features are not finite or not unit-length are
    marked so the sync retries them; why a version is not reused goes into ``notes``.
    """
    try:
        idx = Index.open(index_dir)
    except IndexNotFoundError:
        return None
    except IndexFormatError as exc:
        notes.append(f"previous index not reusable ({exc}): full rebuild")
        return None
    m = idx.manifest
    if m.model != emb.name:
        notes.append(f"model changed from {m.model} to {emb.name}: "
                     "all embeddings are recomputed")
        return None
    if m.pipeline != PIPELINE_VERSION:
        notes.append("feature pipeline changed: all features are recomputed")
        return None
    if (m.recipe or "v1") != recipe:
        notes.append(f"embedding recipe changed from {m.recipe or 'v1'} to {recipe}: "
                     "all features are recomputed")
        return None
    if m.embedding_dim != emb.dim:
        notes.append(f"embedding length changed from {m.embedding_dim} to {emb.dim}: "
                     "all embeddings are recomputed")
        return None
    try:
        entries = {e.path: e for e in idx.entries()}
    except (sqlite3.Error, IndexFormatError) as exc:
        notes.append(f"previous catalog not readable ({exc}): full rebuild")
        return None
    bad = damaged_rows(idx)
    if bad:
        notes.append(f"{len(bad)} rows of the previous index hold damaged features: recomputed")
    same_root = Path(m.gallery_root) == root
    if not same_root:
        notes.append(f"gallery changed from {m.gallery_root}: files are compared "
                     "by content hash")
    for p, e in entries.items():
        if e.row is not None and e.row in bad:
            entries[p] = replace(e, row=None, error="damaged features in the previous index")
        elif not same_root:
            entries[p] = replace(e, size=-1)  # never equal: confirm each file by its hash
    return Previous(idx, entries)


def damaged_rows(idx: Index) -> set[int]:
    """Rows whose stored embedding or histogram is not finite, or not unit-length/zero."""
    bad: set[int] = set()
    for s in range(0, len(idx), _SCAN_STEP):
        e = np.asarray(idx.embeddings[s:s + _SCAN_STEP], dtype=np.float64)
        h = np.asarray(idx.histograms[s:s + _SCAN_STEP])
        norms = np.linalg.norm(e, axis=1)
        ok = (np.isfinite(e).all(1) & np.isfinite(h).all(1)
              & ((np.abs(norms - 1.0) <= NORM_TOL) | (norms == 0.0)))
        bad.update((s + np.flatnonzero(~ok)).tolist())
    return bad


@dataclass
class Plan:
    """Every gallery file and where its features come from.

    Attributes:
        entries: the new catalog, by path (rows are assigned by :meth:`numbered`).
        from_prev: paths whose features are copied from the previous version, with its row.
        from_work: paths whose features are in the work store.
        status: ``added`` / ``updated`` / ``unchanged`` per indexed path.
        todo: files to read (new, changed, or skipped before).
    """

    entries: dict[str, catalog.Entry] = field(default_factory=dict)
    from_prev: dict[str, int] = field(default_factory=dict)
    from_work: set[str] = field(default_factory=set)
    status: dict[str, str] = field(default_factory=dict)
    todo: list[Task] = field(default_factory=list)
    total: int = 0

    def record(self, res: FileResult, prev: Previous | None,
               work_meta: dict[str, dict[str, Any]]) -> str:
        """Take one read file's result; returns where its features come from:
        ``skipped``, ``prev``, ``resumed`` (saved by an interrupted build) or ``work``."""
        entry = catalog.Entry(res.rel, None, res.size, res.mtime_ns, res.sha256, res.format,
                              res.mode, res.width, res.height, res.exif, res.error,
                              res.decoder)
        self.entries[res.rel] = entry
        if res.error:
            return "skipped"
        old = prev.entries.get(res.rel) if prev else None
        if old is None:
            self.status[res.rel] = "added"
        elif old.sha256 == res.sha256 and old.row is not None:
            self.status[res.rel] = "unchanged"  # touched: same content
        else:
            self.status[res.rel] = "updated"  # new content, or skipped before and readable now
        src = prev.by_sha.get(res.sha256) if prev else None
        if src is not None and src.row is not None:  # touched, moved or copied
            self.from_prev[res.rel] = src.row
            for k in META:
                setattr(entry, k, getattr(src, k))
            return "prev"
        self.from_work.add(res.rel)
        if res.known:
            for k, v in work_meta[res.sha256].items():
                setattr(entry, k, v)
            return "resumed"
        return "work"

    def fail(self, shas: set[str], reason: str) -> None:
        """Skip every file whose content is in ``shas`` (its features could not be made)."""
        for p in [p for p in self.from_work if self.entries[p].sha256 in shas]:
            self.entries[p].error = reason
            self.from_work.discard(p)
            del self.status[p]

    def numbered(self) -> list[catalog.Entry]:
        """The catalog sorted by path, indexed entries numbered 0, 1, ... in that order."""
        out = [self.entries[p] for p in sorted(self.entries)]
        row = 0
        for e in out:
            if e.path in self.from_prev or e.path in self.from_work:
                e.row = row
                row += 1
        return out

    def counts(self, prev: Previous | None) -> dict[str, Any]:
        """Added / updated / moved / removed / unchanged counts and the skipped list.

        Every file is counted once: skipped (with its reason) or indexed as added, moved (a
        new path holding the content of an indexed path that is gone), updated or
        unchanged. ``removed`` counts catalogued paths that are gone, less the moves.
        """
        before = prev.entries if prev else {}
        gone = [p for p in before if p not in self.entries]
        left = Counter(before[p].sha256 for p in gone if before[p].row is not None)
        out: dict[str, Any] = dict.fromkeys(("added", "updated", "moved", "unchanged"), 0)
        out["skipped"] = [(p, self.entries[p].error or "unknown") for p in sorted(self.entries)
                          if p not in self.status]
        for p in sorted(self.status):
            kind = self.status[p]
            if kind == "added" and left[self.entries[p].sha256] > 0:
                left[self.entries[p].sha256] -= 1
                kind = "moved"
            out[kind] += 1
        out["removed"] = len(gone) - out["moved"]
        return out


def plan(root: Path, prev: Previous | None, crop_size: int, *,
         exclude: Iterable[str] = (), ignore_file: str | None = images.IGNORE_FILE,
         max_megapixels: float = images.MAX_MEGAPIXELS, framing: str = "crop") -> Plan:
    """Scan ``root``; files unchanged since ``prev`` (size + mtime) keep their row, the
    others go into :attr:`Plan.todo` (cut to ``crop_size`` inputs by ``framing``).

    Excluded files (``exclude`` patterns and the ``ignore_file`` rules) are left out, as
    if they were not there; entries that cannot be read (a link loop, a FIFO, a folder
    that cannot be listed) are recorded as skipped with their reason.

    Raises:
        ImgrecError: the gallery holds no image file, or an exclude rule is invalid.
    """
    out = Plan()
    before = prev.entries if prev else {}
    unlisted = ""
    for scanned in images.scan_entries(root, exclude=exclude, ignore_file=ignore_file):
        if scanned.is_folder:  # a folder that cannot be listed: skipped, with the reason
            rel = _utf8(scanned.rel)
            out.entries[rel] = catalog.Entry(rel, None, -1, -1, error=scanned.problem)
            unlisted = unlisted or f"; {rel} {scanned.problem}"
            continue
        if scanned.problem is not None:  # a link loop, a FIFO, ...: skipped, never read
            out.total += 1
            rel = _utf8(scanned.rel)
            out.entries[rel] = catalog.Entry(rel, None, error=scanned.problem)
            continue
        path = scanned.path
        out.total += 1
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # e.g. a dangling link: reading it records why
            size, mtime = -1, -1
        rel = scanned.rel
        safe = _utf8(rel)
        if safe != rel:  # the catalog stores UTF-8 text: record it, never crash on it
            out.entries[safe] = catalog.Entry(safe, None, size, mtime, error="file name is not "
                                              "valid UTF-8: rename the file to index it")
            continue
        old = before.get(rel)
        if old and old.row is not None and old.size == size and old.mtime_ns == mtime:
            out.entries[rel] = replace(old, row=None)
            out.from_prev[rel] = old.row
            out.status[rel] = "unchanged"
        else:  # new, changed, or skipped last time (retried: it may have been fixed)
            out.todo.append(Task(str(path), rel, size, mtime, crop_size, max_megapixels,
                                 framing))
    if not out.total:
        raise ImgrecError(f"no images found in {root} (looked for "
                          f"{', '.join(sorted(images.SUFFIXES))}){unlisted}")
    return out


def _utf8(rel: str) -> str:
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
