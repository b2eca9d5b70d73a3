"""Gallery folders that try to crash or hang a build: link loops, FIFOs, sockets, devices,
folders that cannot be listed. Each becomes one skipped entry with its reason."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import TinyEmbedder

from imgrec import Index, build_index
from imgrec.build.decode import process
from imgrec.errors import ImageError, ImgrecError
from imgrec.images import is_within, load_image, scan, scan_entries


def _finishes(fn, timeout: float = 30.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) when it blocks."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked for {timeout} s"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


def _gallery(root: Path, photos) -> Path:
    root.mkdir(parents=True)
    photos["chelsea"].save(root / "cat.jpg")
    return root


def _build(g: Path, ix: Path):
    return _finishes(lambda: build_index(g, ix, embedder=TinyEmbedder(), workers=0,
                                         batch_size=4))


def test_symlink_loop_is_one_skipped_entry(tmp_path, photos):
    g = _gallery(tmp_path / "g", photos)
    os.symlink("b.jpg", g / "a.jpg")
    os.symlink("a.jpg", g / "b.jpg")
    os.symlink("self.png", g / "self.png")
    assert not is_within(g / "a.jpg", g)  # no RuntimeError escapes
    problems = {e.rel: e.problem for e in scan_entries(g) if e.problem}
    assert problems == dict.fromkeys(["a.jpg", "b.jpg", "self.png"],
                                     "unreadable: symbolic link loop")
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_image(g / "a.jpg")
    assert process(str(g / "a.jpg"), "a.jpg", 0, 0, 224).error == "unreadable: symbolic link loop"
    r = _build(g, tmp_path / "ix")
    assert r.indexed == 1
    assert dict(r.skipped) == problems


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_only_regular_files_are_read(tmp_path, photos, kind):
    g = _gallery(tmp_path / "g", photos)
    odd = g / "odd.jpg"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(odd))
    else:
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(odd, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # like /dev/null
    want = {"fifo": "a FIFO", "socket": "a socket", "device": "a character device"}[kind]
    assert [(e.rel, e.problem) for e in scan_entries(g) if e.problem] == [
        ("odd.jpg", f"not a regular file ({want})")]
    with pytest.raises(ImageError, match=rf"odd.jpg: not a regular file \({want}\)"):
        _finishes(lambda: load_image(odd))
    res = _finishes(lambda: process(str(odd), "odd.jpg", 0, 0, 224))
    assert res.error == f"unreadable: not a regular file ({want})"
    # a link to it is refused the same way
    os.symlink(odd, g / "link.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        _finishes(lambda: load_image(g / "link.jpg"))
    r = _build(g, tmp_path / "ix")
    assert r.indexed == 1 and sorted(p for p, _ in r.skipped) == ["link.jpg", "odd.jpg"]


def test_a_fifo_query_is_refused_not_waited_on(tmp_path, photos):
    g = _gallery(tmp_path / "g", photos)
    idx = Index.from_arrays(tmp_path / "ix", ["cat.jpg"], np.eye(1, 16, dtype=np.float32),
                            np.full((1, 768), 1 / 768, np.float32), model="tiny-test",
                            gallery_root=g, pca_components=1)
    os.mkfifo(tmp_path / "q.jpg")
    with pytest.raises(ImgrecError, match="not a regular file"):
        _finishes(lambda: idx.search([str(tmp_path / "q.jpg")], method="color", k=1))


def test_broken_link_and_link_out_of_the_gallery(tmp_path, photos):
    g = _gallery(tmp_path / "g", photos)
    photos["coffee"].save(tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", g / "out.jpg")
    os.symlink(g / "gone.jpg", g / "broken.jpg")
    os.symlink(tmp_path / "gone.jpg", g / "broken-out.jpg")
    got = [(e.rel, e.problem) for e in scan_entries(g)]
    assert got == [("broken.jpg", "unreadable: broken symbolic link (No such file or directory)"),
                   ("cat.jpg", None)]  # links out of the gallery are never followed
    assert [p.name for p in scan(g)] == ["broken.jpg", "cat.jpg"]


UNREADABLE_FOLDER = r"""
import json
from imgrec.images import scan_entries
from imgrec.build.decode import process
entries = [(e.rel, e.problem) for e in scan_entries({g!r})]
locked = process({g!r} + "/locked.jpg", "locked.jpg", 0, 0, 224).error
print(json.dumps({{"entries": entries, "locked": locked}}))
"""


def test_unreadable_folder_and_file_are_reported(as_nobody, open_tmp, photos):
    g = open_tmp / "g"
    g.mkdir()
    g.chmod(0o755)
    for rel in ["a.jpg", "private/b.jpg", "z/c.jpg"]:
        (g / rel).parent.mkdir(exist_ok=True)
        photos["chelsea"].save(g / rel)
        (g / rel).chmod(0o644)
    (g / "z").chmod(0o755)
    (g / "locked.jpg").write_bytes(b"x")
    (g / "locked.jpg").chmod(0o000)
    (g / "private").chmod(0o000)
    out = as_nobody(UNREADABLE_FOLDER.format(g=str(g)))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [tuple(e) for e in got["entries"]] == [
        ("a.jpg", None), ("locked.jpg", None),
        ("private/", "folder unreadable: Permission denied"), ("z/c.jpg", None)]
    assert got["locked"] == "unreadable: Permission denied"


def test_scan_of_a_gallery_that_is_not_a_folder(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.jpg")
    got = list(scan_entries(tmp_path / "x.jpg"))
    assert [(e.rel, e.problem.split(":")[0]) for e in got] == [("./", "folder unreadable")]
