"""imgrec.build.builder.build_index: counting, skipping bad files with reasons, errors, workers."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import TinyEmbedder

from imgrec import Index, build_index
from imgrec.build import builder as build_mod
from imgrec.build.lock import BuildLock
from imgrec.errors import BuildLockedError, ImgrecError
from imgrec.features.color import histogram
from imgrec.features.recipe import frame
from imgrec.images import load_image, prepare
from imgrec.index.writer import FORMAT_VERSION, current_version


def _expected_features(path: Path, embedder) -> tuple[np.ndarray, np.ndarray]:
    """What a default build stores: recipe v2, the whole image letterboxed on white, then
    the signed square root of the backbone's unit vector, L2-normalised."""
    work = prepare(load_image(path)[0])
    raw = embedder.embed(frame(work, embedder.input_size, "letterbox")[None])[0]
    root = np.sign(raw) * np.sqrt(np.abs(raw.astype(np.float64)))
    return (root / np.linalg.norm(root)).astype(np.float32), histogram(work)


def test_build_counts_skips_and_features(write_gallery, broken_files, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "gallery")  # 3 families x 3 real-photo variants
    for name, (content, _) in broken_files.items():
        (gallery / "broken").mkdir(exist_ok=True)
        (gallery / "broken" / name).write_bytes(content)
    (gallery / "notes.txt").write_text("not scanned")
    (gallery / ".hidden.jpg").write_bytes(b"")
    progress = []
    report = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0,
                         progress=progress.append)

    assert report.indexed == report.added == report.computed == 9
    assert (report.updated, report.moved, report.removed, report.unchanged) == (0, 0, 0, 0)
    assert report.model == "tiny-test" and report.version
    skipped = dict(report.skipped)
    assert sorted(skipped) == sorted(f"broken/{n}" for n in broken_files)
    for name, (_, reason) in broken_files.items():
        assert re.search(reason, skipped[f"broken/{name}"]), (name, skipped[f"broken/{name}"])
    summary = report.summary()
    assert "indexed 9 images" in summary and "skipped 4" in summary and "images/s" in summary
    assert tiny_embedder.images == 9  # each image embedded exactly once

    # progress: a features stage counting up to every file, then the write stage
    feats = [p for p in progress if p.stage == "features"]
    assert feats[-1].done == feats[-1].total == 13
    assert [p.done for p in feats] == sorted(p.done for p in feats)
    writes = [(p.done, p.total) for p in progress if p.stage == "write"]
    assert writes == [(0, 9), (9, 9)]  # started, then published

    idx = Index.open(tmp_path / "index", embedder=tiny_embedder)
    assert len(idx) == 9
    m = idx.manifest
    assert (m.format_version, m.model, m.count, m.skipped) == (FORMAT_VERSION, "tiny-test", 9, 4)
    assert Path(m.gallery_root) == gallery.resolve()
    assert (m.embedding_dim, m.histogram_dim, m.pca_components) == (48, 768, 8)
    assert sorted(p for p, _ in idx.skipped()) == sorted(skipped)
    paths = idx.all_paths()
    assert paths == sorted(paths) and all(p.endswith(".jpg") for p in paths)
    for row, rel in enumerate(paths):  # rows aligned with the catalog
        emb, hist = _expected_features(gallery / rel, tiny_embedder)
        np.testing.assert_allclose(idx.embeddings[row], emb, atol=1e-6)
        np.testing.assert_array_equal(idx.histograms[row], hist)
    entries = {e.path: e for e in idx.entries()}
    orig = entries["chelsea/chelsea_orig.jpg"]
    assert (orig.format, orig.mode, orig.error) == ("JPEG", "RGB", None)
    assert (orig.width, orig.height) == Image.open(gallery / "chelsea/chelsea_orig.jpg").size
    assert orig.size == (gallery / "chelsea/chelsea_orig.jpg").stat().st_size
    assert len(orig.sha256) == 64
    assert entries["broken/empty.jpg"].row is None


def test_odd_images_are_all_indexed(photos, tiny_embedder, tmp_path):
    g = tmp_path / "odd"
    g.mkdir()
    cat, coffee = photos["chelsea"], photos["coffee"]
    Image.new("RGB", (1, 1), (200, 10, 10)).save(g / "dot.png")
    rgba = coffee.copy()
    rgba.putalpha(128)
    rgba.save(g / "rgba.png")
    coffee.convert("LA").save(g / "la.png")
    cat.quantize(16).save(g / "pal.png", transparency=0)
    coffee.convert("CMYK").save(g / "cmyk.jpg")
    Image.fromarray(np.asarray(cat.convert("L"), np.uint16) * 257).save(g / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    cat.transpose(Image.Transpose.ROTATE_90).save(g / "rotated.jpg", exif=exif.tobytes())
    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(g / "anim.gif", save_all=True, append_images=frames[1:])
    cat.save(g / "cat.webp")
    cat.save(g / "cat.bmp")
    cat.save(g / "cat.TIFF")
    report = build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert report.skipped == []
    assert report.indexed == 11
    entries = {e.path: e for e in Index.open(tmp_path / "ix").entries()}
    assert (entries["rotated.jpg"].width, entries["rotated.jpg"].height) == cat.size  # upright
    assert '"Orientation": 6' in entries["rotated.jpg"].exif
    assert entries["cmyk.jpg"].mode == "CMYK"
    assert entries["deep16.png"].mode.startswith("I")
    assert (entries["dot.png"].width, entries["dot.png"].height) == (1, 1)
    assert entries["anim.gif"].format == "GIF"
    assert entries["cat.TIFF"].format == "TIFF"


def test_empty_gallery(tmp_path, tiny_embedder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgrecError, match="no images found"):
        build_index(tmp_path / "empty", tmp_path / "ix", embedder=tiny_embedder, workers=0)
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    with pytest.raises(ImgrecError, match="no images found"):
        build_index(tmp_path / "empty", tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert current_version(tmp_path / "ix") is None
    with pytest.raises(ImgrecError, match="not found"):
        build_index(tmp_path / "missing", tmp_path / "ix", embedder=tiny_embedder)


def test_all_broken_gallery_keeps_the_previous_index(write_gallery, broken_files, tiny_embedder,
                                                     tmp_path):
    index_dir = tmp_path / "index"
    good = write_gallery(tmp_path / "good", names=("coffee",), variants=2)
    first = build_index(good, index_dir, embedder=tiny_embedder, workers=0)
    before = Index.open(index_dir)
    assert len(before) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    for name, (content, _) in broken_files.items():
        (bad / name).write_bytes(content)
    with pytest.raises(ImgrecError, match=r"none of the 4 files .* could be read.*previous "
                                          r"index is unchanged"):
        build_index(bad, index_dir, embedder=tiny_embedder, workers=0)
    after = Index.open(index_dir)
    assert after.version == before.version == first.version
    assert after.all_paths() == before.all_paths()
    assert not list(index_dir.glob(".tmp-*"))
    # and with no previous index, nothing is published
    with pytest.raises(ImgrecError, match="could be read"):
        build_index(bad, tmp_path / "fresh", embedder=tiny_embedder, workers=0)
    assert current_version(tmp_path / "fresh") is None


def test_workers_give_the_same_features(write_gallery, tiny_embedder, tmp_path):
    names = ("chelsea", "coffee", "astronaut")
    gallery = write_gallery(tmp_path / "g", names=names, variants=6)
    n = len(names) * 6
    assert n >= 2 * build_mod.TASK_FILES  # large enough for the worker pool to be used
    r0 = build_index(gallery, tmp_path / "i0", embedder=tiny_embedder, workers=0)
    r2 = build_index(gallery, tmp_path / "i2", embedder=tiny_embedder, workers=2)
    assert r0.indexed == r2.indexed == n and r0.skipped == r2.skipped == []
    a, b = Index.open(tmp_path / "i0"), Index.open(tmp_path / "i2")
    assert a.all_paths() == b.all_paths()
    np.testing.assert_array_equal(np.asarray(a.histograms), np.asarray(b.histograms))
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    np.testing.assert_array_equal(np.asarray(a.pca_histograms), np.asarray(b.pca_histograms))
    ea = [(e.path, e.sha256, e.width, e.height, e.mode) for e in a.entries()]
    assert ea == [(e.path, e.sha256, e.width, e.height, e.mode) for e in b.entries()]


def test_rebuild_reuses_unchanged_files(write_gallery, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee"), variants=2)
    build_index(gallery, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    before = Index.open(tmp_path / "ix")
    again = build_index(gallery, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert (again.unchanged, again.computed, again.added, again.indexed) == (4, 0, 0, 4)
    after = Index.open(tmp_path / "ix")
    np.testing.assert_array_equal(np.asarray(after.embeddings), np.asarray(before.embeddings))
    np.testing.assert_array_equal(np.asarray(after.histograms), np.asarray(before.histograms))


def test_index_inside_gallery_and_lock(write_gallery, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("coffee",), variants=1)
    with pytest.raises(ImgrecError, match="must not lie inside the gallery"):
        build_index(gallery, gallery / "index", embedder=tiny_embedder, workers=0)
    with BuildLock(tmp_path / "ix"), pytest.raises(BuildLockedError, match="already running"):
        build_index(gallery, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    report = build_index(gallery, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert report.indexed == 1
    manifest = json.loads((current_version(tmp_path / "ix") / "manifest.json").read_text())
    assert manifest["pca_components"] == 1 and manifest["count"] == 1
    res = Index.open(tmp_path / "ix", embedder=tiny_embedder).search(
        [gallery / "coffee/coffee_orig.jpg"], k=5)
    assert [h.path for h in res.per_query[0]] == ["coffee/coffee_orig.jpg"]


def test_duplicate_files_are_both_indexed_and_tie_by_row(photos, tiny_embedder, tmp_path):
    g = tmp_path / "g"
    g.mkdir()
    photos["flower"].save(g / "a.jpg")
    (g / "b.jpg").write_bytes((g / "a.jpg").read_bytes())
    photos["china"].save(g / "c.jpg")
    report = build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert report.indexed == 3 and report.skipped == []
    idx = Index.open(tmp_path / "ix", embedder=tiny_embedder)
    np.testing.assert_array_equal(idx.embeddings[0], idx.embeddings[1])
    np.testing.assert_array_equal(idx.histograms[0], idx.histograms[1])
    for method in ("embedding", "color", "pca"):
        hits = idx.search([g / "b.jpg"], method=method, k=3).per_query[0]
        assert [h.path for h in hits] == ["a.jpg", "b.jpg", "c.jpg"], method
        assert hits[0].score == pytest.approx(hits[1].score, abs=0)


def test_file_name_that_is_not_utf8(photos, tiny_embedder, tmp_path):
    g = tmp_path / "g"
    g.mkdir()
    photos["coffee"].save(g / "ok.jpg")
    photos["china"].save(os.fsencode(g) + b"/caf\xe9.jpg")  # Latin-1 name, invalid UTF-8
    report = build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert report.indexed == 1
    assert report.skipped == [("caf\\xe9.jpg", "file name is not valid UTF-8: rename the "
                               "file to index it")]
    idx = Index.open(tmp_path / "ix")
    assert idx.all_paths() == ["ok.jpg"]
    assert idx.skipped() == report.skipped


def test_progress_counts_images_whose_features_are_stored(write_gallery, tmp_path):
    """A decoded image waiting for the CNN is not done: when the embedder starts a batch,
    the progress reported so far counts only images whose features were already stored."""
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee", "astronaut", "rocket"),
                            variants=4)
    (gallery / "broken.jpg").write_bytes(b"not an image")
    progress: list = []

    seen: list[tuple[int, int]] = []  # (images embedded before a call, progress done then)

    class Watching(TinyEmbedder):
        def embed(self, crops):
            seen.append((self.images, progress[-1].done if progress else 0))
            return super().embed(crops)

    emb = Watching()
    build_index(gallery, tmp_path / "ix", embedder=emb, workers=0, batch_size=16,
                progress=progress.append)
    assert seen and seen[0][0] == 0
    for embedded, done in seen:
        assert done <= embedded + 1, seen  # + the broken file, finished when read
    feats = [p for p in progress if p.stage == "features"]
    assert feats[-1].done == feats[-1].total == 17
    assert [p.done for p in feats] == sorted(p.done for p in feats)
    assert feats[-1].rate == pytest.approx((17 - feats[-1].start) / feats[-1].elapsed)
