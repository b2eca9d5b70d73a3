"""The distributed build (Ray Data tasks + a CNN actor pool) gives the local build's index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from imgrec import CNNEmbedder, Index
from imgrec.build.builder import Build, build_index
from imgrec.build.ray_producer import RayFeatures

ENTRY = ("path", "row", "size", "mtime_ns", "sha256", "format", "mode", "width", "height",
         "exif", "error")


def assert_same_index(a: Index, b: Index) -> None:
    """Same catalog rows, skipped list and labels; embeddings within cosine 0.99999;
    byte-identical histograms."""
    assert [tuple(getattr(e, f) for f in ENTRY) for e in a.entries()] == [
        tuple(getattr(e, f) for f in ENTRY) for e in b.entries()]
    assert a.skipped() == b.skipped()
    cos = (np.asarray(a.embeddings, np.float64) * np.asarray(b.embeddings, np.float64)).sum(1)
    assert cos.min() >= 0.99999
    assert np.asarray(a.histograms).tobytes() == np.asarray(b.histograms).tobytes()
    assert a.has_labels and b.has_labels
    np.testing.assert_array_equal(a.labels_top5, b.labels_top5)


def test_distributed_build_of_the_demo_equals_the_local_build(ray_cluster, demo_cli, tmp_path):
    progress = []
    report = Build(demo_cli.gallery, tmp_path / "idx", embedder=CNNEmbedder(),
                   producer=RayFeatures(), progress=progress.append).run()
    local = Index.open(demo_cli.index)
    assert report.indexed == report.computed == report.added == len(local)
    assert_same_index(Index.open(tmp_path / "idx"), local)
    feats = [p for p in progress if p.stage == "features"]
    assert feats[-1].done == feats[-1].total == len(local)
    assert [p.done for p in feats] == sorted(p.done for p in feats)
    assert len(feats) > 3  # fed from the stream, not once at the end


def test_broken_files_are_skipped_as_in_a_local_build(ray_cluster, write_gallery, broken_files,
                                                      real_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee"), variants=2)
    for name, (data, _) in broken_files.items():
        (gallery / name).write_bytes(data)
    (gallery / "copy.jpg").write_bytes((gallery / "coffee/coffee_flip.jpg").read_bytes())
    local = build_index(gallery, tmp_path / "local", embedder=real_embedder, workers=0)
    two = RayFeatures(actors=2)  # two CPU actors on two CPUs still leave one to decode
    assert two.pool() == (2, 0.0, 0.5)
    dist = Build(gallery, tmp_path / "ray", embedder=CNNEmbedder(), producer=two).run()
    assert dist.skipped == local.skipped and len(dist.skipped) == len(broken_files)
    assert (dist.indexed, dist.computed) == (local.indexed, local.computed) == (5, 4)
    assert_same_index(Index.open(tmp_path / "ray"), Index.open(tmp_path / "local"))


# The driver pauses (as a slow or stuck one would) once 8 files are finished; the test
# kills it there, so the kill lands part-way, after saved chunks.
BUILD = """
import sys, time
from imgrec import CNNEmbedder
from imgrec.build.builder import Build
from imgrec.build.ray_producer import RayFeatures
def progress(p):
    if p.stage == "features" and p.done >= 8:
        print("paused", p.done, flush=True)
        time.sleep(600)
Build(sys.argv[1], sys.argv[2], embedder=CNNEmbedder(), progress=progress,
      producer=RayFeatures(sys.argv[3], batch_size=4)).run()
"""


def test_a_killed_distributed_build_resumes(ray_cluster, write_gallery, real_embedder, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee", "astronaut", "rocket"),
                            variants=6)
    index = tmp_path / "idx"
    env = {**os.environ, "IMGREC_FLUSH_EVERY": "4", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(gallery), str(index),
                             ray_cluster.address], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    work = index / "work"
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert line.startswith("paused") and proc.returncode == -signal.SIGKILL, stderr
    assert not (index / "CURRENT").exists()  # nothing published by the killed driver
    saved = len(list(work.glob("*/chunk-*.npz")))
    resumed = build_index(gallery, index, embedder=real_embedder, workers=0)  # the local path
    assert 8 <= resumed.resumed < 24 and saved >= 1
    assert resumed.resumed + resumed.computed == resumed.indexed == 24
    ref = build_index(gallery, tmp_path / "ref", embedder=real_embedder, workers=0)
    assert_same_index(Index.open(index), Index.open(tmp_path / "ref"))
    assert ref.computed == 24
    assert not Path(work).exists()
