"""One regression test per cause of the hostile-input audit, at the level a user meets it:
the CLI's exit code and one-line message, the API's error class, the dashboard's message.

Where a cause is covered closely elsewhere, that test stays there:
1, 2 in test_scan_hostile.py (scan, decode, API build); 3 in tests/cli/test_cli.py
(unreadable query, read-only index, unwritable export, full /dev/full, as uid 65534);
4 in tests/index/test_writer.py (full tmpfs, API); 5 in tests/search/test_queries.py and
test_query_fuzz.py; 6 in tests/search/test_refine.py; 7 in tests/index/test_reader.py,
test_verify.py and test_index_fuzz.py; 8 in tests/index/test_catalog.py; 9 (edited
``gallery_root``, control characters) in test_reader.py and tests/cli/test_cli.py;
10 in test_numba_cache.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from support import TinyEmbedder, run_cli

from imgrec import Index, Stored, build_index
from imgrec.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
CLI = "import sys\nfrom imgrec.cli.main import main\nsys.exit(main({args!r}))\n"


def _one_line(proc_or_err: subprocess.CompletedProcess[str] | str, *needles: str) -> str:
    """The single non-empty stderr line, starting 'imgrec:', holding each needle."""
    err = proc_or_err if isinstance(proc_or_err, str) else proc_or_err.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgrec:"), err
    assert "Traceback" not in err and "unexpected failure" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def hostile(photos, as_nobody):
    """A gallery of three photos beside a link loop, a FIFO and a folder nobody may list,
    indexed through the CLI as an ordinary user (uid 65534 when the tests run as root)."""
    base = Path(tempfile.mkdtemp(prefix="imgrec-causes-"))
    base.chmod(0o755)
    g, out = base / "g", base / "out"
    (g / "private").mkdir(parents=True)
    out.mkdir()
    for name in ["chelsea", "coffee", "rocket"]:
        photos[name].save(g / f"{name}.jpg")
    photos["astronaut"].save(g / "private" / "astronaut.jpg")
    os.symlink("b.jpg", g / "a.jpg")
    os.symlink("a.jpg", g / "b.jpg")
    os.mkfifo(g / "x.jpg")
    os.mkfifo(base / "fifo.jpg")
    for p in [g, *g.rglob("*")]:
        if not p.is_symlink() and not p.is_fifo():
            p.chmod(0o755 if p.is_dir() else 0o644)
    (g / "private").chmod(0o000)
    if os.geteuid() == 0:
        os.chown(out, NOBODY, NOBODY)
    args = ["index", str(g), "--index", str(out / "ix"), "--workers", "0", "--quiet"]
    build = as_nobody(CLI.format(args=args), timeout=600)  # a blocking read fails the suite
    yield {"base": base, "g": g, "ix": out / "ix", "build": build, "run": as_nobody}
    (g / "private").chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


def _built(hostile) -> str:
    build = hostile["build"]
    assert build.returncode == 0, build.stderr[-2000:]
    assert "indexed 3 images" in build.stdout
    return build.stdout


# ---- 1. a symbolic link loop ---------------------------------------------------------------

def test_01_symlink_loop_is_a_skipped_entry_of_a_cli_build(hostile):
    out = _built(hostile)
    assert "  skipped a.jpg: unreadable: symbolic link loop" in out
    assert "  skipped b.jpg: unreadable: symbolic link loop" in out


def test_01_symlink_loop_as_index_or_output_is_one_line(hostile, tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    with pytest.raises(OSError) as exc:  # the API: an OSError naming the path, no RuntimeError
        build_index(hostile["g"], loop, embedder=TinyEmbedder(), workers=0)
    assert exc.value.errno == errno.ELOOP and exc.value.filename == str(loop)
    for args in (["export", "csv", str(loop)], ["export", "projector", str(loop / "p")]):
        assert cli_main([*args, "--index", str(hostile["ix"])]) == 2
        _one_line(capsys.readouterr().err, str(loop), "Too many levels of symbolic links")


def test_01_symlink_loop_typed_into_the_dashboard(hostile, tmp_path, monkeypatch):
    """As a gallery on the Dataset page, and as the index folder in the sidebar."""
    from streamlit.testing.v1 import AppTest

    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    monkeypatch.setenv("IMGREC_INDEX_DIR", str(hostile["ix"]))
    monkeypatch.setenv("IMGREC_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", os.pathsep.join(map(str, [hostile["base"],
                                                                      tmp_path])))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    for typed, want in [(loop, "Too many levels of symbolic links"),
                        (loop / "photos", "Too many levels of symbolic links"),
                        (hostile["g"], "images found")]:
        at.text_input(key="gallery_text").input(str(typed)).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = [m.value for m in [*at.error, *at.success]]
        assert any(want in m for m in shown), shown
        assert not [m for m in shown if "Unexpected" in m]
    assert at.button(key="index_folder").disabled is False  # the last folder is fine
    at.sidebar.text_input(key="index_dir_text").input(str(loop))  # as the index folder
    at.sidebar.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Too many levels of symbolic links" in e.value for e in at.sidebar.error)
    assert "Open now: `" + str(hostile["ix"]) in " ".join(c.value for c in at.sidebar.caption)


# ---- 2. a FIFO -----------------------------------------------------------------------------

def test_02_fifo_in_the_gallery_is_skipped_without_blocking(hostile):
    assert "  skipped x.jpg: not a regular file (a FIFO)" in _built(hostile)


def test_02_fifo_as_a_query_is_refused_without_blocking(hostile):
    _built(hostile)
    args = ["search", str(hostile["base"] / "fifo.jpg"), "--index", str(hostile["ix"]),
            "--method", "color"]
    proc = hostile["run"](CLI.format(args=args), timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    _one_line(proc, "fifo.jpg", "not a regular file")


# ---- 3. outputs: no folder created outside the one named -----------------------------------

def test_03_outputs_create_no_folder_above_the_one_named(hostile, tmp_path, capsys):
    _built(hostile)
    ix = str(hostile["ix"])
    cases = [["duplicates", "--csv", str(tmp_path / "a" / "d.csv")],
             ["export", "csv", str(tmp_path / "b" / "e.csv")],
             ["export", "projector", str(tmp_path / "c" / "proj")]]
    for args in cases:
        assert cli_main([*args, "--index", ix]) == 2, args
        _one_line(capsys.readouterr().err, "No such file or directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert cli_main(["export", "projector", str(tmp_path / "proj"), "--index", ix]) == 0
    assert (tmp_path / "proj" / "tensors.tsv").is_file()  # the named folder itself is made


# ---- 4. a full disk during the memory-mapped write -----------------------------------------

def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root")
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def test_04_full_disk_is_one_line_and_the_previous_index_answers(hostile, tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        ix = disk / "ix"
        build_index(hostile["g"], ix, embedder=TinyEmbedder(), workers=0)  # tiny-test, 48-d
        before = Index.open(ix).search(Stored("coffee.jpg"), k=3).to_dict()
        version = (ix / "CURRENT").read_text()
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * max(0, free - 24_000))  # ~24 KB left
        # the CLI's rebuild with the CNN needs 1280-d rows for every image: more than is left
        proc = run_cli("index", hostile["g"], "--index", ix, "--workers", "0", "--quiet",
                       "--full", timeout=600)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])  # not 135 (SIGBUS)
        line = _one_line(proc, "No space left on device")
        assert str(ix) in line
        assert (ix / "CURRENT").read_text() == version
        assert Index.open(ix).search(Stored("coffee.jpg"), k=3).to_dict() == before
        assert not [p for p in ix.iterdir() if p.name.startswith(".tmp-")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---- 9. a folder that cannot be listed -----------------------------------------------------

def test_09_unreadable_folder_is_listed_with_its_reason(hostile):
    out = _built(hostile)
    assert "  skipped private/: folder unreadable: Permission denied" in out
    args = ["info", "--index", str(hostile["ix"]), "--json"]
    info = hostile["run"](CLI.format(args=args))
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert {"path": "private/", "reason": "folder unreadable: Permission denied"} in facts[
        "skipped_files"], facts["skipped_files"]
