"""Constants and small helpers of the Insights page (clusters, duplicates) free of Streamlit."""

from __future__ import annotations

from typing import Any

from imgrec.features.recipe import Recipe, recipe_of

#: Clusters the Insights page offers at most (the default is imgrec.clusters.DEFAULT_K).
MAX_CLUSTERS = 100
#: Members of a cluster shown per page of its grid.
CLUSTER_PAGE = 24


def duplicate_slider(index: Any) -> tuple[float, float]:
    """(lowest, default) cosine of the duplicates slider for an index: its embedding
    recipe's floor (near pairs are computed once at it) and candidate threshold.

    Example:
        >>> from imgrec.features.recipe import RECIPES
        >>> duplicate_slider(RECIPES["v1"]), duplicate_slider(RECIPES["v3"])
        ((0.5, 0.65), (0.69, 0.78))
    """
    r = index if isinstance(index, Recipe) else recipe_of(index)
    return r.duplicate_floor, r.duplicate_threshold


def graph_threshold(index: Any) -> float:
    """The neighbour graph's link threshold slider default for an index (its recipe's).

    Example:
        >>> from imgrec.features.recipe import RECIPES
        >>> graph_threshold(RECIPES["v1"]), graph_threshold(RECIPES["v3"])
        (0.5, 0.69)
    """
    r = index if isinstance(index, Recipe) else recipe_of(index)
    return r.graph_threshold


def cluster_name(c: int) -> str:
    """How every page names cluster ``c``: its number as the CLI and the exports give it
    (0 is the largest).

    Example:
        >>> cluster_name(0)
        'cluster 0'
    """
    return f"cluster {int(c)}"


def cluster_k_bounds(n: int, default: int = 30, most: int = MAX_CLUSTERS) -> tuple[int, int, int]:
    """``(min, max, default)`` of the cluster-count slider for ``n`` images (``default``:
    the k :func:`imgrec.insights.clusters.auto_k` chose).

    Example:
        >>> cluster_k_bounds(12), cluster_k_bounds(5000), cluster_k_bounds(5000, 14)
        ((1, 12, 12), (1, 100, 30), (1, 100, 14))
    """
    hi = max(1, min(int(n), most))
    return 1, hi, max(1, min(int(default), hi))
