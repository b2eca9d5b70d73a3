"""imgrec: find the images most similar to a few query images, by content or by colour.

Example:
    >>> from imgrec import Index, Stored, build_index
    >>> report = build_index("photos", "photos-index")
    >>> idx = Index.open("photos-index")
    >>> [h.path for h in idx.search(["query.jpg"], method="embedding", k=5).combined][:2]
    ['chelsea/chelsea_orig.jpg', 'chelsea/chelsea_scale150.jpg']
"""

from imgrec import _numba_cache  # noqa: F401  (first: numba's cache folder, before any kernel)
from imgrec.build.builder import BuildReport, Progress, build_index
from imgrec.errors import (
                     BuildLockedError,
                     ImageError,
                     ImgrecError,
                     IndexFormatError,
                     IndexNotFoundError,
                     IndexWriteError,
                     QueryError,
                     WeightsMissingError,
)
from imgrec.features.embedding import CNNEmbedder, Embedder
from imgrec.index.index import Index, Stored
from imgrec.search.rank import Hit, SearchResult
from imgrec.settings import Settings

__version__ = "0.1.0"

#: Functions of the wider API, imported on first use so that ``import imgrec`` stays light.
_LAZY = {
    "evaluate": "imgrec.insights.evaluate",
    "EvaluationReport": "imgrec.insights.evaluate",
    "find_duplicates": "imgrec.insights.duplicates",
    "clusters": "imgrec.insights.clusters",
    "neighbour_graph": "imgrec.insights.graph",
    "search_by_label": "imgrec.insights.labels",
    "verify": "imgrec.index.verify",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imgrec' has no attribute {name!r}")


__all__ = [
                     "BuildLockedError",
                     "BuildReport",
                     "CNNEmbedder",
                     "Embedder",
                     "EvaluationReport",
                     "Hit",
                     "ImageError",
                     "ImgrecError",
                     "Index",
                     "IndexFormatError",
                     "IndexNotFoundError",
                     "IndexWriteError",
                     "Progress",
                     "QueryError",
                     "SearchResult",
                     "Settings",
                     "Stored",
                     "WeightsMissingError",
                     "__version__",
                     "build_index",
                     "clusters",
                     "evaluate",
                     "find_duplicates",
                     "neighbour_graph",
                     "search_by_label",
                     "verify",
]
