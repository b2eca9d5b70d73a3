"""Build or sync an index from a gallery folder: scan, features in parallel, publish.

Each image's embedding and, when the backbone has a classifier, its top-5 ImageNet
labels come from one forward pass. Only new or changed files are decoded (size + mtime,
confirmed by content hash); moved files are recognised by hash; skipped files are
retried; computed batches are saved under ``work/`` as they finish, so a killed build
resumes where it stopped. The new version is published atomically; one build runs at a
time per index (``build.lock``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from imgrec import images
from imgrec.build import sync
from imgrec.build.decode import PIPELINE_VERSION, TASK_FILES, FileResult, Task
from imgrec.build.local import LocalFeatures
from imgrec.build.lock import BuildLock
from imgrec.build.publish import publish
from imgrec.build.report import BuildReport, Progress, Tracker
from imgrec.build.workstore import FLUSH_EVERY, FeatureBatch, WorkStore
from imgrec.errors import ImgrecError
from imgrec.features.embedding import DEFAULT_MODEL, CNNEmbedder, Embedder
from imgrec.features.pca import DEFAULT_COMPONENTS
from imgrec.features.recipe import Backbone, Recipe, recipe_for, recipe_named
from imgrec.folders import resolve_path
from imgrec.index.writer import remove_stale_temporaries
from imgrec.settings import Settings

__all__ = ["BATCH_SIZE", "TASK_FILES", "Build", "BuildReport", "Progress", "build_index"]

BATCH_SIZE = 16  # images per CNN forward pass (8 and 16 measure alike on 2 CPU cores)
#: A feature producer (see :class:`~imgrec.build.local.LocalFeatures`): given the files to
#: read and the content hashes already known, yields results and feature batches.
Producer = Callable[[list[Task], frozenset[str]], Iterable[FileResult | FeatureBatch]]


def build_index(gallery: str | os.PathLike, index_dir: str | os.PathLike | None = None, *,
                model: str = DEFAULT_MODEL, embedder: Embedder | None = None,
                weights: str | os.PathLike | None = None, device: str = "auto",
                workers: int | None = None, batch_size: int = BATCH_SIZE,
                pca_components: int = DEFAULT_COMPONENTS, full: bool = False,
                wait: bool = False, progress: Callable[[Progress], None] | None = None,
                producer: Producer | None = None, exclude: Sequence[str] = (),
                ignore_file: str | None = images.IGNORE_FILE,
                max_megapixels: float = images.MAX_MEGAPIXELS,
                shards: int | None = None,
                recipe: str | None = None) -> BuildReport:
    """Index (or re-sync) every image under ``gallery`` into ``index_dir``.

    On an existing index this is a sync: files whose size and mtime are unchanged are
    reused as they are; other files are hashed, and content already indexed (touched or
    moved files) is reused without decoding; only new content is decoded and embedded.
    Files skipped earlier are retried. Computed batches are saved under
    ``index_dir/work/`` as they finish, so a killed build resumes where it stopped.

    Args:
        gallery: folder scanned recursively for images (:data:`imgrec.images.SUFFIXES`:
            JPEG, PNG, BMP, GIF, WebP, TIFF, AVIF, JPEG 2000, HEIC/HEIF, camera RAW).
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
        producer: computes the features of the files to compute (default: decode worker
            processes and the embedder here; ``RayFeatures`` computes them on a Ray
            cluster, see :mod:`imgrec.build.ray_producer`).
        exclude: gitignore-syntax patterns of files and folders to leave out (relative
            to the gallery), applied after the ``ignore_file`` rules.
        ignore_file: the rules file read at the gallery root (None: none is read).
        max_megapixels: larger images are skipped, with a reason naming the option.
        shards: make a new collection as a sharded index of this many shards in
            ``index_dir`` (the layout ``imgrec shard split`` writes, for
            :class:`~imgrec.shard.sharded.ShardedIndex`; a killed build resumes); None
            (default): an ordinary index. When ``index_dir`` already is a sharded index,
            this is a sync of every shard (see :mod:`imgrec.build.shardsync`; ``shards``
            may be None or its shard count).
        recipe: the embedding recipe (:data:`imgrec.features.recipe.RECIPES`; default: the
            backbone's, ``v3`` for EfficientNet-Lite, ``v1`` for ResNet50). An index built
            with another recipe is recomputed, and the report's notes say so.

    Returns:
        A :class:`BuildReport`.

    Raises:
        ImgrecError: the gallery is missing or empty, or holds no readable image; the
            previous index is then left as it was.
        BuildLockedError: another build of this index is running.

    Example:
        >>> report = build_index("photos", "photos-index")
        >>> print(report.summary())
        indexed 38 images from .../photos into .../photos-index (efficientnet-lite0) in ... s
        added 0, updated 0, moved 0, removed 0, unchanged 38, skipped 0
    """
    def run(target: str | os.PathLike | None, kind: type[Build] = Build) -> BuildReport:
        return kind(gallery, target, model=model, embedder=embedder, weights=weights,
                     device=device, workers=workers, batch_size=batch_size,
                     pca_components=pca_components, full=full, wait=wait, progress=progress,
                     producer=producer, exclude=exclude, ignore_file=ignore_file,
                     max_megapixels=max_megapixels, recipe=recipe).run()

    from imgrec.build.sharded import build_sharded, sharded_sync

    if sharded_sync(index_dir, shards):  # an existing sharded index: sync every shard
        from imgrec.build.shardsync import ShardedBuild

        return run(index_dir, ShardedBuild)
    if shards is None:
        return run(index_dir)
    return build_sharded(index_dir, shards, run)


def flush_every() -> int:
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


class Build:
    """One build of an index: parameters stored here, the work done by :meth:`run`.

    The parameters are those of :func:`build_index`. ``producer`` replaces the local
    decode workers + CNN by another source of features (the same results and
    :class:`~imgrec.build.workstore.FeatureBatch` stream); everything around it — scan,
    diff, work store, resume, publish — stays the same.
    """

    def __init__(self, gallery: str | os.PathLike, index_dir: str | os.PathLike | None = None,
                 *, model: str = DEFAULT_MODEL, embedder: Embedder | None = None,
                 weights: str | os.PathLike | None = None, device: str = "auto",
                 workers: int | None = None, batch_size: int = BATCH_SIZE,
                 pca_components: int = DEFAULT_COMPONENTS, full: bool = False,
                 wait: bool = False, progress: Callable[[Progress], None] | None = None,
                 producer: Producer | None = None, exclude: Sequence[str] = (),
                 ignore_file: str | None = images.IGNORE_FILE,
                 max_megapixels: float = images.MAX_MEGAPIXELS,
                 recipe: str | None = None) -> None:
        self.gallery = gallery
        self.index_dir = index_dir
        self.model = model
        self.embedder = embedder
        self.weights = weights
        self.device = device
        self.workers = workers
        self.batch_size = batch_size
        self.pca_components = pca_components
        self.full = full
        self.wait = wait
        self.progress = progress
        self.producer = producer
        self.exclude = exclude
        self.ignore_file = ignore_file
        self.max_megapixels = max_megapixels
        self.recipe = recipe

    def run(self) -> BuildReport:
        """Scan, compute what is missing, publish; returns the :class:`BuildReport`."""
        t0 = time.perf_counter()
        root = resolve_path(self.gallery)
        index_dir = resolve_path(self.index_dir or Settings.from_env().index_dir)
        if not root.is_dir():
            raise ImgrecError(f"gallery folder not found: {self.gallery}")
        if index_dir == root or images.is_within(index_dir, root):
            raise ImgrecError(f"the index directory {index_dir} must not lie inside the gallery")
        every = flush_every()
        exclude = [self.exclude] if isinstance(self.exclude, str) else list(self.exclude)
        mp = self.max_megapixels
        if (not isinstance(mp, int | float) or isinstance(mp, bool) or not mp > 0
                or mp == float("inf")):
            raise ImgrecError(f"max_megapixels must be a positive number, not {mp!r}")
        emb = self.embedder or CNNEmbedder(self.model, weights=self.weights, device=self.device,
                                           batch_size=self.batch_size)
        recipe = self._recipe(emb.name, index_dir)
        emb = Backbone(emb, recipe)  # the recipe's pools (its dim); finished as stored
        report = BuildReport(gallery=root, index_dir=index_dir, model=emb.name)
        with BuildLock(index_dir, wait=self.wait):
            remove_stale_temporaries(index_dir)
            work = (index_dir / "work"
                    / f"{_safe(emb.name)}-{recipe.name}-p{PIPELINE_VERSION}")
            prev = self._previous(index_dir, root, emb, recipe, work, report)
            ws = WorkStore(work, emb.dim, every)
            plan = sync.plan(root, prev, emb.input_size, exclude=exclude,
                             ignore_file=self.ignore_file, max_megapixels=self.max_megapixels,
                             framing=recipe.framing)
            self._features(plan, prev, ws, emb, recipe, report)
            ws.flush()
            counts = plan.counts(prev)
            for k, v in counts.items():
                setattr(report, k, v)
            self._publish(root, index_dir, plan, prev, ws, emb, recipe, report, t0)
            ws.discard()
        report.seconds = time.perf_counter() - t0
        return report

    def _recipe(self, model: str, index_dir: Path) -> Recipe:
        """The recipe asked for, else the backbone's default (a new build's)."""
        return recipe_for(model) if self.recipe is None else recipe_named(self.recipe)

    def _previous(self, index_dir: Path, root: Path, emb: Embedder, recipe: Recipe,
                  work: Path, report: BuildReport) -> sync.Previous | None:
        """The published version to sync against (None: compute everything)."""
        if self.full:
            report.notes.append("full rebuild: every image is recomputed")
            shutil.rmtree(work, ignore_errors=True)
            return None
        return sync.previous(index_dir, root, emb, report.notes, recipe.name)

    def _features(self, plan: sync.Plan, prev: sync.Previous | None, ws: WorkStore,
                  emb: Embedder, recipe: Recipe, report: BuildReport) -> None:
        """Read every file of ``plan.todo``; store the features of new content in ``ws``
        (the producer's backbone vectors, finished by ``recipe``)."""
        known = frozenset(prev.by_sha if prev else ()) | ws.resumable
        waiting: Counter[str] = Counter()  # files per content hash waiting for features
        tracker = Tracker(self.progress, plan.total, plan.total - len(plan.todo))
        workers = (os.cpu_count() or 1) if self.workers is None else self.workers
        producer = self.producer or LocalFeatures(emb, workers, self.batch_size)
        for_recipe = getattr(producer, "for_recipe", None)
        if callable(for_recipe):  # a producer that embeds elsewhere (Ray) pools as we do
            producer = for_recipe(recipe.name)
        tracker.tick()
        for item in producer(plan.todo, known):
            if isinstance(item, FeatureBatch):
                tracker.finish(self._store(item, plan, ws, waiting, recipe, report))
                continue
            where = plan.record(item, prev, ws.meta)
            if where == "resumed":
                report.resumed += 1
            if where == "work" and item.sha256 not in ws:
                waiting[item.sha256] += 1  # done once its features are stored
            else:
                tracker.finish(1)
        tracker.finish(sum(waiting.values()), final=True)  # a producer that left some out

    def _store(self, batch: FeatureBatch, plan: sync.Plan, ws: WorkStore,
               waiting: Counter[str], recipe: Recipe, report: BuildReport) -> int:
        """Keep a batch's finite rows, finished by ``recipe``; skip the files whose
        embedding failed. Returns the number of files this batch finished."""
        report.computed += len(batch)
        ok = np.isfinite(batch.embeddings).all(1)
        if not ok.all():  # every file with that content is skipped
            plan.fail({s for s, g in zip(batch.shas, ok, strict=True) if not g},
                      "embedding failed: the model returned NaN or inf")
        keep = np.flatnonzero(ok)
        ws.add(FeatureBatch([batch.shas[i] for i in keep], [batch.meta[i] for i in keep],
                            recipe.finish(batch.embeddings[keep]), batch.histograms[keep],
                            None if batch.top5 is None else batch.top5[keep],
                            None if batch.prob5 is None else batch.prob5[keep]))
        return sum(waiting.pop(s, 0) for s in batch.shas)

    def _publish(self, root: Path, index_dir: Path, plan: sync.Plan,
                 prev: sync.Previous | None, ws: WorkStore, emb: Embedder, recipe: Recipe,
                 report: BuildReport, t0: float) -> None:
        entries = plan.numbered()
        report.indexed = sum(1 for e in entries if e.row is not None)
        if report.indexed == 0:
            reasons = "; ".join(f"{p}: {w}" for p, w in report.skipped[:3])
            raise ImgrecError(f"none of the {len(entries)} files in {root} could be read "
                              f"({reasons}); the previous index is unchanged")
        t_write = time.perf_counter()
        if self.progress:
            self.progress(Progress("write", 0, report.indexed, 0.0))
        manifest = {"model": emb.name, "gallery_root": str(root), "pipeline": PIPELINE_VERSION,
                    "recipe": recipe.name, "build_seconds": round(time.perf_counter() - t0, 3)}
        report.version, notes = publish(index_dir, entries, plan, prev, ws, emb.dim, manifest,
                                        self.pca_components)
        report.notes += notes
        if self.progress:  # published: every row is written
            self.progress(Progress("write", report.indexed, report.indexed,
                                   time.perf_counter() - t_write))
        _calibrate(index_dir)


def _calibrate(index_dir: Path) -> None:
    """Measure what the default search's scores mean in this gallery, once per version
    (:mod:`imgrec.search.calibration`), so the first search does not wait for it."""
    import contextlib

    from imgrec.index.index import Index
    from imgrec.search.calibration import calibrate

    # the index is published either way; a search measures what is missing later
    with contextlib.suppress(ImgrecError, OSError):
        calibrate(Index.open(index_dir))
