"""The exceptions imgrec raises, each carrying a one-line message meant for the user."""


class ImgrecError(Exception):
    """Base class: every error imgrec raises on purpose."""


class ImageError(ImgrecError, ValueError):
    """An image could not be read or used (the message says why)."""


class QueryError(ImgrecError, ValueError):
    """A search request is invalid (too many queries, unknown method, ...)."""


class IndexNotFoundError(ImgrecError, FileNotFoundError):
    """No index exists at the given directory."""


class IndexFormatError(ImgrecError):
    """An index exists but cannot be used (other format version, damaged files)."""


class WeightsMissingError(ImgrecError):
    """A backbone's weights are not available offline."""


class BuildLockedError(ImgrecError):
    """Another build of the same index is running."""


class IndexWriteError(ImgrecError):
    """A new index version could not be written (disk full, no permission, ...); the
    published version is unchanged."""
