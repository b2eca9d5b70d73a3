"""What an opened index holds: counts, formats, dimensions, disk size, build time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgrec.index.index import Index


@dataclass(frozen=True)
class IndexFacts:
    """The facts ``imgrec info`` prints and the dashboard shows (see :func:`facts`)."""

    index_dir: str
    version: str
    format_version: int
    gallery: str
    model: str
    count: int
    skipped: list[tuple[str, str]]  #: (path, reason) of every file not indexed
    formats: dict[str, int]  #: indexed images per format ('?' = none recorded), most first
    decoders: dict[str, int]  #: indexed images per decoder (pillow, heif, raw-preview, ...)
    embedding_dim: int
    histogram_dim: int
    pca_components: int
    size_bytes: int  #: every file of the version folder, sub-folders included
    built_at: str
    build_seconds: float | None
    first_pass: str  #: "float16" or "float32" (see :meth:`imgrec.index.index.Index.open`)
    has_labels: bool
    checksums: bool  #: whether the version records checksums of its files

    def to_json(self) -> dict[str, Any]:
        """The facts as the JSON object of ``imgrec info --json`` (manifest fields first)."""
        out = asdict(self)
        out["gallery_root"] = out.pop("gallery")
        out["skipped_files"] = [{"path": p, "reason": r} for p, r in self.skipped]
        out["skipped"] = len(self.skipped)
        return {k: v for k, v in out.items() if v is not None}


def facts(idx: Index) -> IndexFacts:
    """Counts, formats, dimensions and disk size of an opened index (reads its catalog).

    Example:
        >>> f = facts(Index.open("data/index"))
        >>> f.count, f.formats
        (38, {'JPEG': 35, 'PNG': 2, 'TIFF': 1})
    """
    m = idx.manifest
    size = sum(f.stat().st_size for f in idx.dir.rglob("*") if f.is_file())
    return IndexFacts(
        index_dir=str(idx.index_dir), version=m.version, format_version=m.format_version,
        gallery=m.gallery_root, model=m.model, count=m.count, skipped=idx.skipped(),
        formats=idx.format_counts(), decoders=idx.decoder_counts(), embedding_dim=m.embedding_dim,
        histogram_dim=m.histogram_dim, pca_components=m.pca_components, size_bytes=size,
        built_at=m.built_at, build_seconds=m.build_seconds, first_pass=idx.first_pass,
        has_labels=idx.has_labels, checksums=bool(m.checksums))
