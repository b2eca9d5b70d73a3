"""Export the index: TensorBoard projector files, and the catalog as CSV with labels and clusters.

``export_projector`` writes what TensorBoard's projector plugin and the standalone
projector (projector.tensorflow.org) load::

    OUT_DIR/tensors.tsv              one embedding per line, tab-separated
    OUT_DIR/metadata.tsv             header "path<TAB>label<TAB>cluster", one line per tensor row
    OUT_DIR/sprite.png               the images' thumbnails in a grid, row-major, <= 8192 px
    OUT_DIR/projector_config.pbtxt   for TensorBoard (``tensorboard --logdir OUT_DIR``)
    OUT_DIR/projector_config.json    the same for the standalone projector

Nothing is written inside the gallery, and no gallery file is modified.

Example:
    >>> export_projector(idx, "projector", sample=5000).dim
    1584
    >>> export_csv(idx, "catalog.csv")
    PosixPath('catalog.csv')
"""

from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.errors import ImageError, ImgrecError
from imgrec.folders import resolve_path
from imgrec.insights.clusters import DEFAULT_K, ClusterResult, clusters
from imgrec.insights.graph import sample_rows
from imgrec.insights.labels import name_of

if TYPE_CHECKING:
    from imgrec.index.index import Index

DEFAULT_SAMPLE = 10_000
SPRITE_MAX = 8192  # TensorBoard's limit on the sprite's side
THUMB_MAX = 100  # thumbnail side when the sprite has room
CSV_COLUMNS = ("path", "row", "size", "mtime_ns", "sha256", "format", "mode", "width", "height",
               "error", "label", "label_probability", "labels_top5", "cluster")


@dataclass(frozen=True)
class ProjectorExport:
    """What :func:`export_projector` wrote."""

    out_dir: Path
    rows: np.ndarray  # index rows exported, in tensor order
    dim: int  # embedding dimension
    thumb: int  # side of each sprite cell (pixels)
    sprite_size: tuple[int, int]  # (width, height) of sprite.png
    unreadable: int  # thumbnails left blank (grey) because the file could not be read

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / f for f in ("tensors.tsv", "metadata.tsv", "sprite.png",
                                           "projector_config.pbtxt", "projector_config.json")]


def sprite_geometry(n: int, thumb_max: int = THUMB_MAX) -> tuple[int, int]:
    """(columns, cell side) of a square sprite for ``n`` images within SPRITE_MAX px."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return cols, max(1, min(int(thumb_max), SPRITE_MAX // cols))


def _tsv(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").split()) or "-"


def _refuse_gallery(index: Index, path: Path) -> None:
    if images.is_within(resolve_path(path), index.root.resolve()):
        raise ImgrecError(f"refusing to write {path} inside the gallery {index.root}: imgrec "
                          "never adds files to your gallery; choose another folder")


def export_projector(index: Index, out_dir: str | os.PathLike, *,
                     sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                     k_clusters: int = DEFAULT_K, cluster_result: ClusterResult | None = None,
                     thumb_max: int = THUMB_MAX, workers: int = 4) -> ProjectorExport:
    """Write embeddings, metadata and a sprite in TensorBoard projector format.

    Args:
        index: an opened index.
        out_dir: folder to write into (created if missing, inside a folder that exists;
            must not lie inside the gallery).
        sample: export at most this many images, drawn at random with ``seed`` (None or
            0: all). Default 10,000, which keeps the sprite's cells at 81 px or more.
        k_clusters: K-means clusters for the ``cluster`` column (on the whole index),
            unless ``cluster_result`` gives them.
        thumb_max: largest sprite cell side.
        workers: threads decoding thumbnails.

    Returns:
        A :class:`ProjectorExport`.
    """
    out = Path(out_dir)
    _refuse_gallery(index, out)
    n = len(index)
    if n == 0:
        raise ImgrecError("the index is empty: nothing to export")
    rows = sample_rows(n, int(sample) if sample else n, seed)
    res = cluster_result or clusters(index, k_clusters, seed=seed)
    paths = index.paths(rows)
    out.mkdir(exist_ok=True)  # OUT_DIR itself, never a folder above it
    emb = np.asarray(index.embeddings[rows], dtype=np.float32)
    with open(out / "tensors.tsv", "w", encoding="utf-8") as fh:
        for s in range(0, len(emb), 1024):
            fh.write("\n".join("\t".join(f"{v:.6g}" for v in r) for r in emb[s:s + 1024].tolist()))
            fh.write("\n")
    names = ([name_of(int(c)) for c in np.asarray(index.labels_top5[rows, 0])]
             if index.labels_top5 is not None else [""] * len(rows))
    with open(out / "metadata.tsv", "w", encoding="utf-8") as fh:
        fh.write("path\tlabel\tcluster\n")
        for p, lab, c in zip(paths, names, res.labels[rows], strict=True):
            fh.write(f"{_tsv(p)}\t{_tsv(lab or 'unknown')}\t{int(c)}\n")
    cols, thumb = sprite_geometry(len(rows), thumb_max)
    sprite, bad = _sprite(index, paths, cols, thumb, workers)
    sprite.save(out / "sprite.png", optimize=False)
    name = f"imgrec {index.model}"
    (out / "projector_config.pbtxt").write_text(
        "embeddings {\n"
        f'  tensor_name: "{name}"\n'
        '  tensor_path: "tensors.tsv"\n'
        '  metadata_path: "metadata.tsv"\n'
        "  sprite {\n"
        '    image_path: "sprite.png"\n'
        f"    single_image_dim: {thumb}\n"
        f"    single_image_dim: {thumb}\n"
        "  }\n"
        "}\n", encoding="utf-8")
    (out / "projector_config.json").write_text(json.dumps({"embeddings": [{
        "tensorName": name, "tensorShape": [len(rows), int(emb.shape[1])],
        "tensorPath": "tensors.tsv", "metadataPath": "metadata.tsv",
        "sprite": {"imagePath": "sprite.png", "singleImageDim": [thumb, thumb]}}]}, indent=2)
        + "\n", encoding="utf-8")
    return ProjectorExport(out, rows, int(emb.shape[1]), thumb, sprite.size, bad)


def _sprite(index: Index, paths: list[str], cols: int, thumb: int,
            workers: int) -> tuple[Image.Image, int]:
    n = len(paths)
    rows_used = math.ceil(n / cols)
    sprite = Image.new("RGB", (cols * thumb, rows_used * thumb), (255, 255, 255))

    def cell(path: str) -> Image.Image | None:
        try:
            rgb, _ = images.load_image(index.resolve(path))
        except (ImageError, OSError, ImgrecError):
            return None
        rgb = rgb.copy()
        rgb.thumbnail((thumb, thumb), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return rgb

    bad = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, im in enumerate(pool.map(cell, paths)):
            x0, y0 = (i % cols) * thumb, (i // cols) * thumb
            if im is None:
                bad += 1
                sprite.paste((200, 200, 200), (x0, y0, x0 + thumb, y0 + thumb))
                continue
            sprite.paste(im, (x0 + (thumb - im.width) // 2, y0 + (thumb - im.height) // 2))
    return sprite, bad


def export_csv(index: Index, out_csv: str | os.PathLike, *, k_clusters: int = DEFAULT_K,
               seed: int = 0, cluster_result: ClusterResult | None = None) -> Path:
    """Write the catalog (every gallery file, skipped ones with their reason) as CSV, with
    each indexed image's top label, its probability, its top-5 labels (``name:prob;...``)
    and its K-means cluster. Columns: :data:`CSV_COLUMNS`. Returns the path."""
    path = Path(out_csv)
    _refuse_gallery(index, path)
    entries = index.entries()
    res = cluster_result or (clusters(index, k_clusters, seed=seed) if len(index) else None)
    top5 = np.asarray(index.labels_top5) if index.labels_top5 is not None else None
    prob5 = np.asarray(index.labels_prob5) if index.labels_prob5 is not None else None
    with open(path, "w", newline="", encoding="utf-8") as fh:  # no folder is created
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for e in entries:
            label, prob, five, cluster = "", "", "", ""
            if e.row is not None:
                if top5 is not None and prob5 is not None and top5[e.row, 0] >= 0:
                    label, prob = name_of(int(top5[e.row, 0])), f"{prob5[e.row, 0]:.6f}"
                    five = ";".join(f"{name_of(int(c))}:{p:.4f}"
                                    for c, p in zip(top5[e.row], prob5[e.row], strict=True)
                                    if c >= 0)
                if res is not None:
                    cluster = str(int(res.labels[e.row]))
            w.writerow([e.path, "" if e.row is None else e.row, e.size, e.mtime_ns, e.sha256,
                        e.format, e.mode, e.width, e.height, e.error or "", label, prob, five,
                        cluster])
    return path
