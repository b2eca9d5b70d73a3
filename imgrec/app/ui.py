"""Logic behind the dashboard pages, free of Streamlit: uploads, grids, projections, builds.

Everything here is plain Python over the public imgrec API so it can be unit-tested; the
Streamlit glue (caches, widgets, session state) lives in :mod:`imgrec.app.support`.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import itertools
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgrec import images
from imgrec.build import lock
from imgrec.build.builder import Progress, build_index
from imgrec.errors import BuildLockedError, ImageError, ImgrecError
from imgrec.features.pca import PCAModel, fit_pca
from imgrec.index import catalog
from imgrec.index.index import Index, Stored
from imgrec.search.rank import MAX_QUERIES, Hit, SearchResult

_log = logging.getLogger(__name__)

#: Search methods as the dashboard names them.
METHOD_LABELS = {"embedding": "Embedding (content)", "color": "Colour histogram (chi-square)",
                 "pca": "PCA colour (cosine)"}
METRIC_LABELS = {"cosine": "Cosine", "euclidean": "Euclidean", "manhattan": "Manhattan",
                 "all": "All three"}
#: Result ranks shown per page of the result grids.
PAGE_SIZE = 10
#: Points drawn on the Explore scatter before the gallery is sampled.
MAX_POINTS = 20_000
#: Distinct colours on the scatter before the rarest folders are merged into "other".
MAX_GROUPS = 24
THUMB_SIZE = 256
#: Upload size limit (bytes) checked before decoding (Streamlit enforces its own too).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


# ---- queries and uploads -------------------------------------------------------------------


@dataclass(frozen=True)
class QueryImage:
    """An uploaded query image kept as bytes (survives page switches in session state)."""

    name: str
    data: bytes = field(repr=False)

    @property
    def key(self) -> str:
        """A short content key for caches."""
        return hashlib.sha1(self.data).hexdigest()[:16]

    def as_file(self) -> io.BytesIO:
        """A fresh binary file object named like the upload (what ``Index.search`` takes)."""
        f = io.BytesIO(self.data)
        f.name = self.name
        return f


@dataclass(frozen=True)
class QuerySet:
    """The current queries of one user: uploaded images or stored gallery paths."""

    uploads: tuple[QueryImage, ...] = ()
    stored: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "stored" if self.stored else "upload" if self.uploads else "none"

    def __bool__(self) -> bool:
        return bool(self.uploads or self.stored)

    def __len__(self) -> int:
        return len(self.stored) if self.stored else len(self.uploads)

    def queries(self) -> list[Any]:
        """What to pass to :meth:`Index.search`."""
        if self.stored:
            return [Stored(p) for p in self.stored]
        return [u.as_file() for u in self.uploads]

    def cache_key(self) -> tuple[str, ...]:
        if self.stored:
            return tuple(f"stored:{p}" for p in self.stored)
        return tuple(f"upload:{u.name}:{u.key}" for u in self.uploads)

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> QuerySet:
        """Stored queries (at most five, duplicates dropped, order kept)."""
        return cls(stored=tuple(dict.fromkeys(paths))[:MAX_QUERIES])


@dataclass(frozen=True)
class UploadCheck:
    """Which uploads can be searched, and a message for each one refused."""

    accepted: tuple[QueryImage, ...]
    messages: tuple[str, ...]


def image_problem(data: bytes) -> str | None:
    """Why ``data`` cannot be used as a query image, or None when it decodes."""
    if len(data) > MAX_UPLOAD_BYTES:
        return f"too large ({format_bytes(len(data))}; limit {format_bytes(MAX_UPLOAD_BYTES)})"
    try:
        images.load_image(data)
    except ImageError as exc:
        return str(exc)
    except MemoryError:
        return "too large: out of memory while decoding"
    return None


def _name_and_bytes(f: Any) -> tuple[str, bytes]:
    if isinstance(f, QueryImage):
        return f.name, f.data
    if isinstance(f, tuple):
        return str(f[0]), bytes(f[1])
    data = f.getvalue() if hasattr(f, "getvalue") else f.read()
    return str(getattr(f, "name", "upload")), bytes(data)


def validate_uploads(files: Sequence[Any], problem: Callable[[bytes], str | None] = image_problem
                     ) -> UploadCheck:
    """Check uploads one by one: at most five are kept, each bad file is named with a reason.

    Args:
        files: uploaded files (Streamlit ``UploadedFile``, ``(name, bytes)`` tuples or
            :class:`QueryImage`), in upload order.
        problem: the per-file check (default: decode with :func:`imgrec.images.load_image`).

    Example:
        >>> check = validate_uploads([("a.txt", b"hello")])
        >>> check.accepted, check.messages
        ((), ('a.txt: not an image (unrecognised format)',))
    """
    accepted: list[QueryImage] = []
    messages: list[str] = []
    for f in files:
        name, data = _name_and_bytes(f)
        if len(accepted) == MAX_QUERIES:
            messages.append(f"{name}: not searched — at most {MAX_QUERIES} query images at a "
                            f"time (the first {MAX_QUERIES} valid ones are used)")
            continue
        why = problem(data)
        if why:
            messages.append(f"{name}: {why}")
        else:
            accepted.append(QueryImage(name, data))
    return UploadCheck(tuple(accepted), tuple(messages))


# ---- formatting ----------------------------------------------------------------------------


def format_score(hit: Hit, metric: str) -> str:
    """The value a user reads for a hit: cosine similarity, or the metric's distance."""
    if metric == "all" and hit.metrics:
        m = hit.metrics
        return (f"cos {m.get('cosine', hit.score):.3f} · L2 {m.get('euclidean', float('nan')):.3f}"
                f" · L1 {m.get('manhattan', float('nan')):.2f}")
    if metric in ("cosine", "all"):
        return f"cosine {hit.score:.3f}"
    if metric == "chi2":
        return f"χ² {hit.distance:.4f}"
    digits = 2 if metric == "manhattan" else 3
    return f"{metric} {hit.distance:.{digits}f}"


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_built_at(stamp: str | None) -> str:
    """``2025-11-25T14:49:00Z`` → ``2025-11-25 14:49 UTC``."""
    if not stamp:
        return "unknown"
    return stamp.replace("T", " ")[:16] + (" UTC" if stamp.endswith("Z") else "")


def results_csv(result: SearchResult) -> str:
    """The CSV export of a search (query, rank, path, score, distance, method, metric)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["query", "rank", "path", "score", "distance", "method", "metric"],
                       lineterminator="\n")
    w.writeheader()
    w.writerows(result.to_rows())
    return buf.getvalue()


def card_label(kind: str, head: str, detail: str = "", path: str | None = None) -> str:
    """The HTML line(s) under a thumbnail: a bold head, a detail, and a wrappable path.

    Paths may break after ``/`` (``<wbr>``), never in the middle of a name when avoidable;
    everything is HTML-escaped. ``kind`` (``hit``, ``query``, ``combined``, ``pick``) becomes
    a CSS class.

    Example:
        >>> label = card_label("hit", "#1", "cosine 0.912", "cats/tom.jpg")
        >>> label.startswith('<div class="imgrec-card imgrec-hit"><b>#1</b> · cosine 0.912<br>')
        True
        >>> label.endswith('<span class="imgrec-path">cats/<wbr>tom.jpg</span></div>')
        True
    """
    out = f'<div class="imgrec-card imgrec-{kind}">'
    if head:
        out += f"<b>{html.escape(head)}</b>"
    if detail:
        out += f" · {html.escape(detail)}" if head else html.escape(detail)
    if path is not None:
        out += ("<br>" if head or detail else "") + '<span class="imgrec-path">' + "/<wbr>".join(
            html.escape(p) for p in path.split("/")) + "</span>"
    return out + "</div>"


def page_count(k: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(k / page_size))


def page_of(hits: Sequence[Hit], page: int, page_size: int = PAGE_SIZE) -> list[Hit]:
    """Hits of page ``page`` (0-based); pages past the end are empty."""
    return list(hits[page * page_size:(page + 1) * page_size])


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


# ---- thumbnails ----------------------------------------------------------------------------


#: Letterbox colour of thumbnails (the theme's secondary background).
THUMB_BACKGROUND = (243, 245, 249)


def _encode(im: Any, size: int) -> bytes:
    """JPEG bytes of ``im`` centred on a square canvas, so result grids line up."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), THUMB_BACKGROUND)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def thumbnail_bytes(idx: Index, path: str, size: int = THUMB_SIZE) -> bytes | None:
    """A square JPEG thumbnail of an indexed image, or None when the file is gone or unreadable.

    The path goes through :meth:`Index.resolve`, which refuses anything outside the gallery.
    """
    try:
        return _encode(images.thumbnail(idx.resolve(path), size), size)
    except (ImgrecError, OSError, MemoryError):
        return None


def upload_thumbnail(data: bytes, size: int = THUMB_SIZE) -> bytes | None:
    """A square JPEG thumbnail of uploaded bytes (None when they do not decode)."""
    try:
        rgb, _ = images.load_image(data)
    except (ImageError, MemoryError):
        return None
    rgb = rgb.copy()
    rgb.thumbnail((size, size))
    return _encode(rgb, size)


# ---- index facts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFacts:
    """What the Dataset page and the sidebar show about an opened index."""

    gallery: str
    index_dir: str
    version: str
    model: str
    count: int
    skipped: list[tuple[str, str]]
    formats: dict[str, int]
    embedding_dim: int
    histogram_dim: int
    pca_components: int
    size_bytes: int
    built_at: str
    build_seconds: float | None


def index_facts(idx: Index) -> IndexFacts:
    """Counts, formats, dimensions and disk size of an index (reads its catalog once)."""
    con = catalog.connect(idx.dir / "catalog.sqlite")
    try:
        formats = dict(con.execute("SELECT COALESCE(NULLIF(format, ''), '?'), COUNT(*) FROM images "
                                   "WHERE row IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"))
    finally:
        con.close()
    size = sum(f.stat().st_size for f in idx.dir.rglob("*") if f.is_file())
    m = idx.manifest
    return IndexFacts(gallery=str(idx.root), index_dir=str(idx.index_dir), version=idx.version,
                      model=idx.model, count=len(idx), skipped=idx.skipped(), formats=formats,
                      embedding_dim=int(m["embedding_dim"]), histogram_dim=int(m["histogram_dim"]),
                      pca_components=int(m["pca_components"]), size_bytes=size,
                      built_at=str(m.get("built_at", "")), build_seconds=m.get("build_seconds"))


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


# ---- Explore: projections, clusters, figure ------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """Gallery rows projected on their first principal components."""

    rows: np.ndarray  # (m,) gallery rows drawn, sorted
    coords: np.ndarray  # (m, 3) float32; unused components are zero
    explained: np.ndarray  # (3,) explained variance ratio of PC1..PC3 (zero when absent)
    total: int  # images in the gallery
    pca: PCAModel | None  # None for galleries of fewer than two images

    @property
    def sampled(self) -> bool:
        return len(self.rows) < self.total

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project more feature rows (queries, results) into the same coordinates."""
        out = np.zeros((len(x), 3), np.float32)
        if self.pca is not None and len(x):
            t = self.pca.transform(np.atleast_2d(np.asarray(x, np.float32)))
            out[:, :t.shape[1]] = t
        return out


def sample_rows(n: int, limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """All rows when ``n <= limit``, else a fixed random sample of ``limit`` rows (sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def project(matrix: np.ndarray, limit: int = MAX_POINTS, dims: int = 3) -> Projection:
    """PCA of the rows of ``matrix`` (fitted on a sample above ``limit`` rows).

    Example:
        >>> p = project(np.random.default_rng(0).random((30, 8), dtype=np.float32))
        >>> p.coords.shape, bool(p.explained[0] >= p.explained[1])
        ((30, 3), True)
    """
    n = len(matrix)
    rows = sample_rows(n, limit)
    if len(rows) < 2:
        return Projection(rows, np.zeros((len(rows), 3), np.float32), np.zeros(3), n, None)
    x = np.asarray(matrix[rows], dtype=np.float32)
    pca = fit_pca(x, dims)
    coords = np.zeros((len(rows), 3), np.float32)
    t = pca.transform(x)
    coords[:, :t.shape[1]] = t
    explained = np.zeros(3)
    explained[:pca.n_components] = pca.explained_variance_ratio[:3]
    return Projection(rows, coords, explained, n, pca)


def kmeans_labels(features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K-means cluster of each row (MiniBatchKMeans; ``k`` clipped to the row count)."""
    from sklearn.cluster import MiniBatchKMeans

    x = np.asarray(features, dtype=np.float32)
    k = max(1, min(int(k), len(x)))
    if len(x) == 0:
        return np.zeros(0, np.int64)
    if k == 1:
        return np.zeros(len(x), np.int64)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3,
                         batch_size=min(2048, max(256, len(x))))
    return km.fit_predict(x).astype(np.int64)


def top_folder(path: str) -> str:
    """The top-level folder of a gallery path ("(top level)" for files at the root)."""
    parts = path.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else "(top level)"


def group_labels(values: Sequence[str], max_groups: int = MAX_GROUPS) -> list[str]:
    """Keep the ``max_groups - 1`` most common values; merge the rest into "other"."""
    counts = Counter(values)
    if len(counts) <= max_groups:
        return list(values)
    keep = {v for v, _ in counts.most_common(max_groups - 1)}
    return [v if v in keep else "other" for v in values]


def explained_text(explained: np.ndarray, dims: int) -> str:
    parts = [f"PC{i + 1} {100 * explained[i]:.1f} %" for i in range(dims)]
    return (" · ".join(parts) + f" — {100 * float(np.sum(explained[:dims])):.1f} % of the "
            "variance shown")


@dataclass(frozen=True)
class Highlight:
    """Points drawn on top of the scatter (query images or search results)."""

    name: str
    coords: np.ndarray  # (m, 3)
    labels: list[str]
    rows: list[int]  # gallery row of each point, -1 for uploads (not selectable)
    kind: str  # "query" or "result"


def scatter_figure(proj: Projection, paths: Sequence[str], groups: Sequence[str] | None,
                   highlights: Sequence[Highlight] = (), dims: int = 2,
                   title_prefix: str = "PC", images: Sequence[tuple[float, float, str]] = ()
                   ) -> Any:
    """A plotly scatter (WebGL in 2-D) with one trace per colour group plus highlights.

    Every gallery point carries its row number as ``customdata`` so a box or lasso
    selection maps back to gallery images; the hover text is the file name. Highlights
    of kind ``"rep"`` (cluster representatives) are labelled with their file name;
    ``images`` are ``(x, y, data URI)`` thumbnails drawn at those points (2-D only).
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Dark24 + qualitative.Light24
    three = dims == 3
    traces = []
    labels = list(groups) if groups is not None else ["all images"] * len(proj.rows)
    order = sorted(set(labels), key=_natural)
    if "other" in order:
        order = [g for g in order if g != "other"] + ["other"]
    for gi, g in enumerate(order):
        mask = np.fromiter((lab == g for lab in labels), bool, len(labels))
        sel = np.flatnonzero(mask)
        c = proj.coords[sel]
        marker: dict[str, Any] = {"size": 3 if three else 7, "opacity": 0.8,
                                  "color": "#9aa0a6" if g == "other" or groups is None
                                  else palette[gi % len(palette)]}
        common = {"mode": "markers", "name": g, "customdata": proj.rows[sel].tolist(),
                  "hovertext": [paths[i] for i in sel], "hoverinfo": "text", "marker": marker,
                  "showlegend": groups is not None}
        if three:
            traces.append(go.Scatter3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], **common))
        else:
            traces.append(go.Scattergl(x=c[:, 0], y=c[:, 1], **common))
    # Scatter3d knows only a few symbols (circle, square, diamond, cross, x and -open forms)
    styles = {"query": {"symbol": "diamond" if three else "star", "size": 9 if three else 20,
                        "color": "#e8175d", "line": {"width": 1.5, "color": "#ffffff"}},
              "result": {"symbol": "circle-open", "size": 7 if three else 15, "color": "#111111",
                         "line": {"width": 2.5, "color": "#111111"}},
              "rep": {"symbol": "square", "size": 6 if three else 13, "color": "#ffffff",
                      "line": {"width": 2, "color": "#1f2330"}}}
    for h in highlights:
        if not len(h.coords):
            continue
        common = {"mode": "markers", "name": h.name, "customdata": list(h.rows),
                  "hovertext": list(h.labels), "hoverinfo": "text", "marker": styles[h.kind]}
        if h.kind == "rep":
            common.update(mode="markers+text", textposition="top center",
                          text=[lab.rsplit("/", 1)[-1] for lab in h.labels],
                          textfont={"size": 10, "color": "#1f2330"})
        if three:
            traces.append(go.Scatter3d(x=h.coords[:, 0], y=h.coords[:, 1], z=h.coords[:, 2],
                                       **common))
        else:
            traces.append(go.Scattergl(x=h.coords[:, 0], y=h.coords[:, 1], **common))
    fig = go.Figure(traces)
    ax = [f"{title_prefix}{i + 1} ({100 * proj.explained[i]:.1f} %)" for i in range(3)]
    fig.update_layout(height=600 if not three else 680, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.7)"},
                      hovermode="closest", uirevision="explore")
    if three:
        fig.update_layout(scene={"xaxis_title": ax[0], "yaxis_title": ax[1], "zaxis_title": ax[2]})
    else:
        fig.update_layout(dragmode="lasso", xaxis_title=ax[0], yaxis_title=ax[1])
        if images:
            span = float(np.ptp(proj.coords[:, :2], axis=0).max()) if len(proj.coords) else 1.0
            size = 0.07 * (span or 1.0)
            for x, y, uri in images:
                fig.add_layout_image(source=uri, x=float(x), y=float(y), xref="x", yref="y",
                                     sizex=size, sizey=size, xanchor="center", yanchor="middle",
                                     layer="above", opacity=0.95)
    return fig


def data_uri(jpeg: bytes) -> str:
    """A ``data:`` URI of JPEG bytes (for plotly layout images)."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def representatives(result: Any, proj: Projection, matrix: np.ndarray, paths: Sequence[str]
                    ) -> Highlight:
    """The representatives of an :func:`imgrec.insights.clusters.clusters` result as a scatter
    highlight, projected like the gallery (``paths``: every indexed path in row order)."""
    rows = [int(r) for r in result.representatives]
    coords = proj.transform(np.asarray(matrix[rows])) if rows else np.zeros((0, 3), np.float32)
    return Highlight("representatives", coords, [paths[r] for r in rows], rows, "rep")


def _natural(label: str) -> tuple[int, Any]:
    """Sort "cluster 10" after "cluster 9"."""
    tail = label.rsplit(" ", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, label)


def selected_rows(selection: Any) -> list[int]:
    """Gallery rows of the points in a Streamlit plotly selection event (in order, unique).

    Accepts the whole event (``{"selection": {"points": [...]}}``) or its ``selection``.
    Points without a gallery row (uploaded queries) are ignored.
    """
    if not selection:
        return []
    sel = selection.get("selection", selection) if hasattr(selection, "get") else selection
    points = sel.get("points", []) if hasattr(sel, "get") else []
    rows: list[int] = []
    for p in points or []:
        cd = p.get("customdata") if hasattr(p, "get") else None
        if isinstance(cd, list | tuple):
            cd = cd[0] if cd else None
        try:
            r = int(cd)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if r >= 0:
            rows.append(r)
    return list(dict.fromkeys(rows))


# ---- background builds ---------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    """A snapshot of a background build, safe to read from any session."""

    id: int
    index_dir: str
    gallery: str
    kind: str  # "rebuild", "folder" or "demo"
    status: str  # "running", "done" or "failed"
    stage: str = "starting"
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    started: float = 0.0
    finished: float | None = None
    message: str = ""
    count: int | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        if self.stage == "write":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    def progress_text(self) -> str:
        """One line for a progress bar: stage, count, rate and ETA."""
        if self.stage == "starting":
            return "Starting the build…"
        if self.stage == "write":
            return f"Writing the index ({self.total:,} images): PCA, catalog, publish…"
        what = "Writing demo images" if self.stage == "demo" else "Indexing images"
        text = f"{what}: {self.done:,} / {self.total:,}"
        if self.rate > 0:
            text += f" · {self.rate:.1f} images/s"
        if self.eta is not None and self.done < self.total:
            text += f" · about {format_duration(self.eta)} left"
        return text


def _dir_key(index_dir: str | os.PathLike) -> str:
    return str(Path(index_dir).expanduser().resolve())


def running_build(index_dir: str | os.PathLike) -> str | None:
    """A message when another process holds the build lock of ``index_dir``, else None."""
    info = lock.holder(Path(index_dir).expanduser())
    if not info:
        return None
    return (f"a build is running for this index (pid {info.get('pid', '?')}, started "
            f"{info.get('started', '?')}); wait for it to finish")


class _Job:
    """Mutable state of one build, updated by its thread under a lock."""

    def __init__(self, state: JobState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._stage_start: tuple[str, int, float] | None = None
        self.thread: threading.Thread | None = None

    def snapshot(self) -> JobState:
        with self._lock:
            return self._state

    def update(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stage_start is None or self._stage_start[0] != stage:
                self._stage_start = (stage, done, now)
            _, done0, t0 = self._stage_start
            dt = now - t0
            rate = (done - done0) / dt if dt > 0.2 and done > done0 else 0.0
            eta = (total - done) / rate if rate > 0 else None
            self._state = replace(self._state, stage=stage, done=done, total=total, rate=rate,
                                  eta=eta)

    def on_progress(self, p: Progress) -> None:
        self.update(p.stage, p.done, p.total)

    def finish(self, status: str, message: str, count: int | None = None) -> None:
        with self._lock:
            self._state = replace(self._state, status=status, message=message, count=count,
                                  finished=time.time(), eta=None)


class BuildRunner:
    """Runs index builds in background threads: at most one per index directory.

    One runner is shared by every session of the dashboard (it is the only process-wide
    mutable state), so a second browser tab sees the running build and cannot start
    another. Builds by other processes (the CLI) are detected through the index's lock file.

    Args:
        build: the build function (default :func:`imgrec.build_index`).
        demo: the demo-gallery builder (default :func:`imgrec.demo.build_demo_gallery`).

    Example:
        >>> runner = BuildRunner()
        >>> job = runner.start("photos", "photos-index")   # doctest: +SKIP
        >>> runner.job("photos-index").progress_text()      # doctest: +SKIP
    """

    def __init__(self, build: Callable[..., Any] | None = None,
                 demo: Callable[..., Any] | None = None) -> None:
        self._build = build or build_index
        self._demo = demo
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)

    def job(self, index_dir: str | os.PathLike) -> JobState | None:
        """The latest build of ``index_dir`` started here (running or finished), if any."""
        with self._lock:
            j = self._jobs.get(_dir_key(index_dir))
        return j.snapshot() if j else None

    def busy(self, index_dir: str | os.PathLike) -> str | None:
        """Why a build of ``index_dir`` cannot start now, or None."""
        j = self.job(index_dir)
        if j is not None and j.running:
            return "a build is running for this index; wait for it to finish"
        return running_build(index_dir)

    def start(self, gallery: str | os.PathLike | None, index_dir: str | os.PathLike, *,
              kind: str = "rebuild", embedder: Any = None, workers: int | None = None,
              demo_dir: str | os.PathLike | None = None,
              on_success: Callable[[JobState], None] | None = None) -> JobState:
        """Start a build in a background thread and return its first snapshot.

        Args:
            gallery: the folder to index (ignored when ``demo_dir`` is given).
            index_dir: the index directory to (re)build.
            kind: a label for the UI ("rebuild", "folder", "demo").
            embedder: the shared CNN passed to :func:`imgrec.build_index`.
            workers: decoding processes (None: one per CPU).
            demo_dir: build the demo gallery there first, then index it.
            on_success: called (in the build thread) with the final state after a build.

        Raises:
            BuildLockedError: a build of this index is running (here or in another process).
        """
        key = _dir_key(index_dir)
        with self._lock:
            cur = self._jobs.get(key)
            if cur is not None and cur.snapshot().running:
                raise BuildLockedError("a build is running for this index; wait for it to finish")
            other = running_build(index_dir)
            if other:
                raise BuildLockedError(other)
            src = str(demo_dir if demo_dir is not None else gallery)
            job = _Job(JobState(next(self._ids), key, src, kind, "running", started=time.time()))
            self._jobs[key] = job
        job.thread = threading.Thread(
            target=self._run, args=(job, gallery, index_dir, embedder, workers, demo_dir,
                                    on_success), name=f"imgrec-build-{job.snapshot().id}",
            daemon=True)
        job.thread.start()
        return job.snapshot()

    def wait(self, index_dir: str | os.PathLike, timeout: float | None = None) -> JobState | None:
        """Block until the build of ``index_dir`` ends (for tests and scripts)."""
        with self._lock:
            j = self._jobs.get(_dir_key(index_dir))
        if j is not None and j.thread is not None:
            j.thread.join(timeout)
        return j.snapshot() if j else None

    def _run(self, job: _Job, gallery: Any, index_dir: Any, embedder: Any, workers: int | None,
             demo_dir: Any, on_success: Callable[[JobState], None] | None) -> None:
        try:
            if demo_dir is not None:
                demo = self._demo
                if demo is None:
                    from imgrec.demo import build_demo_gallery as demo
                job.update("demo", 0, 1)
                gallery = demo(demo_dir, progress=lambda d, t: job.update("demo", d, t)).root
            report = self._build(gallery, index_dir, embedder=embedder, workers=workers,
                                 progress=job.on_progress)
            skipped = len(report.skipped)
            msg = (f"Indexed {report.indexed:,} images from {report.gallery} in "
                   f"{format_duration(report.seconds)} ({report.computed:,} computed, "
                   f"{report.unchanged:,} unchanged"
                   + (f", {skipped:,} skipped" if skipped else "") + ").")
            job.finish("done", msg, report.indexed)
        except BuildLockedError as exc:
            job.finish("failed", str(exc))
        except (ImgrecError, ValueError, OSError, RuntimeError, MemoryError) as exc:
            job.finish("failed", str(exc) or type(exc).__name__)
        except Exception as exc:  # never let a build thread die silently
            _log.exception("build of %s failed", index_dir)
            job.finish("failed", f"{type(exc).__name__}: {exc}")
        state = job.snapshot()
        if state.status == "done" and on_success is not None:
            try:
                on_success(state)
            except Exception:
                _log.exception("after-build hook failed")


# ---- Insights: labels, clusters, duplicates, neighbour graph -------------------------------

#: Clusters the Insights page offers at most (the default is imgrec.clusters.DEFAULT_K).
MAX_CLUSTERS = 100
#: Members of a cluster shown per page of its grid.
CLUSTER_PAGE = 24
#: Representatives drawn as thumbnails on the Explore scatter at most.
MAX_REP_THUMBS = 30
#: Lowest threshold the duplicates slider offers (near pairs are computed once at it).
DUPLICATE_MIN_THRESHOLD = 0.5


def label_chart(counts: Sequence[Any], title: str = "") -> Any:
    """A horizontal plotly bar chart of :func:`imgrec.insights.labels.label_counts`, most frequent on top."""
    import plotly.graph_objects as go

    names = [c.name for c in counts][::-1]
    values = [int(c.count) for c in counts][::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker={"color": "#4c6ef5"},
                           hovertemplate="%{y}: %{x} images<extra></extra>"))
    fig.update_layout(height=max(300, 22 * len(names) + 80), title=title or None,
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      xaxis={"title": "images (top-1 label)", "tickformat": ",d",
                             "dtick": 1 if max(values, default=0) <= 10 else None},
                      yaxis={"automargin": True})
    return fig


def cluster_k_bounds(n: int, default: int = 30, most: int = MAX_CLUSTERS) -> tuple[int, int, int]:
    """``(min, max, default)`` of the cluster-count slider for ``n`` images.

    Example:
        >>> cluster_k_bounds(12), cluster_k_bounds(5000)
        ((1, 12, 12), (1, 100, 30))
    """
    hi = max(1, min(int(n), most))
    return 1, hi, max(1, min(int(default), hi))


def duplicates_csv(report: Any) -> str:
    """The CSV of a :class:`imgrec.insights.duplicates.DuplicateReport` (one row per group member)."""
    from imgrec.insights.duplicates import CSV_COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(report.to_rows())
    return buf.getvalue()


def member_detail(member: Any, keeper: bool) -> str:
    """The line under a duplicate's thumbnail: similarity to the keeper (none for the keeper
    itself), resolution and file size."""
    size = f"{member.width}×{member.height}" if member.width and member.height else ""
    head = "" if keeper else f"cosine {member.similarity:.3f}"
    return " · ".join(p for p in (head, size, format_bytes(member.size) if member.size else "") if p)


def graph_figure(graph: Any, paths: Sequence[str]) -> Any:
    """A WebGL plotly figure of a :class:`imgrec.insights.graph.NeighbourGraph`.

    All edges are one line trace (``x0, x1, None, ...``); nodes are one marker trace per
    community (the 23 largest get their own colour, the rest share grey as "other"), each
    node carrying its index row as ``customdata`` so a selection maps back to images.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Dark24
    ex, ey = graph.edge_xy()
    traces = [go.Scattergl(x=ex, y=ey, mode="lines", name="links", hoverinfo="skip",
                           line={"width": 0.6, "color": "rgba(120,120,120,0.35)"},
                           showlegend=False)]
    comm = np.asarray(graph.community)
    n_named = min(len(palette) - 1, int(comm.max()) + 1 if len(comm) else 0)
    groups = [(f"community {c + 1}", np.flatnonzero(comm == c), palette[c % len(palette)])
              for c in range(n_named)]
    rest = np.flatnonzero(comm >= n_named)
    if len(rest):
        groups.append(("other", rest, "#9aa0a6"))
    for name, sel, colour in groups:
        traces.append(go.Scattergl(
            x=graph.x[sel], y=graph.y[sel], mode="markers", name=name,
            customdata=np.asarray(graph.rows)[sel].tolist(),
            hovertext=[paths[i] for i in sel], hoverinfo="text",
            marker={"size": 6, "color": colour, "line": {"width": 0}}))
    fig = go.Figure(traces)
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
                      hovermode="closest", uirevision="graph",
                      legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.7)"},
                      xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
    return fig


# ---- Search: label filter, relevance feedback, method comparison ---------------------------


def filter_hits_by_label(index: Index, hits: Sequence[Hit], text: str) -> list[Hit]:
    """The hits whose stored top-5 ImageNet labels include a class matching ``text``
    (see :func:`imgrec.insights.labels.match_classes`), ranks unchanged. Without labels in the
    index, or without matching classes, nothing passes."""
    from imgrec.insights.labels import match_classes

    classes = np.asarray(match_classes(text), dtype=np.int64)
    if not hits or index.labels_top5 is None or not len(classes):
        return []
    rows = np.asarray([h.row for h in hits], dtype=np.int64)
    top5 = np.asarray(index.labels_top5[np.sort(rows)]).astype(np.int64)
    ok = dict(zip(np.sort(rows).tolist(), np.isin(top5, classes).any(1).tolist(), strict=True))
    return [h for h in hits if ok[h.row]]


@dataclass(frozen=True)
class Feedback:
    """Gallery images a user marked 👍 (more like this) or 👎 (less like this), at most
    five of each; marking one kind removes the other."""

    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.positives or self.negatives)

    def mark(self, path: str, kind: str) -> Feedback:
        """Toggle ``path`` as ``"positive"`` or ``"negative"``; a sixth of a kind is ignored.

        Example:
            >>> Feedback().mark("a.jpg", "negative").mark("a.jpg", "positive")
            Feedback(positives=('a.jpg',), negatives=())
        """
        pos = [p for p in self.positives if p != path]
        neg = [p for p in self.negatives if p != path]
        target = pos if kind == "positive" else neg
        current = self.positives if kind == "positive" else self.negatives
        if path not in current and len(target) < MAX_QUERIES:
            target.append(path)
        return Feedback(tuple(pos), tuple(neg))

    def state(self, path: str) -> str | None:
        return ("positive" if path in self.positives else "negative" if path in self.negatives
                else None)


def refine_queries(qs: QuerySet, feedback: Feedback) -> list[Any]:
    """The positive examples of a refined search: the current queries, then the images
    marked 👍 (at most five in all, duplicates dropped)."""
    out: list[Any] = []
    seen: set[str] = set()
    if qs.stored:
        for p in qs.stored:
            out.append(Stored(p))
            seen.add(p)
    else:
        out.extend(u.as_file() for u in qs.uploads)
    for p in feedback.positives:
        if p not in seen:
            out.append(Stored(p))
            seen.add(p)
    return out[:MAX_QUERIES]


#: The methods the "compare methods" view puts side by side.
COMPARE_METHODS = ("embedding", "color", "pca")


@dataclass(frozen=True)
class Overlap:
    """How many paths the top-k lists of methods share."""

    pairs: dict[tuple[str, str], int]
    all: int


def overlap(lists: dict[str, Sequence[str]]) -> Overlap:
    """Pairwise and all-way overlap of ranked path lists (one per method).

    Example:
        >>> o = overlap({"a": ["x", "y"], "b": ["y", "z"], "c": ["y"]})
        >>> o.pairs[("a", "b")], o.all
        (1, 1)
    """
    names = list(lists)
    sets = {m: set(v) for m, v in lists.items()}
    pairs = {(a, b): len(sets[a] & sets[b]) for a, b in itertools.combinations(names, 2)}
    common = set.intersection(*sets.values()) if sets else set()
    return Overlap(pairs, len(common))
