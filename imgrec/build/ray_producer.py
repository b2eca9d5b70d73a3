"""The distributed feature producer: a Ray Dataset of the files, decoded in CPU tasks and
embedded by an actor pool, streamed back into the build's work store.

The gallery must be readable at the same path on every node (a shared filesystem).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.build.decode import TASK_FILES, FileResult, Task, process_safe
from imgrec.build.local import embed_with_labels
from imgrec.build.workstore import META, FeatureBatch
from imgrec.features.color import DIM as HIST_DIM
from imgrec.features.embedding import DEFAULT_MODEL, CNNEmbedder, Embedder
from imgrec.features.recipe import Backbone, max_side, recipe_for, recipe_named
from imgrec.index.writer import LABEL_TOP

_TEXT = ("rel", "sha256", "format", "mode", "exif", "decoder", "error")
_INTS = ("size", "mtime_ns", "width", "height")
DECODE_MEMORY = 256 * 2**20  # bytes a decode task asks of its node


@dataclass(frozen=True)
class EmbedderSpec:
    """How each CNN actor makes its embedder (picklable; the weights load in the actor)."""

    model: str = DEFAULT_MODEL
    weights: str | None = None
    device: str = "auto"
    batch_size: int = 16
    recipe: str | None = None  # the build's (None: the backbone's default)

    def __call__(self) -> Embedder:
        base = CNNEmbedder(self.model, weights=self.weights, device=self.device,
                           batch_size=self.batch_size)
        recipe = recipe_for(self.model) if self.recipe is None else recipe_named(self.recipe)
        return Backbone(base, recipe).load()  # the recipe's pools, finished by the builder


def decode_batch(batch: dict[str, np.ndarray], known: frozenset[str]) -> dict[str, np.ndarray]:
    """A CPU task: read, hash and decode a few files (columns of :class:`FileResult`)."""
    n = len(batch["rel"])
    side = int(batch["crop_size"][0]) if n else 1
    out: dict[str, Any] = {k: [] for k in (*_TEXT, *_INTS, "known")}
    # one canvas per file, as large as the framing's largest input; its own input's shape
    # rides along (the ``aspect`` framing gives each image its own)
    canvas = max_side(str(batch["framing"][0]), side) if n else 1
    crops = np.zeros((n, canvas, canvas, 3), np.uint8)
    shapes = np.zeros((n, 2), np.int64)
    hists = np.zeros((n, HIST_DIM), np.float32)
    decoded = np.zeros(n, bool)
    for i in range(n):
        res = process_safe(Task(str(batch["path"][i]), str(batch["rel"][i]),
                                int(batch["size"][i]), int(batch["mtime_ns"][i]), side,
                                float(batch["max_megapixels"][i]), str(batch["framing"][i])),
                         known)
        for k in (*_TEXT, *_INTS, "known"):
            v = getattr(res, k)
            out[k].append("" if v is None else v)
        if res.crop is not None and res.hist is not None:
            h, w = res.crop.shape[:2]
            crops[i, :h, :w], shapes[i], hists[i], decoded[i] = res.crop, (h, w), res.hist, True
    cols = {k: np.array(v, dtype=object) for k, v in out.items() if k in _TEXT}
    cols.update({k: np.array(out[k], np.int64) for k in _INTS})
    cols.update(known=np.array(out["known"], bool), decoded=decoded, crop=crops,
                crop_shape=shapes, hist=hists)
    return cols


class EmbedStage:
    """An actor of the CNN pool: loads the backbone once, embeds each batch's new contents
    (the first file of each content hash) and passes the other columns on, crops dropped."""

    def __init__(self, make: EmbedderSpec) -> None:
        self.emb = make()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["rel"])
        first: dict[str, int] = {}
        for i in np.flatnonzero(batch["decoded"] & ~batch["known"]):
            first.setdefault(str(batch["sha256"][i]), int(i))
        rows = np.array(sorted(first.values()), np.int64)
        out = {k: v for k, v in batch.items() if k not in ("crop", "crop_shape")}
        emb = np.zeros((n, self.emb.dim), np.float32)
        top5 = np.full((n, LABEL_TOP), -1, np.int16)
        prob5 = np.zeros((n, LABEL_TOP), np.float32)
        labelled = False
        if len(rows):
            crops = [batch["crop"][i, :h, :w] for i, (h, w) in zip(rows, batch["crop_shape"][rows],
                                                                    strict=True)]
            same = len({c.shape for c in crops}) == 1
            vecs, t5, p5 = embed_with_labels(self.emb, np.stack(crops) if same else crops)
            emb[rows] = vecs
            if t5 is not None and p5 is not None:
                top5[rows], prob5[rows], labelled = t5, p5, True
        embedded = np.zeros(n, bool)
        embedded[rows] = True
        out.update(emb=emb, top5=top5, prob5=prob5, embedded=embedded,
                   labelled=np.full(n, labelled))
        return out


class RayFeatures:
    """Computes the features of a build on a Ray cluster (a :data:`~imgrec.build.builder.Producer`).

    The files to compute become a Ray Dataset; decoding + colour histogram run as CPU
    tasks (:func:`decode_batch`), the CNN as a pool of actors (:class:`EmbedStage`, one
    GPU each where the cluster has GPUs); results stream back batch by batch (nothing
    materialises the gallery) and go into the same work store as the local build's, so
    a killed build resumes with either path.

    Args:
        address: the Ray cluster (``auto``, ``ray://host:10001``), or None to join the
            session open in this process or start a local one with this machine's cores.
        model, weights, device: the backbone each actor loads (see :class:`CNNEmbedder`).
        batch_size: images per forward pass.
        actors: CNN actors (default: one per GPU, else one per four CPUs, at least one).
        num_cpus: local cores when a local Ray is started (default: all).

    Example:
        On a running Ray cluster (skipped as a test: none is running there):

        >>> Build("photos", "idx", producer=RayFeatures("auto")).run()   # doctest: +SKIP
    """

    def __init__(self, address: str | None = None, *, model: str = DEFAULT_MODEL,
                 weights: str | os.PathLike | None = None, device: str = "auto",
                 batch_size: int = 16, actors: int | None = None,
                 num_cpus: int | None = None) -> None:
        self.address = address
        self.spec = EmbedderSpec(model, None if weights is None else str(weights), device,
                                 batch_size)
        self.batch_size = batch_size
        self.actors = actors
        self.num_cpus = num_cpus

    def __call__(self, todo: list[Task], known: frozenset[str]
                 ) -> Iterator[FileResult | FeatureBatch]:
        from imgrec.shard.cluster import quiet_data, session

        if not todo:
            return
        with session(self.address, self.num_cpus):
            quiet_data()
            seen: set[str] = set(known)
            for batch in self._dataset(todo, known).iter_batches(batch_size=None,
                                                                 batch_format="numpy"):
                yield from _results(batch)
                fb = _features(batch, seen)
                if fb is not None:
                    yield fb

    def for_recipe(self, recipe: str) -> RayFeatures:
        """This producer with its actors pooling as ``recipe`` does (the build calls it)."""
        from dataclasses import replace

        other = copy.copy(self)
        other.spec = replace(self.spec, recipe=recipe)
        return other

    def pool(self) -> tuple[int, float, float]:
        """(CNN actors, GPUs per actor, CPUs per actor) for the connected cluster.

        CPU actors together leave at least one CPU to the decode tasks (else these would
        wait for one forever); GPU actors ask for no CPU.
        """
        import ray

        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
        if self.actors is not None:
            actors = self.actors
            if gpus >= actors:
                return actors, 1.0, 0.0
        elif gpus:
            return gpus, 1.0, 0.0
        else:
            actors = max(1, int(cpus) // 4)
        return actors, 0.0, min(1.0, max(cpus - 1, 0.5) / actors)

    def _dataset(self, todo: list[Task], known: frozenset[str]) -> Any:
        import ray

        actors, gpus, cpus = self.pool()
        blocks = max(1, min(len(todo) // TASK_FILES, 1024))
        ds = ray.data.from_items([t._asdict() for t in todo], override_num_blocks=blocks)
        # memory: room to decode a large image (and, asked by this stage only, it keeps
        # Ray Data from fusing the decode tasks into the CNN actors). Beside fractional
        # CPU actors a decode task asks for the same fraction: it then fits beside an
        # actor on any node (a whole CPU might be free on none).
        ds = ds.map_batches(decode_batch, batch_size=TASK_FILES, batch_format="numpy",
                            fn_kwargs={"known": known}, num_cpus=cpus if 0 < cpus < 1 else 1,
                            memory=DECODE_MEMORY)
        return ds.map_batches(EmbedStage, fn_constructor_args=(self.spec,),
                              batch_size=self.batch_size, batch_format="numpy",
                              compute=ray.data.ActorPoolStrategy(size=actors),
                              num_gpus=gpus or None,
                              num_cpus=cpus or None)


def _results(batch: dict[str, np.ndarray]) -> Iterator[FileResult]:
    """The :class:`FileResult` of each file in a streamed batch (no crop kept)."""
    for i in range(len(batch["rel"])):
        res = FileResult(str(batch["rel"][i]), int(batch["size"][i]), int(batch["mtime_ns"][i]))
        for k in ("sha256", "format", "mode", "exif", "decoder"):
            setattr(res, k, str(batch[k][i]))
        res.width, res.height = int(batch["width"][i]), int(batch["height"][i])
        res.error = str(batch["error"][i]) or None
        res.known = bool(batch["known"][i])
        yield res


def _features(batch: dict[str, np.ndarray], seen: set[str]) -> FeatureBatch | None:
    """The batch's embedded rows whose content no earlier batch delivered."""
    rows = [i for i in np.flatnonzero(batch["embedded"]) if str(batch["sha256"][i]) not in seen]
    if not rows:
        return None
    shas = [str(batch["sha256"][i]) for i in rows]
    seen.update(shas)
    meta = [{k: (int(batch[k][i]) if k in _INTS else str(batch[k][i])) for k in META}
            for i in rows]
    labelled = bool(batch["labelled"][rows].any())
    return FeatureBatch(shas, meta, np.asarray(batch["emb"][rows], np.float32),
                        np.asarray(batch["hist"][rows], np.float32),
                        np.asarray(batch["top5"][rows], np.int16) if labelled else None,
                        np.asarray(batch["prob5"][rows], np.float32) if labelled else None)
