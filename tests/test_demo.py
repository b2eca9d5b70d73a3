"""Tests for the built-in demo gallery builder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgrec import demo
from imgrec.demo import MARKER, SOURCES, DemoGallery, build_demo_gallery, family_of

OTHER_FORMATS = {".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _files(root: Path) -> list[str]:
    """All image files under ``root`` as sorted relative posix paths (marker excluded)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                  and p.name != MARKER)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> DemoGallery:
    """One demo gallery shared by the module's tests."""
    return build_demo_gallery(tmp_path_factory.mktemp("demo") / "gallery")


def test_size_and_families(gallery: DemoGallery) -> None:
    assert 100 <= gallery.count <= 200
    assert len(gallery.families) >= 8
    listed = sorted(f for files in gallery.families.values() for f in files)
    assert listed == _files(gallery.root)
    assert len(listed) == gallery.count
    names = {s.name for s in SOURCES}
    for family, files in gallery.families.items():
        assert family in names
        assert files == sorted(files)
        assert all(family_of(f) == family for f in files)
        assert f"{family}/{family}_orig.jpg" in files
        assert len(files) >= 10


def test_sources_are_credited() -> None:
    assert 10 <= len(SOURCES) <= 16
    assert len({s.name for s in SOURCES}) == len(SOURCES)
    for src in SOURCES:
        assert src.package in {"scikit-image", "scikit-learn", "matplotlib"}
        assert src.loader and src.credit


def test_every_file_opens_and_verifies(gallery: DemoGallery) -> None:
    for rel in _files(gallery.root):
        with Image.open(gallery.root / rel) as im:
            im.verify()
        with Image.open(gallery.root / rel) as im:
            im.load()
            assert im.mode in {"RGB", "L"}
            assert min(im.size) >= 50


def test_formats_are_mixed(gallery: DemoGallery) -> None:
    suffixes = {Path(f).suffix for f in _files(gallery.root)}
    assert ".jpg" in suffixes
    assert ".png" in suffixes
    assert suffixes & OTHER_FORMATS
    jpegs = sum(f.endswith(".jpg") for f in _files(gallery.root))
    assert jpegs > gallery.count * 0.8


def test_exif_rotated_file(gallery: DemoGallery) -> None:
    rotated = [f for f in _files(gallery.root) if "exif6" in f]
    assert len(rotated) == 1
    with Image.open(gallery.root / rotated[0]) as im:
        assert im.getexif().get(0x0112) == 6
        upright = ImageOps.exif_transpose(im).convert("RGB")
    family = family_of(rotated[0])
    with Image.open(gallery.root / family / f"{family}_orig.jpg") as orig:
        reference = orig.convert("RGB")
    assert upright.size == reference.size
    diff = np.abs(np.asarray(upright, float) - np.asarray(reference, float)).mean()
    assert diff < 5.0
    with Image.open(gallery.root / family / f"{family}_flip.jpg") as flip:
        assert not flip.getexif()  # other files carry no EXIF at all


def test_deterministic_and_progress(gallery: DemoGallery, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    again = build_demo_gallery(tmp_path / "again", progress=lambda d, t: calls.append((d, t)))
    assert again.families == gallery.families
    assert _files(again.root) == _files(gallery.root)
    for rel in [*_files(gallery.root), MARKER]:
        assert (again.root / rel).read_bytes() == (gallery.root / rel).read_bytes(), rel
    assert calls == [(i, gallery.count) for i in range(1, gallery.count + 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary leftovers


def test_second_call_does_not_rewrite(gallery: DemoGallery) -> None:
    before = {p: p.stat().st_mtime_ns for p in gallery.root.rglob("*")}
    calls: list[tuple[int, int]] = []
    again = build_demo_gallery(gallery.root, progress=lambda d, t: calls.append((d, t)))
    assert again == gallery
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in gallery.root.rglob("*")} == before


def test_incomplete_gallery_is_rebuilt_and_overwrite(gallery: DemoGallery, tmp_path: Path) -> None:
    root = tmp_path / "g"
    shutil.copytree(gallery.root, root)
    victim = root / gallery.families["chelsea"][0]
    victim.unlink()
    rebuilt = build_demo_gallery(root)  # marker lists a missing file: not complete
    assert victim.is_file() and rebuilt.count == gallery.count
    marker_mtime = (root / MARKER).stat().st_mtime_ns
    assert build_demo_gallery(root, overwrite=True).count == gallery.count
    assert (root / MARKER).stat().st_mtime_ns != marker_mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a demo gallery"):
        build_demo_gallery(tmp_path)
    with pytest.raises(ValueError, match="not a demo gallery"):
        build_demo_gallery(tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="not a folder"):
        build_demo_gallery(tmp_path / "notes.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_crash_leaves_nothing_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[Path] = []
    real_save = demo._save

    def flaky_save(img: Image.Image, path: Path, quality: int, orientation: int) -> None:
        if len(saved) == 5:
            raise OSError("disk full")
        real_save(img, path, quality, orientation)
        saved.append(path)

    monkeypatch.setattr(demo, "_save", flaky_save)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="disk full"):
        build_demo_gallery(tmp_path / "empty")
    assert list(tmp_path.iterdir()) == [tmp_path / "empty"]
    assert not any((tmp_path / "empty").iterdir())


def test_family_of() -> None:
    assert family_of("chelsea/chelsea_flip.jpg") == "chelsea"
    assert family_of("./coins/sub/x.png") == "coins"
    assert family_of("coins\\coins_orig.jpg") == "coins"
    assert family_of("loose.jpg") == ""
