"""imgrec: find the images most similar to a few query images, by content or by colour.

Example:
    >>> from imgrec import Index, Stored, build_index
    >>> build_index("photos", "photos-index")                        # doctest: +SKIP
    >>> idx = Index.open("photos-index")                              # doctest: +SKIP
    >>> idx.search(["query.jpg"], method="embedding", k=5).combined  # doctest: +SKIP
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
__all__ = [
                     "BuildLockedError",
                     "BuildReport",
                     "CNNEmbedder",
                     "Embedder",
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
]
