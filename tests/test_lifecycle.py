"""Index lifecycle (issue 5): incremental sync, resume after SIGKILL, one build at a time,
readers during a swap, bad files, safe paths. Real files, real processes, a tiny embedder."""

from __future__ import annotations

import gc
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

from imgrec import BuildLockedError, ImgrecError, Index, QueryError, Stored, build_index
from imgrec.build.decode import PIPELINE_VERSION
from imgrec.build.lock import LOCK_NAME, BuildLock, holder
from imgrec.cli.main import main as cli_main
from imgrec.features.recipe import recipe_for
from imgrec.index.verify import verify
from imgrec.index.writer import current_version

# work folder of the tiny embedder (its recipe is the default one)
WORK = f"work/tiny-test-{recipe_for('tiny-test').name}-p{PIPELINE_VERSION}"


class TinyEmbedder:
    """A deterministic stand-in for the CNN: pooled 32x32 crop -> fixed projection -> unit rows.

    Counts its calls. With ``gate``, every call after the first ``gate_after`` waits until
    the file ``gate`` exists: a test holds a build in the middle, then releases (or kills) it.
    """

    def __init__(self, name: str = "tiny-test", dim: int = 16, gate: str | None = None,
                 gate_after: int = 0) -> None:
        self.name, self.dim, self.input_size = name, dim, 32
        self.gate, self.gate_after = gate, gate_after
        self.calls = 0
        self.images = 0
        self._proj = np.random.default_rng(dim).standard_normal((192, dim))

    def load(self) -> TinyEmbedder:
        return self

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images += len(crops)
        if self.gate and self.calls > self.gate_after:
            end = time.monotonic() + 60
            while not os.path.exists(self.gate) and time.monotonic() < end:
                time.sleep(0.01)
        x = np.asarray(crops, dtype=np.float64).reshape(len(crops), 8, 4, 8, 4, 3)
        v = (x.mean(axis=(2, 4)).reshape(len(crops), 192) / 255.0 - 0.5) @ self._proj
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


RUNNER = '''
from __future__ import annotations
import os, sys, time, json
import numpy as np

{embedder}

def main():
    mode, gallery, index = sys.argv[1:4]
    gate = dict(gate=os.environ.get("TINY_GATE"),
                gate_after=int(os.environ.get("TINY_GATE_AFTER", "0")))
    if mode == "build":
        from imgrec.build.builder import build_index
        r = build_index(gallery, index, embedder=TinyEmbedder(**gate), workers=0, batch_size=4)
        print(json.dumps({{"version": r.version, "computed": r.computed}}))
        return 0
    # the real command line, with the CNN replaced by the tiny embedder
    import imgrec.features.embedding as E
    E.CNNEmbedder = lambda *a, **k: TinyEmbedder(**gate)
    from imgrec.cli.main import main as cli
    return cli(["index", gallery, "--index", index, "--workers", "0", "--batch-size", "4",
                "--quiet", *sys.argv[4:]])

sys.exit(main())
'''


def image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a small random-noise image (unique content per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def gallery_of(root: Path, names: list[str], seed0: int = 0) -> Path:
    for i, n in enumerate(names):
        image(root / n, seed0 + i)
    return root


def build(gallery: Path, index: Path, emb: TinyEmbedder | None = None, **kw):
    return build_index(gallery, index, embedder=emb or TinyEmbedder(), workers=0,
                       batch_size=4, **kw)


def counts(r) -> dict[str, int]:
    return {k: getattr(r, k) for k in ("added", "updated", "moved", "removed", "unchanged")}


def files_of(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def same_index(a: Path, b: Path) -> None:
    """Two indexes hold the same content: paths, catalog rows, embeddings, histograms."""
    ia, ib = Index.open(a), Index.open(b)
    assert ia.all_paths() == ib.all_paths()
    strip = [(e.path, e.row, e.size, e.mtime_ns, e.sha256, e.format, e.mode, e.width, e.height,
              e.exif, e.error) for e in ia.entries()]
    assert strip == [(e.path, e.row, e.size, e.mtime_ns, e.sha256, e.format, e.mode, e.width,
                      e.height, e.exif, e.error) for e in ib.entries()]
    np.testing.assert_allclose(ia.embeddings, ib.embeddings, atol=1e-6)
    np.testing.assert_allclose(ia.histograms, ib.histograms, atol=1e-7)
    np.testing.assert_allclose(np.abs(ia.pca_histograms), np.abs(ib.pca_histograms), atol=1e-4)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Each publish fits a 768x768 PCA: threaded BLAS only slows that down on small CPUs."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(embedder=inspect.getsource(TinyEmbedder)))
    return script


def spawn(runner: Path, *args: str, gate: Path | None = None, gate_after: int = 0,
          flush_every: int | None = None) -> subprocess.Popen:
    """Run the runner script: ``build`` (build_index) or ``cli`` (``imgrec index``)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if gate:
        env.update(TINY_GATE=str(gate), TINY_GATE_AFTER=str(gate_after))
    if flush_every:
        env["IMGREC_FLUSH_EVERY"] = str(flush_every)
    return subprocess.Popen([sys.executable, str(runner), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---- incremental sync ------------------------------------------------------------------


def test_sync_add_modify_rename_delete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = gallery_of(tmp_path / "g", [f"{c}.png" for c in "abcdefghij"])
    (g / "bad.jpg").write_bytes(b"this is not a JPEG")
    ix = tmp_path / "ix"

    emb = TinyEmbedder()
    r = build(g, ix, emb)
    assert counts(r) == {"added": 10, "updated": 0, "moved": 0, "removed": 0, "unchanged": 0}
    assert r.indexed == 10 and r.computed == 10 and emb.images == 10
    assert [p for p, _ in r.skipped] == ["bad.jpg"] and "not an image" in r.skipped[0][1]

    # nothing changed: nothing decoded or embedded, the bad file still listed
    emb = TinyEmbedder()
    r = build(g, ix, emb)
    assert counts(r) == {"added": 0, "updated": 0, "moved": 0, "removed": 0, "unchanged": 10}
    assert emb.calls == 0 and r.computed == 0
    assert [p for p, _ in r.skipped] == ["bad.jpg"]
    assert cli_main(["info", "--index", str(ix)]) == 0
    assert "skipped    bad.jpg: not an image" in capsys.readouterr().out

    d_emb = Index.open(ix).embeddings[Index.open(ix).row_of("d.png")].copy()
    image(g / "c.png", 100, (80, 60))  # modified
    (g / "sub").mkdir()
    os.rename(g / "d.png", g / "sub" / "d2.png")  # renamed
    (g / "e.png").unlink()  # deleted
    image(g / "k.png", 101)  # added
    shutil.copy(g / "g.png", g / "g_copy.png")  # added, content already indexed
    st = (g / "f.png").stat()
    os.utime(g / "f.png", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    image(g / "bad.jpg", 102)  # the bad file is fixed

    emb = TinyEmbedder()
    r = build(g, ix, emb)
    assert counts(r) == {"added": 2, "updated": 2, "moved": 1, "removed": 1, "unchanged": 7}
    assert r.skipped == [] and r.indexed == 12
    assert emb.images == 3 and r.computed == 3  # c.png, k.png, bad.jpg: nothing else decoded
    idx = Index.open(ix)
    assert idx.all_paths() == files_of(g)
    assert idx.skipped() == []
    np.testing.assert_array_equal(idx.embeddings[idx.row_of("sub/d2.png")], d_emb)
    for p in ("c.png", "sub/d2.png", "bad.jpg", "g_copy.png"):
        hits = idx.search([Stored(p)], k=2).per_query[0]
        assert hits[0].score > 0.9999
        assert hits[0].path == p or {hits[0].path, p} == {"g.png", "g_copy.png"}
    # the synced index holds exactly what a fresh build of the same files would
    build(g, tmp_path / "fresh")
    same_index(ix, tmp_path / "fresh")
    assert verify(ix) == []

    # --full recomputes everything
    emb = TinyEmbedder()
    r = build(g, ix, emb, full=True)
    assert emb.images == 11 and r.computed == 11  # g.png and g_copy.png: embedded once
    assert any("full rebuild" in n for n in r.notes)
    same_index(ix, tmp_path / "fresh")


def test_bad_file_reasons_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = gallery_of(tmp_path / "g", ["a.png", "b.png"])
    (g / "empty.png").write_bytes(b"")
    (g / "text.jpg").write_text("hello")
    data = (image(tmp_path / "full.png", 7, (200, 150))).read_bytes()
    (g / "cut.png").write_bytes(data[: len(data) // 2])
    (g / "dangling.png").symlink_to(g / "nowhere.png")
    ix = tmp_path / "ix"
    r = build(g, ix)
    why = dict(r.skipped)
    assert sorted(why) == ["cut.png", "dangling.png", "empty.png", "text.jpg"]
    assert "empty" in why["empty.png"] and "not an image" in why["text.jpg"]
    assert why["cut.png"].startswith(("truncated", "corrupt", "unreadable"))
    assert why["dangling.png"].startswith("unreadable")
    assert r.indexed == 2 and r.added == 2
    assert sorted(Index.open(ix).skipped()) == sorted(r.skipped)
    assert cli_main(["info", "--index", str(ix)]) == 0
    out = capsys.readouterr().out
    for p in why:
        assert f"skipped    {p}: {why[p]}" in out

    # fixing a file and syncing picks it up, even when its mtime and size did not move
    os.unlink(g / "dangling.png")
    shutil.copy(tmp_path / "full.png", g / "cut.png")
    r = build(g, ix)
    assert r.updated == 1 and r.removed == 1 and r.unchanged == 2
    assert sorted(p for p, _ in r.skipped) == ["empty.png", "text.jpg"]
    assert "cut.png" in Index.open(ix).all_paths()


def test_model_change_and_gallery_move(tmp_path: Path) -> None:
    g = gallery_of(tmp_path / "g", [f"{i}.png" for i in range(6)])
    ix = tmp_path / "ix"
    build(g, ix)
    other = TinyEmbedder(name="tiny-other", dim=8)
    r = build(g, ix, other)
    assert other.images == 6 and r.computed == 6
    assert any("model changed from tiny-test to tiny-other" in n for n in r.notes)
    idx = Index.open(ix)
    assert idx.model == "tiny-other" and idx.embeddings.shape == (6, 8)
    assert verify(ix) == []

    # the gallery moved to another folder: files are matched by content, nothing recomputed
    g2 = tmp_path / "moved-gallery"
    shutil.copytree(g, g2)
    emb = TinyEmbedder(name="tiny-other", dim=8)
    r = build(g2, ix, emb)
    assert emb.calls == 0 and r.unchanged == 6 and r.removed == 0
    assert any("gallery changed" in n for n in r.notes)
    assert Index.open(ix).root == g2.resolve()


def test_flush_every_env_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = gallery_of(tmp_path / "g", ["a.png"])
    monkeypatch.setenv("IMGREC_FLUSH_EVERY", "zero")
    with pytest.raises(ImgrecError, match="IMGREC_FLUSH_EVERY"):
        build(g, tmp_path / "ix")


# ---- resume after SIGKILL --------------------------------------------------------------


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, runner: Path) -> None:
    g = gallery_of(tmp_path / "g", [f"old{i}.png" for i in range(4)])
    ix = tmp_path / "ix"
    build(g, ix)
    published = current_version(ix)
    gallery_of(g, [f"new{i:02d}.png" for i in range(20)], seed0=50)

    # the build computes two batches of 4 (each saved as a work chunk), then hangs in the
    # third until it is killed
    proc = spawn(runner, "build", str(g), str(ix), gate=tmp_path / "never", gate_after=2,
                 flush_every=4)
    work = ix / WORK
    try:
        wait_for(lambda: len(list(work.glob("chunk-*.npz"))) >= 2 or proc.poll() is not None,
                 what="two saved work chunks")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # the published index is untouched and fully usable
    assert current_version(ix) == published
    assert len(Index.open(ix)) == 4 and verify(ix) == []
    assert holder(ix) is None  # the dead build's lock is not a running build

    # damage the work folder the way a crash mid-write could, and renumber a chunk so a
    # resumed build must not reuse its name
    chunks = sorted(work.glob("chunk-*.npz"))
    chunks[-1].rename(work / "chunk-000009.npz")
    (work / "chunk-000005.npz").write_bytes(b"PK\x03\x04 cut short")
    (work / ".tmp-chunk-000010.npz").write_bytes(b"partial")

    emb = TinyEmbedder()
    r = build(g, ix, emb)
    assert r.resumed == 8
    assert r.computed == 12 and emb.images == 12
    assert r.added == 20 and r.unchanged == 4
    assert not work.exists()
    build(g, tmp_path / "ref")
    same_index(ix, tmp_path / "ref")
    assert verify(ix) == []


# ---- one build at a time ---------------------------------------------------------------


def test_two_builds_one_runs_other_refused_or_waits(tmp_path: Path, runner: Path) -> None:
    g = gallery_of(tmp_path / "g", [f"{i:02d}.png" for i in range(12)])
    ix = tmp_path / "ix"

    gate = tmp_path / "go"
    first = spawn(runner, "cli", str(g), str(ix), gate=gate)  # holds in its first batch
    wait_for(lambda: holder(ix) is not None or first.poll() is not None, what="the lock")
    info = holder(ix)
    assert info is not None and info["pid"] == first.pid
    second = spawn(runner, "cli", str(g), str(ix))
    out2, err2 = second.communicate(timeout=60)
    assert first.poll() is None
    gate.touch()
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 2, (out2, err2)
    assert f"pid {first.pid}" in err2 and f"started {info['started']}" in err2
    assert "--wait" in err2 and "Traceback" not in err2
    assert "added 12" in out1
    assert verify(ix) == [] and len(Index.open(ix)) == 12
    assert len(list(ix.glob("v-*"))) == 1

    # --wait: the second build waits for the first, then syncs against its result
    gate = tmp_path / "go-again"
    first = spawn(runner, "cli", str(g), str(ix), "--full", gate=gate)
    wait_for(lambda: holder(ix) is not None or first.poll() is not None, what="the lock")
    waiter = spawn(runner, "cli", str(g), str(ix), "--wait")
    time.sleep(1.5)
    assert waiter.poll() is None and first.poll() is None  # both still there: one waits
    gate.touch()
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = waiter.communicate(timeout=60)
    assert first.returncode == 0 and waiter.returncode == 0, (err1, err2)
    assert "unchanged 12" in out2
    assert verify(ix) == []


def test_lock_in_process_and_stale_lock(tmp_path: Path) -> None:
    ix = tmp_path / "ix"
    g = gallery_of(tmp_path / "g", ["a.png", "b.png"])
    with BuildLock(ix):
        with pytest.raises(BuildLockedError, match=rf"pid {os.getpid()}, started "):
            build(g, ix)
        assert holder(ix)["pid"] == os.getpid()
    assert holder(ix) is None
    # a lock file left by a process that no longer exists does not block
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (ix / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "started": "long ago"}))
    assert holder(ix) is None
    assert build(g, ix).indexed == 2


# ---- readers during a swap -------------------------------------------------------------


def _check(idx: Index, path: str, method: str) -> None:
    res = idx.search([Stored(path)], method=method, k=5)
    hits = res.per_query[0]
    assert len(hits) == min(5, len(idx))
    assert hits[0].path == path and hits[0].distance < 1e-4
    assert len({h.path for h in hits}) == len(hits)
    scores = [h.score for h in hits]
    assert all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_readers_keep_answering_while_builds_swap(tmp_path: Path, runner: Path) -> None:
    g = gallery_of(tmp_path / "g", [f"{i:02d}.png" for i in range(12)])
    ix = tmp_path / "ix"
    build(g, ix)
    first_version = current_version(ix)
    stop = threading.Event()
    errors: list[str] = []
    done = {"held": 0, "reopened": 0}
    opened = threading.Event()

    def held() -> None:  # opened once, kept across every swap
        idx = Index.open(ix)
        paths = idx.all_paths()
        opened.set()
        i = 0
        while not stop.is_set():
            try:
                _check(idx, paths[i % len(paths)], ("embedding", "color", "pca")[i % 3])
                done["held"] += 1
            except Exception as exc:  # collected for the assertion
                errors.append(f"held reader: {exc!r}")
            i += 1

    def reopening() -> None:  # opens the current version for every query
        i = 0
        while not stop.is_set():
            try:
                idx = Index.open(ix)
                assert idx.version == idx.dir.name
                _check(idx, idx.all_paths()[i % len(idx)], "embedding")
                done["reopened"] += 1
            except Exception as exc:
                errors.append(f"reopening reader: {exc!r}")
            i += 1

    threads = [threading.Thread(target=held), threading.Thread(target=reopening)]
    for t in threads:
        t.start()
    try:
        opened.wait(10)
        versions = set()
        for n in range(3):  # three swaps; the first version would be pruned by the second
            image(g / f"new{n}.png", 200 + n)
            if n == 1:
                proc = spawn(runner, "build", str(g), str(ix))
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
            else:
                build(g, ix)
            versions.add(current_version(ix))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert done["held"] > 5 and done["reopened"] > 5
    assert len(versions) == 3 and len(Index.open(ix)) == 15
    # the version the held reader used was kept while it was open; once closed, pruned
    assert first_version.is_dir()
    del threads
    gc.collect()
    build(g, ix, full=True)
    assert not first_version.exists()
    assert len(list(ix.glob("v-*"))) == 2


# ---- safe paths ------------------------------------------------------------------------


def test_paths_outside_the_gallery_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    image(outside / "secret.png", 9)
    image(outside / "dir" / "x.png", 10)
    g = gallery_of(tmp_path / "g", ["a.png", "sub/b.png"])
    (g / "link-out.png").symlink_to(outside / "secret.png")
    (g / "dir-out").symlink_to(outside / "dir", target_is_directory=True)
    (g / "link-in.png").symlink_to(g / "a.png")
    ix = tmp_path / "ix"
    r = build(g, ix)
    idx = Index.open(ix)
    assert idx.all_paths() == ["a.png", "link-in.png", "sub/b.png"]
    assert [p for p, _ in r.skipped] == []
    for bad in ("../outside/secret.png", "link-out.png", "dir-out/x.png", "sub/../../outside",
                str(outside / "secret.png")):
        with pytest.raises(QueryError, match="outside the gallery"):
            idx.resolve(bad)
    assert idx.resolve("sub/b.png") == g.resolve() / "sub" / "b.png"

    # a catalog row that points out of the gallery (written by something else) is refused
    emb = np.eye(3, 16, dtype=np.float32)
    hist = np.full((3, 768), 1 / 256, np.float32)
    ix2 = tmp_path / "ix2"
    idx2 = Index.from_arrays(ix2, ["a.png", "../outside.jpg", "link-out.png"], emb, hist,
                             model="tiny-test", gallery_root=g.resolve())
    with pytest.raises(QueryError):
        idx2.resolve("../outside.jpg")
    with pytest.raises(QueryError):
        idx2.resolve("link-out.png")
    assert idx2.resolve("a.png").is_file()
    assert any("leave the gallery" in p and "../outside.jpg" in p for p in verify(ix2))
