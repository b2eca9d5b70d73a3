"""Writing versions: publish, abort, prune around readers, and a full disk (a clear error,
never a bus error, and the published version kept)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index, IndexWriteError, Stored
from imgrec.features.pca import fit_pca
from imgrec.index import catalog, writer
from imgrec.index import format as F
from imgrec.index.verify import verify


def _write(d: Path, arrays, n: int | None = None) -> Index:
    paths, emb, hist, _, _ = arrays
    n = n or len(paths)
    return Index.from_arrays(d, paths[:n], emb[:n], hist[:n], model="random-16",
                             pca_components=4)


def test_publish_writes_a_complete_version(tmp_path: Path, arrays) -> None:
    paths, emb, hist, _, _ = arrays
    w = writer.VersionWriter(tmp_path / "ix", len(paths), emb.shape[1])
    assert w.tmp.name.startswith(F.TMP_PREFIX) and not (tmp_path / "ix" / F.CURRENT).exists()
    w.embeddings[:] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    w.histograms[:] = hist
    entries = [catalog.Entry(p, i) for i, p in enumerate(paths)]
    entries.append(catalog.Entry("z.gif", None, error="not an image"))
    final = w.publish(entries, {"model": "m", "gallery_root": "/g"}, fit_pca(hist, 5))
    assert not w.tmp.exists() and writer.current_version(tmp_path / "ix") == final
    m = F.Manifest.read(final)
    assert (m.count, m.skipped, m.pca_components, m.version, m.model) == (
        len(paths), 1, 5, final.name, "m")
    assert set(m.checksums["files"]) == {p.name for p in final.iterdir()} - {F.MANIFEST}
    assert verify(tmp_path / "ix") == []


def test_publish_refuses_a_pca_of_other_histograms(tmp_path: Path, arrays) -> None:
    paths, emb, hist, _, _ = arrays
    w = writer.VersionWriter(tmp_path / "ix", len(paths), emb.shape[1])
    with pytest.raises(ValueError, match="768-bin"):
        w.publish([], {"model": "m", "gallery_root": "/g"}, fit_pca(hist[:, :100], 3))
    w.abort()


def test_abort_leaves_the_published_version(tmp_path: Path, arrays) -> None:
    idx = _write(tmp_path / "ix", arrays)
    before = sorted(p.name for p in (tmp_path / "ix").iterdir())
    w = writer.VersionWriter(tmp_path / "ix", 3, 16)
    w.labels()
    assert w.tmp.is_dir()
    w.abort()
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == before
    assert Index.open(tmp_path / "ix").version == idx.version


def test_prune_keeps_versions_readers_hold(tmp_path: Path, arrays) -> None:
    d = tmp_path / "ix"
    first = _write(d, arrays, 10)
    held = first.dir
    for n in (11, 12, 13):
        _write(d, arrays, n)
    versions = sorted(p.name for p in d.glob("v-*"))
    assert held.name in versions and len(versions) == 3  # newest two + the held one
    assert len(first.search([Stored(first.all_paths()[0])], k=3).combined) == 3
    del first
    gc.collect()
    assert writer.prune(d) == [held]
    assert len(list(d.glob("v-*"))) == 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KB tmpfs (skipped where this process may not mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs to fill: {exc}")
    if run.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {run.stderr.strip()}")
    try:
        yield disk
    finally:
        gc.collect()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


#: fills the disk but 32 KB once the matrices are written, then publishes; run in its own
#: process, since writing through a map onto a full disk would kill it with SIGBUS
FILL_THEN_PUBLISH = """
import os, sys
import numpy as np
from imgrec.errors import IndexWriteError
from imgrec.features.pca import fit_pca
from imgrec.index import catalog, writer
disk, n, dim = sys.argv[1], 100, 256
rng = np.random.default_rng(0)
emb = rng.normal(size=(n, dim)).astype(np.float32)
hist = rng.random((n, 768)).astype(np.float32)
w = writer.VersionWriter(os.path.join(disk, "ix"), n, dim)
w.embeddings[:] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
w.histograms[:] = hist
st = os.statvfs(disk)
fd = os.open(os.path.join(disk, "filler"), os.O_RDWR | os.O_CREAT)
os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - 32768)
os.close(fd)
try:
    w.publish([catalog.Entry(str(i), i) for i in range(n)], {"model": "m", "gallery_root": "."},
              fit_pca(hist, 4))
except IndexWriteError as exc:
    print(exc)
    w.abort()
    sys.exit(2)
"""


def test_a_full_disk_is_a_clear_error_and_the_index_stays(small_disk: Path, arrays) -> None:
    d = small_disk / "ix"
    paths, emb, hist, _, _ = arrays
    before = _write(d, arrays, 20)
    q = [Stored(paths[3])]
    answer = before.search(q, k=5).to_dict()
    # too big from the start: the histograms cannot be reserved
    big = np.tile(hist, (6, 1))
    with pytest.raises(IndexWriteError, match=r"histograms\.npy: No space left") as exc:
        Index.from_arrays(d, [f"{i}.jpg" for i in range(len(big))], np.tile(emb, (6, 1)), big,
                          model="random-16")
    assert "published index is unchanged" in str(exc.value)
    # room for the matrices, not for what publish derives from them
    run = subprocess.run([sys.executable, "-c", FILL_THEN_PUBLISH, str(small_disk)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert f"{F.TMP_PREFIX}v-" in run.stdout and "embeddings_f16.npy: No space left" in run.stdout
    assert not list(d.glob(f"{F.TMP_PREFIX}*"))
    (small_disk / "filler").unlink()
    after = Index.open(d)
    assert after.version == before.version and after.search(q, k=5).to_dict() == answer
    assert verify(d) == []
    del before, after


def test_reserve_names_the_file(small_disk: Path) -> None:
    target = small_disk / "x.npy"
    target.write_bytes(b"")
    with pytest.raises(IndexWriteError, match=r"x\.npy: No space left.*1,000,000 bytes"):
        writer.reserve(target, 1_000_000)
