"""Constants and small helpers of the Insights page (clusters, duplicates) free of Streamlit."""

from __future__ import annotations

#: Clusters the Insights page offers at most (the default is imgrec.clusters.DEFAULT_K).
MAX_CLUSTERS = 100
#: Members of a cluster shown per page of its grid.
CLUSTER_PAGE = 24


#: Lowest threshold the duplicates slider offers (near pairs are computed once at it).
DUPLICATE_MIN_THRESHOLD = 0.5


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
