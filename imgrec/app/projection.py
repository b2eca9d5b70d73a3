"""Explore's view model: PCA projections of the gallery, colour groups, highlights, selections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.features.pca import PCAModel, fit_pca
from imgrec.insights.graph import sample_rows

#: Points drawn on the Explore scatter before the gallery is sampled.
MAX_POINTS = 20_000
#: Distinct colours on the scatter before the rarest folders are merged into "other".
MAX_GROUPS = 24
#: Representatives drawn as thumbnails on the Explore scatter at most.
MAX_REP_THUMBS = 30


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


def representatives(result: Any, proj: Projection, matrix: np.ndarray, paths: Sequence[str]
                    ) -> Highlight:
    """The representatives of an :func:`imgrec.insights.clusters.clusters` result as a scatter
    highlight, projected like the gallery (``paths``: every indexed path in row order)."""
    rows = [int(r) for r in result.representatives]
    coords = proj.transform(np.asarray(matrix[rows])) if rows else np.zeros((0, 3), np.float32)
    return Highlight("representatives", coords, [paths[r] for r in rows], rows, "rep")


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
