"""Integrity (issue 5): damage each index file in turn; ``imgrec info --verify`` names it
and ``Index.open`` refuses with a clear message instead of crashing or answering wrongly."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from imgrec import ImgrecError, Index, IndexFormatError, IndexNotFoundError, build_index
from imgrec.cli.main import main as cli_main
from imgrec.index import reader
from imgrec.index.verify import verify


class TinyEmbedder:
    """Deterministic stand-in for the CNN (unit float32 rows from a pooled 32x32 crop)."""

    name, dim, input_size = "tiny-test", 16, 32

    def __init__(self) -> None:
        self._proj = np.random.default_rng(0).standard_normal((192, self.dim))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        x = np.asarray(crops, dtype=np.float64).reshape(len(crops), 8, 4, 8, 4, 3)
        v = (x.mean(axis=(2, 4)).reshape(len(crops), 192) / 255.0 - 0.5) @ self._proj
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good index (10 images, 1 skipped file), copied by each test before damaging."""
    root = tmp_path_factory.mktemp("verify")
    g = root / "gallery"
    g.mkdir()
    for i in range(10):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(g / f"{i}.png")
    (g / "bad.jpg").write_bytes(b"not an image")
    with threadpool_limits(limits=1, user_api="blas"):
        build_index(g, root / "index", embedder=TinyEmbedder(), workers=0, batch_size=4)
    return root / "index"


@pytest.fixture
def ix(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "index"
    shutil.copytree(built, dst)
    return dst


def version(ix: Path) -> Path:
    return ix / (ix / "CURRENT").read_text().strip()


# ---- the damage done in each case ------------------------------------------------------


def truncate(name: str, keep: float) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        data = (v / name).read_bytes()
        (v / name).write_bytes(data[: int(len(data) * keep)])
    return do


def append(name: str) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        with open(v / name, "ab") as fh:
            fh.write(b"\0" * 64)
    return do


def poke(name: str, row: int, value: float, col: int | None = None) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        a = np.load(v / name, mmap_mode="r+")
        if col is None:
            a[row] *= value
        else:
            a[row, col] = value
        a.flush()
    return do


def replace_npy(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        a = np.load(v / name)
        np.save(v / name, make(a))
    return do


def edit_manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        m = json.loads((v / "manifest.json").read_text())
        out = change(m)
        (v / "manifest.json").write_text(json.dumps(m if out is None else out))
    return do


def write(name: str, data: bytes) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        (v / name).write_bytes(data)
    return do


def remove(name: str) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        (v / name).unlink()
    return do


def sql(statement: str) -> Callable[[Path], None]:
    def do(v: Path) -> None:
        con = sqlite3.connect(v / "catalog.sqlite")
        con.execute(statement)
        con.commit()
        con.close()
    return do


def corrupt_page(v: Path) -> None:
    d = bytearray((v / "catalog.sqlite").read_bytes())
    d[4096:4112] = b"\xff" * 16  # header of the first b-tree page after the schema
    (v / "catalog.sqlite").write_bytes(bytes(d))


def resave_pca(v: Path) -> None:
    with np.load(v / "pca.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["components"] = arrays["components"][:3]
    np.savez(v / "pca.npz", **arrays)


MATRICES = ("embeddings.npy", "embedding_norms.npy", "histograms.npy", "pca_histograms.npy")
HALF = ("embeddings_f16.npy", "embeddings_f16_error.npy")  # the float16 first-pass copy

# (id, damage, text the problem must contain, does Index.open refuse? True: with that text
# in its message; a string: with this text; False: it opens)
CASES: list[tuple[str, Callable[[Path], None], str, bool | str]] = [
    *[(f"{m}-half", truncate(m, 0.5), m, True) for m in MATRICES],
    *[(f"{m}-empty", truncate(m, 0.0), m, True) for m in MATRICES],
    *[(f"{m}-header-cut", truncate(m, 0.02), m, True) for m in MATRICES],
    *[(f"{m}-appended", append(m), m, True) for m in MATRICES],
    *[(f"{m}-missing", remove(m), m, True) for m in MATRICES + HALF],
    *[(f"{m}-half", truncate(m, 0.5), m, True) for m in HALF],
    *[(f"{m}-appended", append(m), m, True) for m in HALF],
    ("f16-float32", replace_npy(HALF[0], lambda a: a.astype(np.float32)), HALF[0], True),
    ("f16-changed", poke(HALF[0], 6, 0.5, 1), HALF[0], False),
    # small files are checked against their recorded checksums on every open
    ("f16-bound-too-small", poke(HALF[1], 6, 0.0, 0), HALF[1], HALF[1]),
    ("embeddings-float64", replace_npy("embeddings.npy", lambda a: a.astype(np.float64)),
     "embeddings.npy", True),
    ("embeddings-fortran", replace_npy("embeddings.npy", np.asfortranarray), "embeddings.npy",
     True),
    ("embeddings-pickle", replace_npy("embeddings.npy", lambda a: np.array([{"x": 1}])),
     "embeddings.npy", True),
    # content damage: found by --verify, which reads every value
    ("embeddings-nan", poke("embeddings.npy", 3, np.nan, 0), "embeddings.npy", False),
    ("embeddings-inf", poke("embeddings.npy", 0, np.inf, 5), "embeddings.npy", False),
    ("embeddings-not-unit", poke("embeddings.npy", 2, 3.0), "embeddings.npy", False),
    ("norms-wrong", poke("embedding_norms.npy", 4, 0.5), "embedding_norms.npy",
     "embedding_norms.npy"),
    ("histograms-nan", poke("histograms.npy", 1, np.nan, 7), "histograms.npy", False),
    ("histograms-negative", poke("histograms.npy", 1, -1.0, 7), "histograms.npy", False),
    ("pca-histograms-inf", poke("pca_histograms.npy", 9, np.inf, 0), "pca_histograms.npy",
     False),
    ("pca-histograms-foreign", replace_npy("pca_histograms.npy", np.zeros_like), "pca.npz",
     False),
    ("manifest-garbage", write("manifest.json", b"{not json"), "manifest.json", True),
    ("manifest-empty", write("manifest.json", b""), "manifest.json", True),
    ("manifest-list", edit_manifest(lambda m: [m]), "manifest.json", True),
    ("manifest-format", edit_manifest(lambda m: m.update(format_version=99)), "format version",
     True),
    ("manifest-no-count", edit_manifest(lambda m: m.pop("count") and None), "count", True),
    ("manifest-count", edit_manifest(lambda m: m.update(count=m["count"] + 1)),
     "embeddings.npy", True),
    ("manifest-dim", edit_manifest(lambda m: m.update(embedding_dim=8)), "embeddings.npy", True),
    ("manifest-missing", remove("manifest.json"), "manifest.json", True),
    ("catalog-missing", remove("catalog.sqlite"), "catalog.sqlite", True),
    ("catalog-half", truncate("catalog.sqlite", 0.5), "catalog.sqlite", True),
    ("catalog-garbage", write("catalog.sqlite", b"garbage" * 700), "catalog.sqlite", True),
    ("catalog-page", corrupt_page, "catalog.sqlite", True),
    ("catalog-row-gap", sql("UPDATE images SET row = 99 WHERE row = 3"), "catalog.sqlite",
     True),
    ("catalog-row-lost", sql("UPDATE images SET row = NULL, error = 'x' WHERE row = 9"),
     "catalog.sqlite", True),
    ("catalog-no-table", sql("DROP TABLE images"), "catalog.sqlite", True),
    ("catalog-skipped", sql("DELETE FROM images WHERE row IS NULL"), "catalog.sqlite",
     "catalog.sqlite"),
    ("catalog-unsafe-path", sql("UPDATE images SET path = '../outside.jpg' WHERE row = 0"),
     "leave the gallery", "catalog.sqlite"),
    ("pca-half", truncate("pca.npz", 0.5), "pca.npz", True),
    ("pca-garbage", write("pca.npz", b"PK\x03\x04" + b"x" * 100), "pca.npz", True),
    ("pca-missing", remove("pca.npz"), "pca.npz", True),
    ("pca-shape", resave_pca, "pca.npz", True),
]


@pytest.mark.parametrize(("damage", "expect", "open_refuses"),
                         [pytest.param(d, e, o, id=i) for i, d, e, o in CASES])
def test_damage_is_named_and_refused(ix: Path, damage, expect: str, open_refuses: bool | str,
                                     capsys: pytest.CaptureFixture, monkeypatch) -> None:
    damage(version(ix))
    problems = verify(ix)
    assert problems, "verify found nothing wrong"
    assert any(expect in p for p in problems), problems

    assert cli_main(["info", "--verify", "--index", str(ix)]) == 2
    out, err = capsys.readouterr()
    assert expect in out and "failed verification" in err and "Traceback" not in out + err

    if open_refuses:
        expect = open_refuses if isinstance(open_refuses, str) else expect
        with pytest.raises(IndexFormatError) as exc:
            Index.open(ix)
        assert expect in str(exc.value)
        # every command reading the index says so in one line (exit 2), never a traceback
        assert cli_main(["search", "@0.png", "--index", str(ix)]) == 2
        out, err = capsys.readouterr()
        assert expect in err and "Traceback" not in err
    else:  # content damage in a large file: refused on open while the file is small
        with pytest.raises(IndexFormatError, match="checksum differs"):
            Index.open(ix)
        monkeypatch.setattr(reader, "HASHED_ON_OPEN", 0)  # as if it were beyond that size
        Index.open(ix)  # then content damage is left to --verify (it reads every value)


def test_good_index_verifies(ix: Path, capsys: pytest.CaptureFixture) -> None:
    assert verify(ix) == []
    assert cli_main(["info", "--verify", "--index", str(ix)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {ix} version v-") and "10 images, 1 skipped" in out
    assert cli_main(["info", "--verify", "--json", "--index", str(ix)]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []


def test_verify_cli_in_a_real_process(ix: Path) -> None:
    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "imgrec", "info", "--verify", "--index",
                               str(ix)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    good = run()
    assert good.returncode == 0 and good.stdout.startswith("ok: ")
    truncate("histograms.npy", 0.7)(version(ix))
    sql("UPDATE images SET row = 42 WHERE row = 0")(version(ix))
    bad = run()
    assert bad.returncode == 2
    lines = [ln for ln in bad.stdout.splitlines() if ln.startswith("problem: ")]
    assert len(lines) == 2
    assert "histograms.npy" in lines[0] and "catalog.sqlite" in lines[1]
    assert "Traceback" not in bad.stderr


def test_current_pointer_damage(ix: Path) -> None:
    (ix / "CURRENT").write_text("v-does-not-exist\n")
    assert any("v-does-not-exist" in p and "does not exist" in p for p in verify(ix))
    with pytest.raises(IndexFormatError, match="v-does-not-exist"):
        Index.open(ix)
    (ix / "CURRENT").write_text("../../etc\n")
    assert any("CURRENT" in p for p in verify(ix))
    with pytest.raises(IndexFormatError, match="CURRENT"):
        Index.open(ix)
    (ix / "CURRENT").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(IndexFormatError, match="CURRENT"):
        Index.open(ix)
    (ix / "CURRENT").unlink()
    assert any("no index" in p for p in verify(ix))
    with pytest.raises(IndexNotFoundError):
        Index.open(ix)


def test_build_over_damaged_index_rebuilds(ix: Path, built: Path, monkeypatch) -> None:
    """A sync never trusts a damaged previous version: it notes it and rebuilds."""
    truncate("embeddings.npy", 0.5)(version(ix))
    with threadpool_limits(limits=1, user_api="blas"):
        r = build_index(built.parent / "gallery", ix, embedder=TinyEmbedder(), workers=0)
    assert r.computed == 10 and any("not reusable" in n for n in r.notes)
    assert verify(ix) == []

    # files beyond the size checked on every open: the damaged rows alone are recomputed
    monkeypatch.setattr(reader, "HASHED_ON_OPEN", 0)
    poke("embeddings.npy", 2, np.nan, 0)(version(ix))  # content damage in two rows
    poke("histograms.npy", 5, np.inf, 0)(version(ix))
    with threadpool_limits(limits=1, user_api="blas"):
        r = build_index(built.parent / "gallery", ix, embedder=TinyEmbedder(), workers=0)
    assert r.computed == 2 and any("2 rows" in n and "damaged" in n for n in r.notes)
    assert verify(ix) == []


def test_foreign_folder_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "CURRENT").write_text("v-1\n")
    (tmp_path / "v-1").mkdir()
    (tmp_path / "v-1" / "manifest.json").write_text('{"name": "something else"}')
    with pytest.raises(IndexFormatError, match="format version"):
        Index.open(tmp_path)
    assert verify(tmp_path)
    with pytest.raises(ImgrecError):
        Index.open(tmp_path / "nothing-here")
