"""Build or sync an index from a gallery folder: scan, features in parallel, publish.

Only new or changed files are decoded (size + mtime, confirmed by content hash); moved
files are recognised by hash; computed batches are saved under ``work/`` as they finish,
so a killed build resumes where it stopped. The new version is published atomically.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import catalog, images, store
from .errors import ImgrecError, IndexFormatError
from .features.embedding import DEFAULT_MODEL, CNNEmbedder, Embedder
from .lock import BuildLock
from .pipeline import PIPELINE_VERSION, FileResult, init_worker, process, process_many
from .reduce import DEFAULT_COMPONENTS
from .settings import Settings

TASK_FILES = 8  # files per worker task
FLUSH_EVERY = 256  # computed images per saved work chunk
FLUSH_SECONDS = 20.0


@dataclass
class Progress:
    """A progress report: ``done`` of ``total`` files in ``stage`` (scan/features/write)."""

    stage: str
    done: int
    total: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

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
                workers: int | None = None, batch_size: int = 32,
                pca_components: int = DEFAULT_COMPONENTS, full: bool = False,
                wait: bool = False, progress: Callable[[Progress], None] | None = None
                ) -> BuildReport:
    """Index (or re-sync) every image under ``gallery`` into ``index_dir``.

    Args:
        gallery: folder scanned recursively for jpg, jpeg, png, bmp, gif, webp, tif, tiff.
        index_dir: where the index lives (default: settings).
        model: backbone name, used when no ``embedder`` is given.
        embedder: a ready embedder (tests and the dashboard inject a shared one).
        weights, device, batch_size: passed to the default :class:`CNNEmbedder`.
        workers: decoding processes (0 decodes in this process; default: CPU count).
        pca_components: PCA components kept for the PCA-colour method.
        full: ignore the existing index and recompute everything.
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
    emb = embedder or CNNEmbedder(model, weights=weights, device=device, batch_size=batch_size)
    report = BuildReport(gallery=root, index_dir=index_dir, model=emb.name)
    with BuildLock(index_dir, wait=wait):
        store.remove_stale_temporaries(index_dir)
        prev = None if full else _previous(index_dir, root, emb.name, report)
        work = index_dir / "work" / f"{_safe(emb.name)}-p{PIPELINE_VERSION}"
        if full and work.exists():
            shutil.rmtree(work)
        _run(root, index_dir, emb, prev, work, workers, batch_size, pca_components,
             report, progress, t0)
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass
class _Prev:
    version: Path
    entries: dict[str, catalog.Entry]
    embeddings: np.ndarray
    histograms: np.ndarray


def _previous(index_dir: Path, root: Path, model: str, report: BuildReport) -> _Prev | None:
    """The published version to sync against, if it is usable for this gallery and model."""
    version = store.current_version(index_dir)
    if version is None:
        return None
    try:
        manifest = json.loads((version / "manifest.json").read_text())
        if manifest.get("format_version") != store.FORMAT_VERSION:
            raise IndexFormatError("other format version")
        if manifest.get("model") != model:
            report.notes.append(f"model changed from {manifest.get('model')} to {model}: "
                                "all embeddings are recomputed")
            return None
        if manifest.get("pipeline") != PIPELINE_VERSION:
            report.notes.append("feature pipeline changed: all features are recomputed")
            return None
        if Path(manifest.get("gallery_root", "")) != root:
            report.notes.append(f"gallery changed from {manifest.get('gallery_root')}: "
                                "unchanged files are recognised by content hash only")
        entries = {e.path: e for e in catalog.read_all(version / "catalog.sqlite")}
        emb = np.load(version / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        hist = np.load(version / "histograms.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, IndexFormatError, KeyError) as exc:
        report.notes.append(f"previous index not reusable ({exc}): full rebuild")
        return None
    if Path(manifest.get("gallery_root", "")) != root:
        entries = {p: catalog.Entry(path="\0" + p, row=e.row, sha256=e.sha256)
                   for p, e in entries.items() if e.row is not None}
    return _Prev(version, entries, emb, hist)


class _WorkStore:
    """Features computed by this (or an interrupted) build, saved in chunk files by hash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.where: dict[str, tuple[Path, int]] = {}
        self.meta: dict[str, dict] = {}
        for f in sorted(folder.glob("chunk-*.npz")):
            try:
                with np.load(f, allow_pickle=False) as z:
                    for i, (sha, meta) in enumerate(zip(z["sha"], z["meta"], strict=True)):
                        self.where[str(sha)] = (f, i)
                        self.meta[str(sha)] = json.loads(str(meta))
            except (OSError, ValueError, KeyError):
                f.unlink(missing_ok=True)  # a chunk cut short by a crash: recompute it
        self.resumable = set(self.where)
        self._pending: list[tuple[FileResult, np.ndarray]] = []
        self._count = len(list(folder.glob("chunk-*.npz")))
        self._last = time.monotonic()

    def add(self, results: list[FileResult], vectors: np.ndarray) -> None:
        self._pending += list(zip(results, vectors, strict=True))
        if len(self._pending) >= FLUSH_EVERY or time.monotonic() - self._last > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self._count += 1
        f = self.folder / f"chunk-{self._count:06d}.npz"
        tmp = f.with_suffix(".tmp.npz")
        res = [r for r, _ in self._pending]
        meta = [json.dumps({k: getattr(r, k) for k in ("format", "mode", "width", "height",
                                                       "exif")}) for r in res]
        np.savez(tmp, sha=np.array([r.sha256 for r in res]), meta=np.array(meta),
                 emb=np.stack([v for _, v in self._pending]).astype(np.float32),
                 hist=np.stack([r.hist for r in res]).astype(np.float32))
        os.replace(tmp, f)
        for i, r in enumerate(res):
            self.where[r.sha256] = (f, i)
            self.meta[r.sha256] = json.loads(meta[i])
        self._pending = []
        self._last = time.monotonic()

    def chunks(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        for f in sorted(self.folder.glob("chunk-*.npz")):
            with np.load(f, allow_pickle=False) as z:
                yield [str(s) for s in z["sha"]], z["emb"], z["hist"]


def _results(todo: list[tuple[str, str, int, int, int]], workers: int,
             known: frozenset[str], inflight: int) -> Iterator[FileResult]:
    """Process files in worker processes with bounded look-ahead (or in this process)."""
    if workers <= 0 or len(todo) < 2 * TASK_FILES:
        for t in todo:
            yield process(*t, known=known)
        return
    tasks = [todo[i:i + TASK_FILES] for i in range(0, len(todo), TASK_FILES)]
    ctx = mp.get_context("spawn")  # safe beside torch threads and Streamlit's threads
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                             initargs=(known,)) as pool:
        pending: deque[Future] = deque()
        it = iter(tasks)
        for t in it:
            pending.append(pool.submit(process_many, t))
            if len(pending) >= inflight:
                break
        while pending:
            done = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(process_many, nxt))
            yield from done


def _run(root: Path, index_dir: Path, emb: Embedder, prev: _Prev | None, work: Path,
         workers: int | None, batch_size: int, pca_components: int, report: BuildReport,
         progress: Callable[[Progress], None] | None, t0: float) -> None:
    files = []
    for path in images.scan(root):
        try:
            st = path.stat()
        except OSError:
            continue
        files.append((str(path), path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    if not files:
        raise ImgrecError(f"no images found in {root} (looked for "
                          f"{', '.join(sorted(images.SUFFIXES))})")
    ws = _WorkStore(work)
    prev_entries = prev.entries if prev else {}
    prev_sha = {e.sha256: e for e in prev_entries.values() if e.row is not None}
    final: dict[str, catalog.Entry] = {}
    source: dict[str, tuple[str, int]] = {}  # path -> ("prev", row) | ("work", 0)
    todo = []
    for path, rel, size, mtime in files:
        old = prev_entries.get(rel)
        if old and old.size == size and old.mtime_ns == mtime:
            final[rel] = catalog.Entry(**{**old.__dict__, "row": None})
            if old.row is not None:
                source[rel] = ("prev", old.row)
            report.unchanged += 1
        else:
            todo.append((path, rel, size, mtime, emb.input_size))
    seen = set(final)
    known = frozenset(prev_sha) | frozenset(ws.where)
    total, done = len(files), len(files) - len(todo)
    t_feat = time.perf_counter()
    batch: list[FileResult] = []

    def tick(stage: str = "features") -> None:
        if progress:
            progress(Progress(stage, done, total, time.perf_counter() - t_feat))

    def flush_batch() -> None:
        nonlocal batch
        if batch:
            vecs = emb.embed(np.stack([r.crop for r in batch]))
            ws.add(batch, vecs)
            report.computed += len(batch)
            batch = []

    tick()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    for res in _results(todo, n_workers, known, inflight=max(4, 2 * n_workers + 2)):
        done += 1
        seen.add(res.rel)
        old = prev_entries.get(res.rel)
        entry = catalog.Entry(res.rel, None, res.size, res.mtime_ns, res.sha256, res.format,
                              res.mode, res.width, res.height, res.exif, res.error)
        if res.error:
            report.skipped.append((res.rel, res.error))
        elif res.known or res.sha256 in prev_sha or res.sha256 in ws.where:
            if res.sha256 in prev_sha:
                src = prev_sha[res.sha256]
                source[res.rel] = ("prev", src.row)  # type: ignore[assignment]
                for k in ("format", "mode", "width", "height", "exif"):
                    setattr(entry, k, getattr(src, k))
            else:
                source[res.rel] = ("work", 0)
                for k, v in ws.meta.get(res.sha256, {}).items():
                    setattr(entry, k, v)
                report.resumed += res.sha256 in ws.resumable
        else:
            source[res.rel] = ("work", 0)
            batch.append(res)
            if len(batch) >= batch_size:
                flush_batch()
        if old and not res.error and old.sha256 == res.sha256:
            report.unchanged += 1
        elif old:
            report.updated += 1
        else:
            report.added += 1
        final[res.rel] = entry
        if done % 8 == 0 or done == total:
            tick()
    flush_batch()
    ws.flush()
    tick()
    _count_moves(report, prev_entries, final, source)
    report.removed = sum(1 for p in prev_entries if p not in seen and not p.startswith("\0"))
    _assemble(root, index_dir, emb, prev, ws, final, source, pca_components, report, progress,
              t0)
    shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - t0


def _count_moves(report: BuildReport, prev_entries: dict[str, catalog.Entry],
                 final: dict[str, catalog.Entry], source: dict[str, tuple[str, int]]) -> None:
    """Reclassify added files whose content was at a path that no longer exists as moved."""
    gone = {e.sha256 for p, e in prev_entries.items() if p not in final and e.row is not None}
    for p, e in final.items():
        if p not in prev_entries and e.error is None and e.sha256 in gone:
            report.moved += 1
            report.added -= 1
            gone.discard(e.sha256)


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
        from_prev = [(e.row, source[e.path][1]) for e in entries
                     if e.row is not None and source[e.path][0] == "prev"]
        if from_prev and prev is not None:
            dst, src = (np.array(x) for x in zip(*from_prev, strict=True))
            for s in range(0, len(dst), 8192):
                writer.embeddings[dst[s:s + 8192]] = prev.embeddings[src[s:s + 8192]]
                writer.histograms[dst[s:s + 8192]] = prev.histograms[src[s:s + 8192]]
        want: dict[str, list[int]] = {}
        for e in entries:
            if e.row is not None and source[e.path][0] == "work":
                want.setdefault(e.sha256, []).append(e.row)
        for shas, vecs, hists in ws.chunks():
            for i, sha in enumerate(shas):
                for r in want.pop(sha, ()):
                    writer.embeddings[r] = vecs[i]
                    writer.histograms[r] = hists[i]
        if want:
            raise ImgrecError(f"internal error: features missing for {len(want)} files")
        writer.publish(entries, {"model": emb.name, "gallery_root": str(root),
                                 "pipeline": PIPELINE_VERSION,
                                 "build_seconds": round(time.perf_counter() - t0, 3)},
                       pca_components)
    except BaseException:
        writer.abort()
        raise
    report.version = writer.name
