"""Duplicates: the demo gallery's variants group by photo, exact copies by content hash, the
blockwise pair search equals a brute-force scan, keepers, CSV, and nothing is touched."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from imgrec import Index, build_index
from imgrec.demo import family_of
from imgrec.errors import QueryError
from imgrec.insights.duplicates import (
    CSV_COLUMNS,
    DEFAULT_THRESHOLD,
    _cap,
    components,
    find_duplicates,
    near_pairs,
    write_csv,
)


def test_demo_variants_group_by_photo(demo_index):
    rep = find_duplicates(demo_index)
    # the threshold calibrated for the index's recipe (README "Duplicates")
    assert demo_index.recipe.name == "v3" and rep.threshold == 0.78 == DEFAULT_THRESHOLD
    assert rep.images == 170
    seen = set()
    for g in rep.groups:
        fams = {family_of(m.path) for m in g.members}
        assert len(fams) == 1, fams  # never across different photos
        assert g.kind == "near" and g.keeper.similarity == 1.0
        assert "_scale150" not in g.keeper.path  # an upscale carries no more detail
        sims = [m.similarity for m in g.members[1:]]
        assert sims == sorted(sims, reverse=True)
        for m in g.members[1:]:  # a star: each near the keeper, or confirmed as its picture
            assert m.similarity >= DEFAULT_THRESHOLD or (  # (a JPEG q30 copy: cosine 0.74)
                g.tier == "same picture" and m.evidence.startswith("same picture: pHash")), m
        seen |= {m.path for m in g.members}
    assert len(seen) >= 165  # (nearly) every variant is near its photo's keeper
    # stricter thresholds never merge photos; pairs computed once at a lower threshold
    # (a slider's cache) give the same groups
    pairs = near_pairs(demo_index.embeddings, demo_index.embedding_norms, 0.5)
    for t in (0.65, 0.75, 0.8, 0.95):
        strict = find_duplicates(demo_index, t)
        assert strict.to_rows() == find_duplicates(demo_index, t, pairs=pairs).to_rows()
        for g in strict.groups:
            assert len({family_of(m.path) for m in g.members}) == 1


def test_recipe_thresholds_separate_the_demo_photos(demo_index):
    """The v3 recipe's thresholds, measured on the demo (``python -m bench thresholds
    --families``): (nearly) every variant pair of one photo is at or above the candidate
    threshold, every pair of different photos below the slider's floor (the calibration the
    README gives: 0.66 at most across photos; 936 of the 949 variant pairs at 0.78)."""
    from imgrec.features.recipe import RECIPES, recipe_of

    r = recipe_of(demo_index)
    assert r is RECIPES["v3"] and (r.duplicate_threshold, r.graph_threshold) == (0.78, 0.69)
    assert (RECIPES["v2"].duplicate_threshold, RECIPES["v2"].graph_threshold) == (0.75, 0.62)
    assert (RECIPES["v1"].duplicate_threshold, RECIPES["v1"].graph_threshold) == (0.65, 0.5)
    x = np.asarray(demo_index.embeddings, np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    fams = np.array([family_of(p) for p in demo_index.all_paths()])
    same = fams[:, None] == fams[None, :]
    within = sims[np.triu(same, 1)]
    assert len(within) == 949 and (within >= r.duplicate_threshold).sum() >= 930
    assert within.min() > 0.7  # the rest (JPEG q30 and small rotations) stay close
    assert sims[~same].max() < r.duplicate_floor <= r.graph_threshold
    assert np.median(sims[~same]) > 0.3  # the square root lifts unrelated pairs (v1: 0.18)


def test_threshold_is_validated(demo_index):
    for bad in (0, -0.5, 1.5, "x"):
        with pytest.raises(QueryError, match="threshold"):
            find_duplicates(demo_index, bad)


def test_exact_copies_and_a_bigger_rescaled_copy(write_gallery, photos, tiny_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee", "astronaut"), variants=1)
    shutil.copy(gallery / "coffee/coffee_orig.jpg", gallery / "coffee/copy_a.jpg")
    shutil.copy(gallery / "coffee/coffee_orig.jpg", gallery / "copy_b.jpg")
    big = photos["chelsea"].resize((photos["chelsea"].width * 2, photos["chelsea"].height * 2))
    big.save(gallery / "chelsea/chelsea_big.jpg", quality=95)
    # recipe v1: the 0.99 cosine threshold below was set for the raw toy embedding (the
    # v2 square root raises every cosine of its all-positive vectors)
    build_index(gallery, tmp_path / "ix", embedder=tiny_embedder, workers=0, recipe="v1")
    idx = Index.open(tmp_path / "ix")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in gallery.rglob("*")}

    exact = find_duplicates(idx, near=False)
    assert [(g.kind, sorted(m.path for m in g.members)) for g in exact.groups] == [
        ("exact", ["coffee/coffee_orig.jpg", "coffee/copy_a.jpg", "copy_b.jpg"])]
    assert exact.groups[0].keeper.path == "coffee/coffee_orig.jpg"  # same size: first path
    assert {m.similarity for m in exact.groups[0].members} == {1.0}

    rep = find_duplicates(idx, 0.99)
    kinds = {g.kind: g for g in rep.groups}
    assert set(kinds) == {"exact", "near"}
    near = kinds["near"]
    assert sorted(m.path for m in near.members) == ["chelsea/chelsea_big.jpg",
                                                     "chelsea/chelsea_orig.jpg"]
    # twice the pixels but no more detail: the original stays the keeper
    assert near.keeper.path == "chelsea/chelsea_orig.jpg", near.reason
    assert near.members[1].similarity >= 0.99

    with pytest.raises(FileNotFoundError):  # no folder is created above the file named
        write_csv(rep, tmp_path / "out" / "dups.csv")
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    out = write_csv(rep, tmp_path / "out" / "dups.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    assert next(r["action"] for r in rows if r["group"] == "1") == "keep"
    assert sum(r["action"] == "keep" for r in rows) == 2
    # read-only: the gallery is exactly as it was
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in gallery.rglob("*")} == before
    assert json.loads(json.dumps(rep.to_dict()))["groups"][0]["keeper"]


def _brute(x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    n = np.linalg.norm(x64, axis=1)
    s = (x64 @ x64.T) / np.outer(n, n)
    i, j = np.nonzero(np.triu(s >= t, 1))
    return i, j, s[i, j]


def test_blockwise_pairs_equal_brute_force():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 24)).astype(np.float32)
    x = np.concatenate([base, base[:60] + 0.3 * rng.normal(size=(60, 24)).astype(np.float32),
                        base[:10]])  # near copies and exact copies
    for t in (0.5, 0.9, 0.999):
        want = _brute(x, t)
        got = near_pairs(x, None, t, max_neighbours=0, row_block=37, col_block=53)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[2], want[2], atol=1e-12)
        capped = near_pairs(x, None, t, max_neighbours=2, row_block=37, col_block=53)
        ci, cj, _ = _cap(*want, 2)
        o = np.lexsort((cj, ci))
        np.testing.assert_array_equal(capped[0], ci[o])
        np.testing.assert_array_equal(capped[1], cj[o])


def test_a_flood_of_identical_images_stays_bounded_and_connected():
    rng = np.random.default_rng(2)
    v = rng.normal(size=16).astype(np.float32)
    x = np.concatenate([np.tile(v, (600, 1)) + 1e-4 * rng.normal(size=(600, 16)).astype(np.float32),
                        rng.normal(size=(100, 16)).astype(np.float32)])
    i, j, s = near_pairs(x, None, 0.99, max_neighbours=4, row_block=128, col_block=256)
    per_row = np.bincount(np.concatenate([i, j]), minlength=len(x))
    assert len(i) <= 4 * 600 and (s >= 0.99).all()
    assert per_row[:600].min() >= 1
    comp = components(len(x), i, j)
    assert len(set(comp[:600].tolist())) == 1  # one group despite the cap
    assert not set(comp[:600].tolist()) & set(comp[600:].tolist())


def test_cli_duplicates_csv(demo_cli, cli_env, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "imgrec",
                               *map(str, args)], capture_output=True, text=True, env=cli_env,
                              timeout=600)

    out = cli("duplicates", "--index", demo_cli.index, "--csv", tmp_path / "d.csv")
    assert out.returncode == 0, out.stderr
    head = out.stdout.splitlines()[0]
    assert "duplicate groups (0 exact, " in head and "cosine >= 0.78) among 170 images" in head
    with open(tmp_path / "d.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["tier"] for r in rows} == {"same picture", "similar shots"}
    js = cli("duplicates", "--index", demo_cli.index, "--exact-only", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["groups"] == []
    bad = cli("duplicates", "--index", demo_cli.index, "--threshold", "2")
    assert bad.returncode == 2 and "threshold" in bad.stderr and "Traceback" not in bad.stderr


def test_demo_images_are_unchanged_by_duplicate_search(demo_gallery, demo_index):
    before = sorted(p.name for p in demo_gallery.rglob("*"))
    find_duplicates(demo_index)
    assert sorted(p.name for p in demo_gallery.rglob("*")) == before
    assert Image.open(demo_gallery / "chelsea/chelsea_orig.jpg").size  # still readable
