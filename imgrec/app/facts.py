"""What the Dataset page and the sidebar say about an opened index."""

from __future__ import annotations

from dataclasses import dataclass

from imgrec.index.index import Index


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


def image_formats(idx: Index) -> dict[str, int]:
    """Indexed images per file format, most frequent first ("?" when none was recorded).

    The dashboard's only reach into the catalog: to be replaced by the index package's own
    facts once it offers them.
    """
    from imgrec.index import catalog

    con = catalog.connect(idx.dir / "catalog.sqlite")
    try:
        return dict(con.execute("SELECT COALESCE(NULLIF(format, ''), '?'), COUNT(*) FROM images "
                                "WHERE row IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"))
    finally:
        con.close()


def index_facts(idx: Index) -> IndexFacts:
    """Counts, formats, dimensions and disk size of an index (reads its catalog once)."""
    size = sum(f.stat().st_size for f in idx.dir.rglob("*") if f.is_file())
    m = idx.manifest
    return IndexFacts(gallery=str(idx.root), index_dir=str(idx.index_dir), version=idx.version,
                      model=idx.model, count=len(idx), skipped=idx.skipped(),
                      formats=image_formats(idx),
                      embedding_dim=int(m["embedding_dim"]), histogram_dim=int(m["histogram_dim"]),
                      pca_components=int(m["pca_components"]), size_bytes=size,
                      built_at=str(m.get("built_at", "")), build_seconds=m.get("build_seconds"))
