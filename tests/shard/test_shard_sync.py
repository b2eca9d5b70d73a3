"""Keeping a sharded index up to date: a sync diffs the gallery against every shard and
gives what the unsharded sync of the same gallery gives; killed part-way it leaves the
sharded index as it was and resumes; ``watch`` and ``info --verify`` work on it."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from support import run_cli

from imgrec import Index, Stored, build_index
from imgrec.build.ray_producer import RayFeatures
from imgrec.build.watch import watch
from imgrec.features.recipe import recipe_of
from imgrec.insights.labels import search_by_label
from imgrec.shard.cli import verify_shards
from imgrec.shard.sharded import ShardedIndex
from imgrec.shard.split import MANIFEST, ShardedManifest, open_shard, split

ROOT = Path(__file__).resolve().parents[2]
ULPS = 1e-12  # float64 scores agree to rounding (see test_sharded.py)
METHODS = (("embedding", "cosine"), ("embedding", "all"), ("color", "chi2"),
           ("pca", "cosine"), ("pca", "euclidean"))


def _setup(demo_cli, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a copy of the demo gallery, the demo index split into 2 shards, a copy of the
    unsharded demo index): both indexes then sync the same changed gallery."""
    gallery = tmp_path / "gallery"
    shutil.copytree(demo_cli.gallery, gallery)
    sharded = split(demo_cli.index, tmp_path / "sharded", shards=2)
    ref = tmp_path / "ref"
    shutil.copytree(demo_cli.index, ref)
    return gallery, sharded, ref


def _change(gallery: Path, new: int = 3) -> None:
    """Remove 3 images, move 2 into a new folder, give 1 other content, and add ``new``
    images the index does not hold (mirrored, rotated copies, re-encoded)."""
    files = sorted(gallery.rglob("*.jpg"))
    for p in files[:3]:
        p.unlink()
    (gallery / "moved").mkdir()
    for p in files[40:42]:
        p.rename(gallery / "moved" / p.name)
    for i, p in enumerate(files[60:60 + new]):
        img = ImageOps.mirror(Image.open(p).convert("RGB")).rotate(7)
        img.save(gallery / f"new-{i:02d}.jpg", quality=90)
    ImageOps.flip(Image.open(files[100]).convert("RGB")).save(files[100], quality=85)


def _rows(folder: Path) -> dict[str, tuple[Index, int]]:
    """Every indexed path of the sharded index at ``folder``: its shard and local row."""
    out: dict[str, tuple[Index, int]] = {}
    for s in ShardedManifest.read(folder).shards:
        idx = open_shard(folder / s.name, s.version)
        for e in idx.entries():
            if e.row is not None:
                assert e.path not in out, f"{e.path} is in two shards"
                out[e.path] = (idx, e.row)
    return out


def assert_same_content(folder: Path, ref: Index, exact: bool = True) -> None:
    """Every row of ``ref`` in exactly one shard, with the same features and labels (the
    embeddings byte-identical, or with ``exact=False`` within cosine 0.99999), the same
    skipped files, and the one PCA model of ``ref`` in every shard."""
    rows = _rows(folder)
    want = {e.path: e.row for e in ref.entries() if e.row is not None}
    assert set(rows) == set(want)
    for path, r in want.items():
        idx, lr = rows[path]
        np.testing.assert_array_equal(idx.histograms[lr], ref.histograms[r])
        np.testing.assert_array_equal(idx.pca_histograms[lr], ref.pca_histograms[r])
        np.testing.assert_array_equal(idx.labels_top5[lr], ref.labels_top5[r])
        a, b = (np.asarray(x, np.float64) for x in (idx.embeddings[lr], ref.embeddings[r]))
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            assert a @ b >= 0.99999
    m = ShardedManifest.read(folder)
    assert m.count == len(ref) and m.pca_components == ref.pca().n_components
    for s in m.shards:
        pca = open_shard(folder / s.name, s.version).pca()
        np.testing.assert_array_equal(pca.components, ref.pca().components)
        np.testing.assert_array_equal(pca.mean, ref.pca().mean)
    skipped = [p for s in m.shards for p in open_shard(folder / s.name, s.version).skipped()]
    assert sorted(skipped) == sorted(ref.skipped())


def _same_ranking(a, b) -> None:
    """The same hits up to the order of equal scores: the same paths, each with the same
    score (and metrics), the scores in the same order."""
    assert len(a) == len(b)
    want = {h.path: h for h in b}
    assert {h.path for h in a} == set(want)
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=ULPS, rel=0)
        assert x.score == pytest.approx(want[x.path].score, abs=ULPS, rel=0)
        if y.metrics:
            assert x.metrics == pytest.approx(want[x.path].metrics, abs=ULPS, rel=0)


def assert_same_answers(sharded: ShardedIndex, ref: Index, gallery: Path) -> None:
    """Every method and metric, 1 and 5 queries (stored: a new, a moved and unchanged
    images; and an image file), refine and label search, each over every row."""
    k = len(ref) + 10
    paths = ref.all_paths()
    five = [Stored("new-00.jpg"), Stored(next(p for p in paths if p.startswith("moved/"))),
            Stored(paths[7]), Stored(paths[120]), str(gallery / paths[50])]
    for method, metric in METHODS:
        for q in (five[:1], five):
            a, b = sharded.search(q, method, metric, k), ref.search(q, method, metric, k)
            assert (a.method, a.metric, a.queries) == (b.method, b.metric, b.queries)
            for x, y in zip(a.per_query, b.per_query, strict=True):
                _same_ranking(x, y)
            _same_ranking(a.combined, b.combined)
    neg = [Stored(paths[30])]
    _same_ranking(sharded.search(five, k=k, negatives=neg).combined,
                  ref.search(five, k=k, negatives=neg).combined)
    for text in ("cat", "coffee"):
        _same_ranking(sharded.search_by_label(text, k).combined,
                      search_by_label(ref, text, k).combined)


def test_a_synced_sharded_index_equals_the_synced_unsharded_index(ray_cluster, demo_cli,
                                                                  real_embedder, tmp_path):
    gallery, out, ref_dir = _setup(demo_cli, tmp_path)
    _change(gallery)
    progress = []
    report = build_index(gallery, out, embedder=real_embedder, workers=0,
                         progress=progress.append)
    want = build_index(gallery, ref_dir, embedder=real_embedder, workers=0)
    counts = ("indexed", "added", "updated", "moved", "removed", "unchanged", "computed",
              "skipped")
    assert [getattr(report, c) for c in counts] == [getattr(want, c) for c in counts]
    assert (report.added, report.moved, report.removed, report.updated) == (3, 2, 3, 1)
    assert report.computed == 4 and report.index_dir == out
    features = [p for p in progress if p.stage == "features"]
    assert features[-1].done == features[-1].total == 170
    assert progress[-1].stage == "write" and progress[-1].done == 170
    m = ShardedManifest.read(out)
    assert [s.count for s in m.shards] == [85, 85]  # the new files went to the smaller shard
    assert m.gallery_root == str(gallery)
    ref = Index.open(ref_dir, embedder=real_embedder)
    assert_same_content(out, ref)
    sharded = ShardedIndex.open(out, embedder=real_embedder)
    try:
        assert sorted(sharded.all_paths()) == sorted(ref.all_paths())
        assert_same_answers(sharded, ref, gallery)
    finally:
        sharded.close()
    assert verify_shards(out, m) == []

    # nothing changed: every shard keeps its version
    again = build_index(gallery, out, embedder=real_embedder, workers=0)
    assert again.computed == 0 and again.unchanged == 170
    assert "no shard was rewritten" in again.notes[-1]
    assert ShardedManifest.read(out) == m

    # a sync killed after its commit, before switching a shard: readers follow the
    # manifest, --verify names the lag, and the next sync switches the shard
    shard = out / m.shards[1].name
    older = sorted(p.name for p in shard.glob("v-*") if p.name != m.shards[1].version)[-1]
    (shard / "CURRENT").write_text(older + "\n")
    # ... and a version a killed sync wrote but never committed (a complete copy)
    orphan = shard / "v-29991231T000000-000000000"
    shutil.copytree(shard / m.shards[1].version, orphan)
    assert len(open_shard(shard, m.shards[1].version)) == 85
    assert any("interrupted sync" in p for p in verify_shards(out, m))
    build_index(gallery, out, embedder=real_embedder, workers=0)
    assert (shard / "CURRENT").read_text().strip() == m.shards[1].version
    assert not orphan.exists() and verify_shards(out, ShardedManifest.read(out)) == []


# The sync pauses (as a slow or stuck one would) once two computed chunks are saved; the
# test kills it there, part-way through the new images' features.
SYNC = """
import sys, time
from pathlib import Path
from imgrec import CNNEmbedder, build_index
def progress(p):
    if p.stage == "features" and len(list(Path(sys.argv[2]).glob("work/*/chunk-*"))) >= 2:
        print("paused", p.done, flush=True)
        time.sleep(600)
build_index(sys.argv[1], sys.argv[2], embedder=CNNEmbedder(), workers=0, batch_size=2,
            progress=progress)
"""


def test_a_killed_sync_leaves_the_sharded_index_as_it_was_and_resumes(
        ray_cluster, demo_cli, real_embedder, tmp_path):
    gallery, out, ref_dir = _setup(demo_cli, tmp_path)
    _change(gallery, new=8)
    before = (out / MANIFEST).read_bytes()
    env = {**os.environ, "IMGREC_FLUSH_EVERY": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SYNC, str(gallery), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert line.startswith("paused") and proc.returncode == -signal.SIGKILL, stderr
    # the sharded index is as it was: the same manifest, every shard at its version
    assert (out / MANIFEST).read_bytes() == before
    m = ShardedManifest.read(out)
    assert verify_shards(out, m) == [] and m.count == 170
    assert sorted(_rows(out)) == sorted(Index.open(demo_cli.index).all_paths())
    # resumed on the Ray path: the saved features are reused, the rest computed there
    report = build_index(gallery, out, embedder=real_embedder, producer=RayFeatures())
    assert report.resumed >= 2 and report.resumed + report.computed == 9  # 8 new, 1 changed
    assert not list(out.glob("work/*/chunk-*"))
    build_index(gallery, ref_dir, embedder=real_embedder, workers=0)
    assert_same_content(out, Index.open(ref_dir), exact=False)
    assert sorted(s.count for s in ShardedManifest.read(out).shards) == [87, 88]


def test_watch_keeps_a_sharded_index_in_sync(demo_cli, real_embedder, cli_env, tmp_path):
    gallery, out, _ = _setup(demo_cli, tmp_path)
    synced: queue.Queue = queue.Queue()
    stop = threading.Event()
    t = threading.Thread(target=watch, args=(gallery, out), daemon=True,
                         kwargs={"debounce": 0.5, "on_sync": synced.put, "stop": stop,
                                 "embedder": real_embedder, "workers": 0})
    t.start()
    try:
        first = synced.get(timeout=300)
        assert first.unchanged == 170 and first.computed == 0
        src = sorted(gallery.rglob("*.jpg"))[5]
        ImageOps.mirror(Image.open(src).convert("RGB")).save(gallery / "new.jpg", quality=90)
        (gallery / sorted(p.relative_to(gallery) for p in gallery.rglob("*.jpg"))[0]).unlink()
        end = time.monotonic() + 300
        while time.monotonic() < end:
            r = synced.get(timeout=300)
            if r.added or r.removed:
                break
        assert (r.added, r.removed, r.indexed) == (1, 1, 170)
    finally:
        stop.set()
        t.join(timeout=120)
    paths = _rows(out)
    assert "new.jpg" in paths and len(paths) == 170
    verify = run_cli("info", "--verify", "--index", out, env=cli_env)
    assert verify.returncode == 0 and "ok: sharded index" in verify.stdout, verify.stderr
    assert "2 shards checked (0 problems)" in verify.stdout


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_sync_now_in_the_dashboard_syncs_a_sharded_index(ray_cluster, demo_cli, real_embedder,
                                                         monkeypatch, tmp_path,
                                                         tmp_path_factory):
    from streamlit.testing.v1 import AppTest

    gallery, out, _ = _setup(demo_cli, tmp_path)
    build_index(gallery, out, embedder=real_embedder, workers=0)  # now of this gallery
    monkeypatch.setenv("IMGREC_INDEX_DIR", str(out))
    monkeypatch.setenv("IMGREC_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    assert not at.exception, [e.value for e in at.exception]
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("0", "0", "0")
    assert at.button(key="sync").disabled
    files = sorted(gallery.rglob("*.jpg"))
    for i, p in enumerate(files[10:12]):
        ImageOps.mirror(Image.open(p).convert("RGB")).save(gallery / f"new-{i}.jpg")
    files[-1].unlink()
    time.sleep(11)  # the scan is kept for 10 s
    at.run()
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("2", "0", "1")
    at.button(key="sync").click().run()
    end = time.monotonic() + 300
    while ShardedManifest.read(out).count != 171 and time.monotonic() < end:
        time.sleep(0.5)
    for _ in range(60):
        at.run()
        if _metrics(at).get("New files") == "0" and _metrics(at)["Indexed images"] == "171":
            break
        time.sleep(1)
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("0", "0", "0")
    assert m["Indexed images"] == "171" and not at.exception
    assert {"new-0.jpg", "new-1.jpg"} <= set(_rows(out))


def test_index_syncs_a_sharded_index_from_the_command_line(demo_cli, cli_env, tmp_path):
    gallery, out = tmp_path / "g", tmp_path / "sharded"
    for fam in ("chelsea", "coffee"):
        shutil.copytree(demo_cli.gallery / fam, gallery / fam)
    made = run_cli("index", gallery, "--index", out, "--shards", "2", "--workers", "0",
                   "--quiet", env=cli_env)
    assert made.returncode == 0, made.stderr[-2000:]
    src = gallery / "chelsea/chelsea_orig.jpg"
    ImageOps.mirror(Image.open(src).convert("RGB")).save(gallery / "a-new.jpg", quality=90)
    (gallery / "coffee/coffee_orig.jpg").unlink()
    synced = run_cli("index", gallery, "--index", out, "--workers", "0", env=cli_env)
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert "added 1, updated 0, moved 0, removed 1, unchanged 23" in synced.stdout
    assert re.search(r"^features \[#+\] 24/24 100\.0%", synced.stderr, re.M), synced.stderr
    assert re.search(r"^write +\[#+\] 24/24", synced.stderr, re.M), synced.stderr
    m = ShardedManifest.read(out)
    assert [s.count for s in m.shards] == [12, 12] and "a-new.jpg" in _rows(out)
    # a sync that would leave a shard without images is refused; nothing changes
    for p in open_shard(out / m.shards[1].name, m.shards[1].version).all_paths():
        (gallery / p).unlink()
    before = (out / MANIFEST).read_bytes()
    refused = run_cli("index", gallery, "--index", out, "--workers", "0", env=cli_env)
    assert refused.returncode == 2 and "shard-001" in refused.stderr, refused.stderr
    assert "without images" in refused.stderr.strip().splitlines()[-1]
    assert (out / MANIFEST).read_bytes() == before and verify_shards(out, m) == []


def test_a_sharded_index_of_an_older_recipe_syncs_under_its_own_recipe(tmp_path, write_gallery,
                                                                      real_embedder,
                                                                      ray_cluster):
    """A new build uses recipe v3; a sync of a sharded index built with v2 keeps v2 (its
    shards cannot be recomputed in place), new files embedded as v2 embeds them."""
    gallery = write_gallery(tmp_path / "g", variants=2)
    build_index(gallery, tmp_path / "v2", embedder=real_embedder, workers=0, recipe="v2")
    sharded = split(tmp_path / "v2", tmp_path / "sharded", shards=2)
    src = next(iter(sorted(gallery.rglob("*.jpg"))))
    ImageOps.mirror(Image.open(src).convert("RGB")).save(gallery / "new.jpg", quality=90)
    report = build_index(gallery, sharded, embedder=real_embedder, workers=0)
    assert report.added == 1 and report.computed == 1
    assert ShardedManifest.read(sharded).recipe == "v2"
    shard, _ = _rows(sharded)["new.jpg"]
    assert shard.manifest.recipe == "v2" and shard.embeddings.shape[1] == 1280
    idx = ShardedIndex.open(sharded, embedder=real_embedder)
    try:
        assert idx.recipe.name == "v2" and recipe_of(idx).graph_threshold == 0.62
        hit = idx.search(gallery / "new.jpg", k=1).combined[0]  # v2's query path finds it
        assert hit.path == "new.jpg" and hit.score > 1 - 1e-5
    finally:
        idx.close()
