"""Exclude rules, .imgrecignore and the pixel limit in a build: what a sync adds and drops."""

from __future__ import annotations

import os

import pytest

from imgrec import Index, build_index
from imgrec.errors import ImgrecError


def _indexed(index_dir, emb) -> list[str]:
    return Index.open(index_dir, embedder=emb).all_paths()


def test_changing_exclude_rules_adds_and_drops_exactly_the_affected_files(
        write_gallery, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g")  # chelsea/, coffee/, astronaut/ x 3
    out = tmp_path / "index"
    r = build_index(gallery, out, embedder=tiny_embedder, workers=0, exclude=["coffee/"])
    assert r.indexed == 6 and not r.skipped  # excluded files are not listed as skipped
    assert not any(p.startswith("coffee/") for p in _indexed(out, tiny_embedder))

    # a rules file at the gallery root drops astronaut's crop; coffee/ comes back
    (gallery / ".imgrecignore").write_text("# drafts\n*_crop.jpg\n!chelsea/chelsea_crop.jpg\n")
    r = build_index(gallery, out, embedder=tiny_embedder, workers=0)
    everything = _indexed(out, tiny_embedder)
    assert (r.added, r.removed, r.unchanged) == (2, 1, 5)
    assert "astronaut/astronaut_crop.jpg" not in everything
    assert "coffee/coffee_crop.jpg" not in everything
    assert {"coffee/coffee_orig.jpg", "coffee/coffee_flip.jpg",
            "chelsea/chelsea_crop.jpg"} <= set(everything)
    assert r.computed == 2  # only the two coffee files came back, nothing else recomputed

    # a pattern on the command line applies after the file (here: undoing one of its rules)
    r = build_index(gallery, out, embedder=tiny_embedder, workers=0,
                    exclude=["!astronaut/astronaut_crop.jpg"])
    assert (r.added, r.removed, r.unchanged) == (1, 0, 7)
    assert "astronaut/astronaut_crop.jpg" in _indexed(out, tiny_embedder)

    # no rules file read: everything
    r = build_index(gallery, out, embedder=tiny_embedder, workers=0, ignore_file=None)
    assert r.indexed == 9 and r.added == 1 and r.removed == 0


def test_scan_problems_are_skipped_with_their_reason(write_gallery, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea",))
    os.mkfifo(gallery / "pipe.jpg")
    os.symlink("loop.jpg", gallery / "loop.jpg")
    r = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0)
    skipped = dict(r.skipped)
    assert r.indexed == 3
    assert skipped["pipe.jpg"] == "not a regular file (a FIFO)"
    assert "symbolic link loop" in skipped["loop.jpg"]
    # excluded, they are neither indexed nor listed
    r = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0,
                    exclude=["pipe.jpg", "loop.jpg"])
    assert not r.skipped and r.indexed == 3


def test_max_megapixels_skips_with_a_reason_naming_the_option(write_gallery, tiny_embedder,
                                                              tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea",), variants=1)  # 451 x 300
    r = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0,
                    exclude=[], max_megapixels=0.5)
    assert r.indexed == 1
    (gallery / "big").mkdir()
    from PIL import Image

    Image.new("RGB", (1000, 800), (9, 9, 9)).save(gallery / "big" / "big.png")
    r = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0,
                    max_megapixels=0.5)
    assert "--max-megapixels" in dict(r.skipped)["big/big.png"]
    r = build_index(gallery, tmp_path / "index", embedder=tiny_embedder, workers=0,
                    max_megapixels=1)  # raised: the skipped file is retried and indexed
    assert r.indexed == 2 and not r.skipped
    with pytest.raises(ImgrecError, match="max_megapixels"):
        build_index(gallery, tmp_path / "index", embedder=tiny_embedder, max_megapixels=0)
    with pytest.raises(ImgrecError, match="invalid exclude rule"):
        build_index(gallery, tmp_path / "index", embedder=tiny_embedder, exclude=["\\"])
