"""Build or sync an index from a gallery folder: scan, features in parallel, publish.

Each image's embedding and, when the backbone has a classifier, its top-5 ImageNet
labels come from one forward pass. Only new or changed files are decoded (size + mtime,
confirmed by content hash); moved files are recognised by hash; skipped files are
retried; computed batches are saved under ``work/`` as they finish, so a killed build
resumes where it stopped. The new version is published atomically; one build runs at a
time per index (``build.lock``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgrec import images
from imgrec.index import catalog
from imgrec.index import writer as store
from imgrec.errors import ImgrecError, IndexFormatError, IndexNotFoundError
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.embedding import DEFAULT_MODEL, CNNEmbedder, Embedder
from imgrec.index.index import Index
from imgrec.build.lock import BuildLock
from imgrec.build.decode import PIPELINE_VERSION, FileResult, init_worker, process
from imgrec.features.pca import DEFAULT_COMPONENTS
from imgrec.settings import Settings

TASK_FILES = 8  # files per worker task
FLUSH_EVERY = 256  # computed images per saved work chunk (IMGREC_FLUSH_EVERY overrides)
FLUSH_SECONDS = 20.0  # ... or sooner, when the last chunk is this old


@dataclass
class Progress:
    """A progress report: ``done`` of ``total`` files in ``stage`` (scan/features/write)."""

    stage: str
    done: int
    total: int
    elapsed: float
    start: int = 0  # files already done (unchanged) when the stage began

    @property
    def rate(self) -> float:
        """Files per second processed in this stage (unchanged files not counted)."""
        return (self.done - self.start) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass
class BuildReport:
    """What a build did."""

    gallery: Path
    index_dir: Path
    version: str = ""
    model: str = ""
    indexed: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    computed: int = 0  # images that went through decode + CNN in this run
    resumed: int = 0  # images whose features came from an interrupted build
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [f"indexed {self.indexed} images from {self.gallery} into {self.index_dir} "
                 f"({self.model}) in {self.seconds:.1f} s"
                 + (f", {self.rate:.1f} images/s" if self.computed else ""),
                 f"added {self.added}, updated {self.updated}, moved {self.moved}, "
                 f"removed {self.removed}, unchanged {self.unchanged}, "
                 f"skipped {len(self.skipped)}"
                 + (f", resumed {self.resumed} from an interrupted build" if self.resumed else "")]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more (see `imgrec info`)")
        return "\n".join(lines + self.notes)


def build_index(gallery: str | os.PathLike, index_dir: str | os.PathLike | None = None, *,
                model: str = DEFAULT_MODEL, embedder: Embedder | None = None,
                weights: str | os.PathLike | None = None, device: str = "auto",
                workers: int | None = None, batch_size: int = 16,
                pca_components: int = DEFAULT_COMPONENTS, full: bool = False,
                wait: bool = False, progress: Callable[[Progress], None] | None = None
                ) -> BuildReport:
    """Index (or re-sync) every image under ``gallery`` into ``index_dir``.

    On an existing index this is a sync: files whose size and mtime are unchanged are
    reused as they are; other files are hashed, and content already indexed (touched or
    moved files) is reused without decoding; only new content is decoded and embedded.
    Files skipped earlier are retried. Computed batches are saved under
    ``index_dir/work/`` as they finish, so a killed build resumes where it stopped.

    Args:
        gallery: folder scanned recursively for jpg, jpeg, png, bmp, gif, webp, tif, tiff.
        index_dir: where the index lives (default: settings).
        model: backbone name, used when no ``embedder`` is given.
        embedder: a ready embedder (tests and the dashboard inject a shared one).
        weights, device, batch_size: passed to the default :class:`CNNEmbedder`.
        workers: decoding processes (0 decodes in this process; default: CPU count).
        pca_components: PCA components kept for the PCA-colour method.
        full: ignore the existing index and the work of an interrupted build; recompute
            everything.
        wait: wait for a running build of the same index instead of failing.
        progress: called with a :class:`Progress` as files are processed.

    Returns:
        A :class:`BuildReport`.

    Raises:
        ImgrecError: the gallery is missing or empty, or holds no readable image; the
            previous index is then left as it was.
        BuildLockedError: another build of this index is running.

    Example:
        >>> report = build_index("photos", "photos-index")   # doctest: +SKIP
        >>> print(report.summary())                           # doctest: +SKIP
    """
    t0 = time.perf_counter()
    root = Path(gallery).expanduser().resolve()
    index_dir = Path(index_dir or Settings.from_env().index_dir).expanduser().resolve()
    if not root.is_dir():
        raise ImgrecError(f"gallery folder not found: {gallery}")
    if index_dir == root or images.is_within(index_dir, root):
        raise ImgrecError(f"the index directory {index_dir} must not lie inside the gallery")
    flush_every = _flush_every()
    emb = embedder or CNNEmbedder(model, weights=weights, device=device, batch_size=batch_size)
    report = BuildReport(gallery=root, index_dir=index_dir, model=emb.name)
    with BuildLock(index_dir, wait=wait):
        store.remove_stale_temporaries(index_dir)
        work = index_dir / "work" / f"{_safe(emb.name)}-p{PIPELINE_VERSION}"
        if full:
            report.notes.append("full rebuild: every image is recomputed")
            shutil.rmtree(work, ignore_errors=True)
            prev = None
        else:
            prev = _previous(index_dir, root, emb, report)
        _run(root, index_dir, emb, prev, _WorkStore(work, emb.dim, flush_every), workers,
             batch_size, pca_components, report, progress, t0)
    return report


def _flush_every() -> int:
    """Computed images per saved work chunk (``IMGREC_FLUSH_EVERY`` overrides, for tests)."""
    env = os.environ.get("IMGREC_FLUSH_EVERY", "").strip()
    if not env:
        return FLUSH_EVERY
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise ImgrecError(f"IMGREC_FLUSH_EVERY must be a positive integer, got {env!r}")
    return value


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass
class _Prev:
    index: Index
    entries: dict[str, catalog.Entry]

    @property
    def embeddings(self) -> np.ndarray:
        return self.index.embeddings

    @property
    def histograms(self) -> np.ndarray:
        return self.index.histograms

    @property
    def labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        i = self.index
        if i.labels_top5 is None or i.labels_prob5 is None:
            return None
        return i.labels_top5, i.labels_prob5


def _previous(index_dir: Path, root: Path, emb: Embedder, report: BuildReport) -> _Prev | None:
    """The published version to sync against, if it is usable for this gallery and model.

    Entries are keyed by gallery-relative path. Skipped entries and rows whose stored
    features are not finite or not unit-length are marked so the sync retries them.
    """
    try:
        idx = Index.open(index_dir)
    except IndexNotFoundError:
        return None
    except IndexFormatError as exc:
        report.notes.append(f"previous index not reusable ({exc}): full rebuild")
        return None
    m = idx.manifest
    if m["model"] != emb.name or m["embedding_dim"] != emb.dim:
        report.notes.append(f"model changed from {m['model']} to {emb.name}: "
                            "all embeddings are recomputed")
        return None
    if m.get("pipeline") != PIPELINE_VERSION:
        report.notes.append("feature pipeline changed: all features are recomputed")
        return None
    try:
        entries = {e.path: e for e in idx.entries()}
    except sqlite3.Error as exc:
        report.notes.append(f"previous catalog not readable ({exc}): full rebuild")
        return None
    bad = _damaged_rows(idx)
    if bad:
        report.notes.append(f"{len(bad)} rows of the previous index hold damaged features: "
                            "recomputed")
    same_root = Path(m["gallery_root"]) == root
    if not same_root:
        report.notes.append(f"gallery changed from {m['gallery_root']}: files are compared "
                            "by content hash")
    for p, e in entries.items():
        if e.row is not None and e.row in bad:
            entries[p] = replace(e, row=None, error="damaged features in the previous index")
        elif not same_root:
            entries[p] = replace(e, size=-1)  # never equal: confirm each file by its hash
    return _Prev(idx, entries)


def _damaged_rows(idx: Index) -> set[int]:
    """Rows whose stored embedding or histogram is not finite, or not unit-length/zero."""
    bad: set[int] = set()
    step = 8192
    for s in range(0, len(idx), step):
        e = np.asarray(idx.embeddings[s:s + step], dtype=np.float64)
        h = np.asarray(idx.histograms[s:s + step])
        norms = np.linalg.norm(e, axis=1)
        ok = (np.isfinite(e).all(1) & np.isfinite(h).all(1)
              & ((np.abs(norms - 1.0) <= 1e-3) | (norms == 0.0)))
        bad.update((s + np.flatnonzero(~ok)).tolist())
    return bad


_META = ("format", "mode", "width", "height", "exif")
_CHUNK_NAME = re.compile(r"chunk-(\d{6,})\.npz")


class _WorkStore:
    """Features computed by this (or an interrupted) build, saved in chunk files by hash.

    A chunk is written to a temporary name, synced, then renamed, so every
    ``chunk-*.npz`` is complete; anything else found at start (a temporary left by a
    crash, a chunk that does not load) is deleted and its images recomputed. A chunk
    holds ``top5``/``prob5`` label arrays when its embedder gave class probabilities
    (rows without labels: id -1, probability 0); chunks without them load as unlabelled.
    """

    def __init__(self, folder: Path, dim: int, flush_every: int = FLUSH_EVERY) -> None:
        self.folder = folder
        self.flush_every = flush_every
        self.meta: dict[str, dict] = {}  # sha -> catalog metadata, for every sha held
        self.has_labels = False  # some held image has labels
        self._count = 0
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                m = _CHUNK_NAME.fullmatch(f.name)
                if m is None or not self._load(f, dim):
                    f.unlink(missing_ok=True)
                else:
                    self._count = max(self._count, int(m.group(1)))
        self.resumable = frozenset(self.meta)
        self._pending: list[tuple[FileResult, np.ndarray, np.ndarray | None,
                                  np.ndarray | None]] = []
        self._last = time.monotonic()

    def _load(self, f: Path, dim: int) -> bool:
        try:
            with np.load(f, allow_pickle=False) as z:
                sha, meta, emb, hist = z["sha"], z["meta"], z["emb"], z["hist"]
                labelled = "top5" in z.files
                if labelled:
                    top5, prob5 = z["top5"], z["prob5"]
            k = len(sha)
            if (meta.shape != (k,) or emb.shape != (k, dim) or hist.shape != (k, HIST_DIM)
                    or not np.isfinite(emb).all() or not np.isfinite(hist).all()):
                return False
            if labelled and (top5.shape != (k, store.LABEL_TOP) or prob5.shape != top5.shape
                             or not np.isfinite(prob5).all()):
                return False
            decoded = [json.loads(str(m)) for m in meta]
        except Exception:  # BadZipFile, EOFError, KeyError, ValueError, OSError: cut short
            return False
        for s, m in zip(sha, decoded, strict=True):
            self.meta[str(s)] = m
        self.has_labels |= labelled
        return True

    def add(self, results: list[FileResult], vectors: np.ndarray,
            top5: np.ndarray | None = None, prob5: np.ndarray | None = None) -> None:
        for i, (r, v) in enumerate(zip(results, vectors, strict=True)):
            self._pending.append((r, v, None if top5 is None else top5[i],
                                  None if prob5 is None else prob5[i]))
            self.meta[r.sha256] = {k: getattr(r, k) for k in _META}
        self.has_labels |= top5 is not None
        if (len(self._pending) >= self.flush_every
                or time.monotonic() - self._last > FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count += 1
        f = self.folder / f"chunk-{self._count:06d}.npz"
        tmp = self.folder / f".tmp-{f.name}"
        res = [p[0] for p in self._pending]
        arrays = {"sha": np.array([r.sha256 for r in res]),
                  "meta": np.array([json.dumps(self.meta[r.sha256]) for r in res]),
                  "emb": np.stack([p[1] for p in self._pending]).astype(np.float32),
                  "hist": np.stack([r.hist for r in res]).astype(np.float32)}
        if any(p[2] is not None for p in self._pending):
            unknown = (np.full(store.LABEL_TOP, -1, np.int16), np.zeros(store.LABEL_TOP, np.float32))
            arrays["top5"] = np.stack([unknown[0] if p[2] is None else p[2]
                                       for p in self._pending]).astype(np.int16)
            arrays["prob5"] = np.stack([unknown[1] if p[3] is None else p[3]
                                        for p in self._pending]).astype(np.float32)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f)
        self._pending = []
        self._last = time.monotonic()

    def chunks(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray,
                                       np.ndarray | None, np.ndarray | None]]:
        """(shas, embeddings, histograms, top5 or None, prob5 or None) per saved chunk."""
        if not self.folder.is_dir():
            return
        for f in sorted(self.folder.glob("chunk-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                labelled = "top5" in z.files
                yield ([str(s) for s in z["sha"]], z["emb"], z["hist"],
                       z["top5"] if labelled else None, z["prob5"] if labelled else None)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # work/, unless another model's build is pending
            self.folder.parent.rmdir()


def _process_safe(task: tuple[str, str, int, int, int], known: frozenset[str]) -> FileResult:
    """:func:`process`, with any unexpected decoder failure recorded as the file's error."""
    try:
        return process(*task, known=known)
    except Exception as exc:  # a bad file must never stop a build
        res = FileResult(task[1], task[2], task[3])
        res.error = f"unreadable: {type(exc).__name__}: {exc}"
        return res


def _process_many_safe(tasks: list[tuple[str, str, int, int, int]]) -> list[FileResult]:
    """Worker entry point (the worker's known hashes were set by ``init_worker``)."""
    from imgrec.build import decode as pipeline

    return [_process_safe(t, pipeline._KNOWN) for t in tasks]


def _results(todo: list[tuple[str, str, int, int, int]], workers: int,
             known: frozenset[str], inflight: int) -> Iterator[FileResult]:
    """Process files in worker processes with bounded look-ahead (or in this process)."""
    if workers <= 0 or len(todo) < 2 * TASK_FILES:
        for t in todo:
            yield _process_safe(t, known)
        return
    tasks = [todo[i:i + TASK_FILES] for i in range(0, len(todo), TASK_FILES)]
    ctx = mp.get_context("spawn")  # safe beside torch threads and Streamlit's threads
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                             initargs=(known,)) as pool:
        pending: deque[Future] = deque()
        it = iter(tasks)
        for t in it:
            pending.append(pool.submit(_process_many_safe, t))
            if len(pending) >= inflight:
                break
        while pending:
            done = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_process_many_safe, nxt))
            yield from done


def _run(root: Path, index_dir: Path, emb: Embedder, prev: _Prev | None, ws: _WorkStore,
         workers: int | None, batch_size: int, pca_components: int, report: BuildReport,
         progress: Callable[[Progress], None] | None, t0: float) -> None:
    files = []
    for path in images.scan(root):
        try:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # e.g. a dangling link: reading it records why
            size, mtime = -1, -1
        files.append((str(path), path.relative_to(root).as_posix(), size, mtime))
    if not files:
        raise ImgrecError(f"no images found in {root} (looked for "
                          f"{', '.join(sorted(images.SUFFIXES))})")
    prev_entries = prev.entries if prev else {}
    prev_sha = {e.sha256: e for e in prev_entries.values() if e.row is not None}
    final: dict[str, catalog.Entry] = {}
    source: dict[str, tuple[str, int]] = {}  # path -> ("prev", row) | ("work", 0)
    status: dict[str, str] = {}  # path -> added | updated | unchanged
    todo = []
    for path, rel, size, mtime in files:
        safe = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if safe != rel:  # the catalog stores UTF-8 text: record it, never crash on it
            final[safe] = catalog.Entry(safe, None, size, mtime, error="file name is not valid "
                                        "UTF-8: rename the file to index it")
            continue
        old = prev_entries.get(rel)
        if old and old.row is not None and old.size == size and old.mtime_ns == mtime:
            final[rel] = replace(old, row=None)
            source[rel] = ("prev", old.row)
            status[rel] = "unchanged"
        else:  # new, changed, or skipped last time (retried: it may have been fixed)
            todo.append((path, rel, size, mtime, emb.input_size))
    known = frozenset(prev_sha) | ws.resumable
    total, done = len(files), len(files) - len(todo)
    t_feat = time.perf_counter()
    batch: list[FileResult] = []
    in_batch: set[str] = set()

    def tick(stage: str = "features") -> None:
        if progress:
            progress(Progress(stage, done, total, time.perf_counter() - t_feat,
                              total - len(todo)))

    def flush_batch() -> None:
        nonlocal batch
        if not batch:
            return
        vecs, top5, prob5 = _embed(emb, np.stack([r.crop for r in batch]))
        if vecs.shape != (len(batch), emb.dim):
            raise ImgrecError(f"embedder {emb.name} returned shape {vecs.shape} for "
                              f"{len(batch)} images (expected ({len(batch)}, {emb.dim}))")
        ok = np.isfinite(vecs).all(1)
        good = [r for r, g in zip(batch, ok, strict=True) if g]
        failed = {r.sha256 for r, g in zip(batch, ok, strict=True) if not g}
        if failed:  # every file with that content is skipped
            for p in [p for p in source if final[p].sha256 in failed and source[p][0] == "work"]:
                final[p].error = "embedding failed: the model returned NaN or inf"
                del source[p]
        if good:
            ws.add(good, vecs[ok], None if top5 is None else top5[ok],
                   None if prob5 is None else prob5[ok])
        report.computed += len(batch)
        batch = []
        in_batch.clear()

    tick()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    for res in _results(todo, n_workers, known, inflight=max(4, 2 * n_workers + 2)):
        done += 1
        entry = catalog.Entry(res.rel, None, res.size, res.mtime_ns, res.sha256, res.format,
                              res.mode, res.width, res.height, res.exif, res.error)
        final[res.rel] = entry
        if res.error:
            pass  # listed in report.skipped below
        elif res.sha256 in prev_sha:  # touched, moved or copied: reuse the stored row
            src = prev_sha[res.sha256]
            source[res.rel] = ("prev", src.row)  # type: ignore[assignment]
            for k in _META:
                setattr(entry, k, getattr(src, k))
        else:
            source[res.rel] = ("work", 0)
            if res.known:  # features saved by an interrupted build
                for k, v in ws.meta[res.sha256].items():
                    setattr(entry, k, v)
                report.resumed += 1
            elif res.sha256 not in ws.meta and res.sha256 not in in_batch:
                batch.append(res)
                in_batch.add(res.sha256)
                if len(batch) >= batch_size:
                    flush_batch()
        old = prev_entries.get(res.rel)
        if old is None:
            status[res.rel] = "added"
        elif old.sha256 == res.sha256 and old.row is not None:
            status[res.rel] = "unchanged"  # touched: same content
        else:
            status[res.rel] = "updated"  # new content, or skipped before and readable now
        if done % 8 == 0 or done == total:
            tick()
    flush_batch()
    ws.flush()
    tick()
    _count(report, prev_entries, final, source, status)
    _assemble(root, index_dir, emb, prev, ws, final, source, pca_components, report, progress,
              t0)
    ws.discard()
    report.seconds = time.perf_counter() - t0


def _embed(emb: Embedder, crops: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Embeddings and, when the embedder has a ``forward`` giving class probabilities
    (:class:`CNNEmbedder`), the top-5 labels, from one forward pass."""
    from imgrec.insights.labels import top_classes

    forward = getattr(emb, "forward", None)
    if not callable(forward):
        return np.asarray(emb.embed(crops), dtype=np.float32), None, None
    vecs, probs = forward(crops)
    vecs = np.asarray(vecs, dtype=np.float32)
    if probs is None:
        return vecs, None, None
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or len(probs) != len(vecs):
        raise ImgrecError(f"embedder {emb.name} returned class probabilities of shape "
                          f"{probs.shape} for {len(vecs)} images")
    top5, prob5 = top_classes(probs, store.LABEL_TOP)
    return vecs, top5, prob5


def _count(report: BuildReport, prev_entries: dict[str, catalog.Entry],
           final: dict[str, catalog.Entry], source: dict[str, tuple[str, int]],
           status: dict[str, str]) -> None:
    """Fill the report's counts.

    Every gallery file is counted once: skipped (not indexed, with its reason) or indexed
    as added, moved (a new path holding the content of an indexed path that is gone),
    updated or unchanged. ``removed`` counts catalogued paths that are gone, less the moves.
    """
    gone = [p for p in prev_entries if p not in final]
    left = Counter(prev_entries[p].sha256 for p in gone if prev_entries[p].row is not None)
    report.skipped = [(p, final[p].error or "unknown") for p in sorted(final)
                      if p not in source]
    for p in sorted(source):
        kind = status[p]
        if kind == "added" and left[final[p].sha256] > 0:
            left[final[p].sha256] -= 1
            kind = "moved"
        setattr(report, kind, getattr(report, kind) + 1)
    report.removed = len(gone) - report.moved


def _assemble(root: Path, index_dir: Path, emb: Embedder, prev: _Prev | None,
              ws: _WorkStore, final: dict[str, catalog.Entry],
              source: dict[str, tuple[str, int]], pca_components: int,
              report: BuildReport, progress: Callable[[Progress], None] | None,
              t0: float) -> None:
    entries = [final[p] for p in sorted(final)]
    rows = 0
    for e in entries:
        if e.path in source:
            e.row = rows
            rows += 1
    report.indexed = rows
    if rows == 0:
        reasons = "; ".join(f"{p}: {w}" for p, w in report.skipped[:3])
        raise ImgrecError(f"none of the {len(entries)} files in {root} could be read "
                          f"({reasons}); the previous index is unchanged")
    if progress:
        progress(Progress("write", 0, rows, 0.0))
    writer = store.VersionWriter(index_dir, rows, emb.dim)
    try:
        prev_labels = prev.labels if prev is not None else None
        labels = writer.labels() if (ws.has_labels or prev_labels is not None) else None
        from_prev = [(e.row, source[e.path][1]) for e in entries
                     if e.row is not None and source[e.path][0] == "prev"]
        if from_prev and prev is not None:
            dst, src = (np.array(x) for x in zip(*from_prev, strict=True))
            for s in range(0, len(dst), 8192):
                writer.embeddings[dst[s:s + 8192]] = prev.embeddings[src[s:s + 8192]]
                writer.histograms[dst[s:s + 8192]] = prev.histograms[src[s:s + 8192]]
                if labels is not None and prev_labels is not None:
                    for mine, theirs in zip(labels, prev_labels, strict=True):
                        mine[dst[s:s + 8192]] = theirs[src[s:s + 8192]]
        want: dict[str, list[int]] = {}
        for e in entries:
            if e.row is not None and source[e.path][0] == "work":
                want.setdefault(e.sha256, []).append(e.row)
        for shas, vecs, hists, top5, prob5 in ws.chunks():
            for i, sha in enumerate(shas):
                for r in want.pop(sha, ()):
                    writer.embeddings[r] = vecs[i]
                    writer.histograms[r] = hists[i]
                    if labels is not None and top5 is not None and prob5 is not None:
                        labels[0][r] = top5[i]
                        labels[1][r] = prob5[i]
        if want:
            raise ImgrecError(f"internal error: features missing for {len(want)} files")
        if labels is not None:
            unlabelled = int((np.asarray(labels[0][:, 0]) < 0).sum())
            if unlabelled:
                report.notes.append(f"{unlabelled} of {rows} images have no ImageNet labels "
                                    "(indexed before labels were kept): `--full` computes them")
        writer.publish(entries, {"model": emb.name, "gallery_root": str(root),
                                 "pipeline": PIPELINE_VERSION,
                                 "build_seconds": round(time.perf_counter() - t0, 3)},
                       pca_components)
    except BaseException:
        writer.abort()
        raise
    report.version = writer.name
