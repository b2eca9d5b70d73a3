"""Dataset page: files new, changed and removed since the last build, and "Sync now"."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from imgrec import Index, build_index
from imgrec.errors import ImgrecError


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _wait_built(index_dir: Path, count: int, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if len(Index.open(index_dir)) == count:
                return
        except ImgrecError:  # a version being switched: try again
            pass
        time.sleep(0.5)
    raise AssertionError("the sync did not publish")


def test_changes_since_the_last_build_and_sync_now(make_app, gallery_maker, app_embedder,
                                                   app_demo, tmp_path) -> None:
    gallery = gallery_maker(tmp_path / "gallery", per_family=3)
    index_dir = tmp_path / "index"
    build_index(gallery, index_dir, embedder=app_embedder, workers=0)
    at = make_app(index_dir)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("0", "0", "0")
    assert at.button(key="sync").disabled
    for rel in app_demo.families["coffee"][5:7]:  # two new files
        shutil.copy2(app_demo.root / rel, gallery / rel)
    first = sorted(p for p in gallery.rglob("*.jpg") if "coffee" not in str(p))[0]
    os.utime(first, ns=(10**18, 10**18))  # one touched
    victim = sorted(p for p in gallery.rglob("*.jpg") if "coffee" not in str(p))[-1]
    victim.unlink()  # one removed
    time.sleep(11)  # the scan is kept for 10 s
    at.run()
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("2", "1", "1")
    assert not at.button(key="sync").disabled
    at.button(key="sync").click().run()
    _wait_built(index_dir, 10)
    for _ in range(60):
        at.run()
        if _metrics(at).get("New files") == "0" and _metrics(at)["Indexed images"] == "10":
            break
        time.sleep(1)
    m = _metrics(at)
    assert (m["New files"], m["Changed files"], m["Removed files"]) == ("0", "0", "0")
    assert m["Indexed images"] == "10" and not at.exception
