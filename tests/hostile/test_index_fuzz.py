"""A damaged index is refused or answers exactly as the intact one: never a different answer.

Hypothesis damages one file of a small real index (every optional file present: labels,
float16 copy) in one of four ways: bits flipped, the file cut short, bytes appended, a range
zeroed. :meth:`Index.open` must then refuse with an ``IndexFormatError``, or open and give
exactly the intact index's answers to a fixed set of queries (every method and metric, a
refined search, a label search). ``HYPOTHESIS_PROFILE=fuzz`` runs many more examples.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgrec import Index, Stored
from imgrec.errors import IndexFormatError
from imgrec.features.color import histogram
from imgrec.index import format as F
from imgrec.insights.labels import search_by_label

N_LABELS = 5


@pytest.fixture(scope="module")
def intact(photos, tmp_path_factory) -> Path:
    """An index of the real photos: mean colours of a 4 x 4 grid as embeddings, their real
    colour histograms, labels and the float16 copy (from_arrays writes every file a build
    writes)."""
    names = sorted(photos)
    small = [np.asarray(photos[n].resize((32, 32)), np.float32) for n in names]
    emb = np.stack([r.reshape(4, 8, 4, 8, 3).mean((1, 3)).ravel() / 255 + 0.05 for r in small])
    hist = np.stack([histogram(photos[n]) for n in names]).astype(np.float32)
    top5 = np.stack([(np.arange(N_LABELS) * 3 + i) % 1000 for i in range(len(names))])
    prob5 = np.tile(np.array([0.5, 0.2, 0.1, 0.05, 0.01], np.float32), (len(names), 1))
    ix = tmp_path_factory.mktemp("fuzz-index") / "index"
    Index.from_arrays(ix, [f"{n}.jpg" for n in names], emb, hist, model="tiny-test",
                      pca_components=4, labels_top5=top5.astype(np.int16),
                      labels_prob5=prob5, gallery_root="/photos")
    return ix


def answers(idx: Index) -> list[object]:
    """The fixed queries: every method and metric, two queries, a refined and a label search."""
    p = idx.all_paths()
    out: list[object] = [len(idx), p]
    out.append(idx.search(Stored(p[0]), metric="all", k=5))
    out.append(idx.search([Stored(p[1]), Stored(p[2])], method="color", k=4))
    out.append(idx.search(Stored(p[3]), method="pca", k=5, pca_components=3))
    out.append(idx.search(Stored(p[4]), negatives=Stored(p[5]), negative_weight=3.0, k=6))
    out.append(search_by_label(idx, "goldfish", k=5))  # class 1: rows 1 and 4 hold it
    return [a.to_dict() if hasattr(a, "to_dict") else a for a in out]


@pytest.fixture(scope="module")
def expected(intact: Path) -> list[object]:
    got = answers(Index.open(intact))  # also compiles the kernels before the first example
    assert got[-1]["combined"], "the label query must find something"
    return got


def _files(ix: Path) -> list[str]:
    version = (ix / F.CURRENT).read_text().strip()
    return [F.CURRENT, *sorted(f"{version}/{p.name}" for p in (ix / version).iterdir())]


@st.composite
def damage(draw, names: list[str]):
    """(file, kind, parameters) of one corruption."""
    name = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["flip", "truncate", "append", "zero"]))
    at = draw(st.floats(0, 1, exclude_max=True))
    if kind == "flip":
        return name, kind, at, draw(st.lists(st.integers(1, 255), min_size=1, max_size=8))
    if kind == "append":
        return name, kind, at, draw(st.binary(min_size=1, max_size=64))
    return name, kind, at, draw(st.integers(1, 4096))


def apply(path: Path, kind: str, at: float, arg) -> bool:
    """Damage ``path`` in place; False when the damage left the bytes as they were."""
    raw = bytearray(path.read_bytes())
    before = bytes(raw)
    i = int(at * len(raw))
    if kind == "flip":
        for j, mask in enumerate(arg):
            if i + j < len(raw):
                raw[i + j] ^= mask
    elif kind == "truncate":
        del raw[i:]
    elif kind == "append":
        raw += arg
    else:
        raw[i:i + arg] = bytes(len(raw[i:i + arg]))
    path.write_bytes(bytes(raw))
    return bytes(raw) != before


def test_damage_is_refused_or_changes_no_answer(intact, expected):
    names = _files(intact)

    @given(damage(names))
    def check(case):
        name, kind, at, arg = case
        with tempfile.TemporaryDirectory(prefix="imgrec-fuzz-") as tmp:
            ix = Path(tmp) / "index"
            shutil.copytree(intact, ix)
            apply(ix / name, kind, at, arg)
            try:
                idx = Index.open(ix)
            except IndexFormatError as exc:
                assert "\n" not in str(exc), "the refusal is one line"
                return
            assert answers(idx) == expected, f"{name} damaged ({kind}) changed an answer"
            del idx

    check()


@pytest.mark.parametrize("kind", ["flip", "truncate", "append", "zero"])
def test_each_file_damaged_each_way_is_refused(intact, kind, tmp_path):
    """The fuzz's four kinds on every file, in the middle: damage that changes the bytes
    of a file is refused on open (a small index is checked byte for byte)."""
    arg = {"flip": [0x5A], "truncate": 0, "append": b"\x00", "zero": 64}[kind]
    for name in _files(intact):
        ix = tmp_path / name.replace("/", "_")
        shutil.copytree(intact, ix)
        if not apply(ix / name, kind, 0.5, arg):
            continue  # e.g. zeros over bytes that were zero already
        with pytest.raises(IndexFormatError):
            Index.open(ix)
