"""Opening a version: each file damaged in turn, the checksums, and an index written by the
previous release (before checksums existed), which opens and answers as it did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index, Stored
from imgrec.errors import IndexFormatError
from imgrec.index import format as F
from imgrec.index import reader
from imgrec.index.verify import verify
from imgrec.insights.labels import search_by_label

FIXTURES = Path(__file__).parent / "fixtures"
LARGE = (F.EMBEDDINGS, F.HISTOGRAMS, F.PCA_HISTOGRAMS, F.HALF_DATA)


def version_of(ix: Path) -> Path:
    return ix / (ix / F.CURRENT).read_text().strip()


def scribble(path: Path, at: float = 0.6, data: bytes = b"\x80\xbf" * 4) -> None:
    """Garbage over a few bytes in the middle of a file (its length unchanged)."""
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * at)
    raw[i:i + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", sorted(F.SMALL_FILES))
def test_garbage_in_a_small_file_is_refused_on_open(ix: Path, name: str) -> None:
    scribble(version_of(ix) / name)
    with pytest.raises(IndexFormatError, match=name.replace(".", r"\.")):
        Index.open(ix)
    assert any(name in p for p in verify(ix))


@pytest.mark.parametrize("name", LARGE)
def test_garbage_in_a_large_file_is_found_by_verify(ix: Path, name: str, monkeypatch) -> None:
    scribble(version_of(ix) / name)
    with pytest.raises(IndexFormatError, match=name.replace(".", r"\.")):
        Index.open(ix)  # a file this small is checked byte by byte on every open
    monkeypatch.setattr(reader, "HASHED_ON_OPEN", 0)  # as if it were beyond that size
    Index.open(ix)  # large files are checked by size on open, byte by byte by verify
    assert any(name in p for p in verify(ix))


@pytest.mark.parametrize("name", [*F.SMALL_FILES, *LARGE])
def test_a_changed_length_is_refused_on_open(ix: Path, name: str) -> None:
    with open(version_of(ix) / name, "ab") as fh:
        fh.write(b"\0" * 64)
    with pytest.raises(IndexFormatError, match=name.replace(".", r"\.")):
        Index.open(ix)


def test_f16_bounds_and_labels_garbage_changes_no_answer(ix: Path, small: Path) -> None:
    """The audit's cases: negative error bounds, other label ids; both refused on open."""
    v = version_of(ix)
    err = np.load(v / F.HALF_ERROR, mmap_mode="r+")
    err[5:9] = -3.0
    err.flush()
    del err
    with pytest.raises(IndexFormatError, match=r"embeddings_f16_error\.npy is damaged"):
        Index.open(ix)
    shutil.copy(small / v.name / F.HALF_ERROR, v / F.HALF_ERROR)
    top = np.load(v / F.LABEL_FILES[0], mmap_mode="r+")
    top[3:7] = top[::-1][3:7]
    top.flush()
    del top
    with pytest.raises(IndexFormatError, match=r"labels_top5\.npy is damaged"):
        Index.open(ix)


def _drop_checksums(v: Path) -> None:
    m = json.loads((v / F.MANIFEST).read_text())
    del m["checksums"]
    (v / F.MANIFEST).write_text(json.dumps(m))


def test_negative_bounds_are_refused_without_checksums(ix: Path) -> None:
    """Bounds that can never be negative are validated where they are loaded."""
    v = version_of(ix)
    _drop_checksums(v)
    Index.open(ix)
    err = np.load(v / F.HALF_ERROR, mmap_mode="r+")
    err[7, 1] = -1e-3
    err.flush()
    del err
    with pytest.raises(IndexFormatError, match=r"negative or non-finite error bounds "
                                               r"\(first: row 7\)"):
        Index.open(ix)
    assert any("row 7" in p for p in verify(ix))


def test_an_edited_gallery_root_is_refused(ix: Path) -> None:
    v = version_of(ix)
    m = json.loads((v / F.MANIFEST).read_text())
    assert m["gallery_root"] == "/photos"
    m["gallery_root"] = "/etc"
    (v / F.MANIFEST).write_text(json.dumps(m, indent=2))
    with pytest.raises(IndexFormatError, match=r"manifest\.json was changed"):
        Index.open(ix)
    assert any("manifest.json was changed" in p for p in verify(ix))


def test_a_listed_file_removed_is_refused(ix: Path) -> None:
    for name in F.LABEL_FILES:
        (version_of(ix) / name).unlink()
    with pytest.raises(IndexFormatError, match=r"labels_prob5\.npy is missing \(the manifest"):
        Index.open(ix)


def test_open_version_exposes_every_file(small: Path) -> None:
    v = version_of(small)
    opened = reader.open_version(v, F.Manifest.read(v))
    assert set(opened.matrices) == set(F.Manifest.read(v).shapes())
    assert opened.labels is not None and opened.half is not None
    assert opened.pca.n_components == 8
    assert reader.checksum_problems(v, F.Manifest.read(v), thorough=True) == []


# ---- an index written by the previous release -------------------------------------------


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    dst = tmp_path / "v1-index"
    shutil.copytree(FIXTURES / "v1-index", dst)
    return dst


def test_previous_release_index_opens_and_answers_identically(v1: Path) -> None:
    """``fixtures/v1-index`` was written by imgrec at commit 668439b (see make_v1_index.py),
    ``fixtures/v1-answers.json`` holds that release's answers on it."""
    answers = json.loads((FIXTURES / "v1-answers.json").read_text())
    idx = Index.open(v1)
    assert idx.manifest.checksums == {} and not idx.facts().checksums
    assert verify(v1) == []
    paths = idx.all_paths()
    for key, want in answers.items():
        if key == "refined":
            got = idx.search([Stored(paths[1])], negatives=[Stored(paths[2])], k=4)
        elif key == "label":
            got = search_by_label(idx, "goldfish", k=4)
        else:
            method, metric, q = key.split("/")
            got = idx.search([Stored(paths[int(q)])], method=method, metric=metric, k=4)
        got = json.loads(json.dumps(got.to_dict()))
        if key == "refined":
            # refined scores are no longer clamped to [-1, 1] (issue 13, item 6): the
            # per-query lists are unchanged and the refined ranking orders the same images
            assert got["queries"] == want["queries"]
            assert [(h["rank"], h["path"]) for h in got["combined"]] == [
                (h["rank"], h["path"]) for h in want["combined"]]
            continue
        assert got == want, key
    assert len(answers) == 14


def test_previous_release_index_damage_is_still_found(v1: Path) -> None:
    """Without checksums, open checks structure; verify still reads every value."""
    scribble(version_of(v1) / F.LABEL_FILES[1], at=0.8, data=b"\x00\x00\xc0\x7f")
    Index.open(v1)
    assert any("invalid labels" in p for p in verify(v1))
