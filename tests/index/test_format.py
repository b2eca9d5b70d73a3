"""The typed Manifest: round trips, refusals, and the digest that binds it to its files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from imgrec import Index
from imgrec.errors import IndexFormatError
from imgrec.index import format as F

GOOD = {"format_version": 1, "model": "m", "gallery_root": "/g", "embedding_dim": 4,
        "histogram_dim": 768, "pca_components": 3, "count": 10, "skipped": 1,
        "version": "v-1", "built_at": "2026-01-01T00:00:00Z", "pipeline": 2,
        "build_seconds": 1.5, "future_field": [1, 2]}
WHERE = Path("ix/v-1/manifest.json")


def test_round_trip_keeps_every_field() -> None:
    m = F.Manifest.from_json(GOOD, WHERE)
    assert (m.count, m.model, m.pipeline, m.build_seconds) == (10, "m", 2, 1.5)
    assert m.extra == {"future_field": [1, 2]} and m.source is None and m.checksums == {}
    assert m.to_json() == GOOD
    assert F.Manifest.from_json(json.loads(json.dumps(m.to_json())), WHERE) == m
    assert not hasattr(m, "__getitem__") and not hasattr(m, "get")  # typed fields only
    assert m.shapes() == {F.EMBEDDINGS: (10, 4), F.NORMS: (10,), F.HISTOGRAMS: (10, 768),
                          F.PCA_HISTOGRAMS: (10, 3)}


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 2}, "format version 2"),
    ({"format_version": "1"}, "format version '1'"),
    ({"format_version": True}, "format version True"),
    ({"count": None}, "count"),
    ({"count": True}, "count"),
    ({"model": 3}, "model"),
    ({"pipeline": "2"}, "pipeline"),
    ({"count": -1}, "negative"),
    ({"pca_components": 0}, "negative or zero"),
    ({"histogram_dim": 512}, "histogram_dim is 512"),
    ({"checksums": {"algorithm": "md5", "files": {}, "manifest": "0" * 64}}, "checksums"),
    ({"checksums": {"algorithm": F.CHECKSUM, "files": {"a": [1, "xyz"]},
                    "manifest": "0" * 64}}, "checksums"),
    ({"checksums": {"algorithm": F.CHECKSUM, "files": {"../../etc/passwd": [1, "0" * 64]},
                    "manifest": "0" * 64}}, "checksums"),
])
def test_refusals_name_the_field(change: dict, message: str) -> None:
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(IndexFormatError, match=message):
        F.Manifest.from_json(data, WHERE)


def test_not_an_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="not a JSON object"):
        F.Manifest.from_json([GOOD], WHERE)
    with pytest.raises(IndexFormatError, match="is missing"):
        F.Manifest.read(tmp_path)
    (tmp_path / F.MANIFEST).write_text("{oops")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        F.Manifest.read(tmp_path)


def test_written_manifest_records_every_file(small: Path) -> None:
    idx = Index.open(small)
    m = idx.manifest
    on_disk = json.loads((idx.dir / F.MANIFEST).read_text())
    assert m.to_json() == on_disk and m.source == "from_arrays"
    files = {p.name for p in idx.dir.iterdir()} - {F.MANIFEST}
    assert set(m.checksums["files"]) == files
    for name in files:
        assert m.recorded(name) == ((idx.dir / name).stat().st_size,
                                    F.file_checksum(idx.dir / name))
    assert m.checksums["algorithm"] == F.CHECKSUM and m.checksums["manifest"] == m.digest()


def test_digest_covers_the_fields_and_the_file_list(small: Path) -> None:
    m = Index.open(small).manifest
    assert replace(m, gallery_root="/elsewhere").digest() != m.digest()
    assert replace(m, count=m.count + 1).digest() != m.digest()
    files = dict(m.checksums["files"])
    files[F.CATALOG] = [files[F.CATALOG][0], "0" * 64]
    assert replace(m, checksums={**m.checksums, "files": files}).digest() != m.digest()
