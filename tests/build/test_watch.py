"""imgrec watch (debounced incremental syncs, Ctrl-C leaves a consistent index) and the fast
"what changed since the last build" scan."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from imgrec import Index, build_index
from imgrec.build.changes import changes
from imgrec.build.watch import watch
from imgrec.index.verify import verify


def test_changes_since_the_last_build(write_gallery, tiny_embedder, tmp_path):
    g = write_gallery(tmp_path / "g")
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    idx = Index.open(tmp_path / "ix", embedder=tiny_embedder)
    assert (changes(idx).pending, changes(idx).unchanged) == (0, 9)
    assert changes(idx).summary().startswith("up to date")
    shutil.copy(g / "chelsea/chelsea_orig.jpg", g / "new.jpg")
    (g / "coffee/coffee_flip.jpg").unlink()
    os.utime(g / "astronaut/astronaut_orig.jpg", ns=(10**18, 10**18))  # touched
    os.mkfifo(g / "pipe.jpg")  # a new entry that cannot be read
    c = changes(idx)
    assert (c.new, c.changed, c.removed, c.unchanged) == (2, 1, 1, 7)
    assert c.examples["removed"] == ["coffee/coffee_flip.jpg"]
    assert c.summary() == "2 new, 1 changed, 1 removed since the last build"
    assert changes(idx, exclude=["new.jpg", "pipe.jpg", "chelsea/"]).removed == 4
    build_index(g, tmp_path / "ix", embedder=tiny_embedder, workers=0)
    assert changes(Index.open(tmp_path / "ix", embedder=tiny_embedder)).pending == 0


def _wait_for(q: queue.Queue, test, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            item = q.get(timeout=0.5)
        except queue.Empty:
            continue
        if test(item):
            return item
    raise AssertionError("timed out")


def test_watch_in_process_batches_changes(write_gallery, tiny_embedder, tmp_path):
    g = write_gallery(tmp_path / "g", names=("chelsea", "coffee"))
    reports: queue.Queue = queue.Queue()
    stop = threading.Event()
    t = threading.Thread(target=watch, args=(g, tmp_path / "ix"),
                         kwargs={"debounce": 0.5, "on_sync": reports.put, "stop": stop,
                                 "embedder": tiny_embedder, "workers": 0}, daemon=True)
    t.start()
    assert _wait_for(reports, lambda r: True).indexed == 6  # the first sync
    for i in range(3):  # a burst: one sync
        Image.new("RGB", (64, 48), (80 * i, 20, 200)).save(g / f"burst{i}.png")
    r = _wait_for(reports, lambda r: True)
    assert (r.added, r.indexed) == (3, 9)
    (g / "burst0.png").unlink()
    r = _wait_for(reports, lambda r: True)
    assert (r.removed, r.indexed) == (1, 8)
    stop.set()
    t.join(10)
    assert not t.is_alive() and verify(tmp_path / "ix") == []


def test_watch_command_picks_up_an_added_and_a_deleted_file(write_gallery, cli_env, tmp_path):
    g = write_gallery(tmp_path / "g", names=("chelsea",))
    ix = tmp_path / "ix"
    proc = subprocess.Popen([sys.executable, "-m", "imgrec", "watch", str(g), "--index", str(ix),
                             "--debounce", "0.5", "--workers", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=cli_env,
                            cwd=Path(__file__).parents[2])
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    try:
        _wait_for(lines, lambda ln: ln.startswith("watching"), 300)
        assert len(Index.open(ix)) == 3
        shutil.copy(g / "chelsea/chelsea_orig.jpg", g / "added.jpg")
        Image.open(g / "chelsea/chelsea_flip.jpg").rotate(90).save(g / "added2.jpg")
        _wait_for(lines, lambda ln: ln.startswith("synced") and " 2 added" in ln)
        assert set(Index.open(ix).all_paths()) >= {"added.jpg", "added2.jpg"}
        (g / "chelsea/chelsea_crop.jpg").unlink()
        _wait_for(lines, lambda ln: ln.startswith("synced") and " 1 removed" in ln)
        assert "chelsea/chelsea_crop.jpg" not in Index.open(ix).all_paths()
        proc.send_signal(signal.SIGINT)  # stops once any running sync has published
        assert proc.wait(120) == 0
        assert _wait_for(lines, lambda ln: ln.startswith("stopped"), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(Index.open(ix)) == 4 and verify(ix) == []
