"""One image looked at closely: what the catalog knows of it, its labels, its duplicate
group, and its nearest neighbours (the dashboard's detail view reads this)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imgrec.errors import QueryError
from imgrec.search.query import Stored
from imgrec.search.results import Hit

if TYPE_CHECKING:
    from imgrec.index.index import Index
    from imgrec.insights.duplicates import DuplicateReport

NEIGHBOURS = 10


@dataclass(frozen=True)
class ImageDetail:
    """Everything the detail view shows of one indexed image.

    Attributes:
        path: gallery-relative path; ``file``: the original, inside the gallery root.
        size_bytes, format, decoder, width, height, orientation: from the catalog.
        taken: ISO date taken; ``taken_from``: ``exif`` or ``mtime``.
        camera: EXIF make and model (``""`` when unknown).
        labels: (ImageNet class name, probability), best first (empty without labels).
        duplicate: (tier, keeper path, evidence) of its duplicate group, or None; the
            evidence says why it belongs with the keeper (or why it is the keeper).
        duplicate_group: the paths of that group, keeper first (empty without one).
        neighbours: its nearest images by embedding cosine, itself left out.
    """

    path: str
    row: int
    file: Path
    size_bytes: int
    format: str
    decoder: str
    width: int
    height: int
    orientation: str
    taken: str
    taken_from: str
    camera: str
    labels: list[tuple[str, float]] = field(default_factory=list)
    duplicate: tuple[str, str, str] | None = None
    duplicate_group: tuple[str, ...] = ()
    neighbours: list[Hit] = field(default_factory=list)


def original(idx: Index, path: str) -> Path:
    """The original file of an indexed image, only when it lies under the gallery root.

    Raises:
        QueryError: the path is not indexed, or it (or a link in it) leads outside.
    """
    file = idx.resolve(path)  # refuses absolute paths, '..' and links leading out
    idx.row_of(path)
    if not file.is_file():
        raise QueryError(f"{path!r} is indexed but its file is gone")
    return file


def image_detail(idx: Index, path: str, *, neighbours: int = NEIGHBOURS,
                 duplicates: DuplicateReport | None = None) -> ImageDetail:
    """The detail of one indexed image.

    Args:
        idx: the index.
        path: an indexed gallery path.
        neighbours: how many nearest images to list (0: none).
        duplicates: a report of :func:`imgrec.insights.duplicates.find_duplicates`, to name
            the image's duplicate tier (it is not computed here: the scan is costly).

    Raises:
        QueryError: the path is not an indexed image of this gallery.

    Example:
        >>> d = image_detail(idx, "coffee/coffee_orig.jpg")
        >>> d.decoder, len(d.neighbours) <= 10
        ('pillow', True)
    """
    from imgrec.insights.labels import labels_of

    e = idx.entry(path)
    if e is None or e.row is None:
        raise QueryError(f"{path!r} is not an indexed image of this gallery")
    near: list[Hit] = []
    if neighbours > 0:
        hits = idx.search(Stored(path), k=min(neighbours + 1, len(idx))).per_query[0]
        near = [h for h in hits if h.path != path][:neighbours]
    return ImageDetail(
        path=e.path, row=int(e.row), file=idx.resolve(path), size_bytes=int(e.size or 0),
        format=e.format or "", decoder=e.decoder or "", width=int(e.width or 0),
        height=int(e.height or 0), orientation=e.orientation or "", taken=e.taken or "",
        taken_from=e.taken_from or "",
        camera=" ".join(x for x in (e.camera_make, e.camera_model) if x),
        labels=[(lb.name, lb.probability) for lb in labels_of(idx, int(e.row))],
        duplicate=_tier(duplicates, path), duplicate_group=_group(duplicates, path),
        neighbours=near)


def _tier(report: DuplicateReport | None, path: str) -> tuple[str, str, str] | None:
    if report is None:
        return None
    for g in report.groups:
        for i, m in enumerate(g.members):
            if m.path == path:
                return (g.tier or g.kind, g.members[0].path, g.reason if i == 0 else m.evidence)
    return None


def _group(report: DuplicateReport | None, path: str) -> tuple[str, ...]:
    for g in report.groups if report is not None else ():
        paths = tuple(m.path for m in g.members)
        if path in paths:
            return paths
    return ()
