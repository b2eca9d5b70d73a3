"""imgrec imports and searches where its package folder is read-only and the user has no
writable home (a system-wide install run by a service user, a read-only container)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgrec import _numba_cache

PROBE = """
import json, os
import numpy as np
import imgrec
from imgrec.search import kernels
rows = np.random.default_rng(0).random((40, 8)).astype(np.float32)
got = kernels.dot_scores(rows, rows[:2])
print(json.dumps({"file": imgrec.__file__, "cache": os.environ.get("NUMBA_CACHE_DIR"),
                  "ok": bool(np.allclose(got, rows[:2] @ rows.T, atol=1e-5))}))
"""

PLAIN_NUMBA = """
from numba import njit
@njit(cache=True)
def f(x):
    return x + 1
"""


def _read_only_copy(dest: Path) -> Path:
    """A copy of the imgrec package that nobody can write to, with a plain cached kernel."""
    src = Path(_numba_cache.__file__).parent
    shutil.copytree(src, dest / "imgrec", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "plain_kernel.py").write_text(PLAIN_NUMBA)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return dest


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_read_only_package_and_no_home(as_nobody, open_tmp):
    pkg = _read_only_copy(open_tmp / "site")
    tmp = open_tmp / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    env = {"HOME": str(open_tmp / "no-home"), "TMPDIR": str(tmp)}
    # the situation itself: numba alone cannot cache a function from that folder
    plain = as_nobody("import plain_kernel", pythonpath=pkg, env=env)
    assert plain.returncode != 0 and "no locator available" in plain.stderr
    # imgrec picks a private folder in the temporary directory and its kernels run
    out = as_nobody(PROBE, pythonpath=pkg, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["ok"] and got["file"].startswith(str(pkg))
    cache = Path(got["cache"])
    assert cache.parent == tmp and cache.name.startswith("imgrec-numba-")
    assert any(name.endswith(".nbi") for name in _files(cache))  # compiled code was saved
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)


def test_a_writable_home_gets_the_cache(as_nobody, open_tmp):
    pkg = _read_only_copy(open_tmp / "site")
    home = open_tmp / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, 65534, 65534)  # the home of the user the probe runs as
    out = as_nobody(PROBE, pythonpath=pkg, env={"HOME": str(home)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["cache"] == str(home / ".cache" / "imgrec" / "numba")


def test_the_users_own_setting_is_kept(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    assert _numba_cache.configure(env) and env == {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}


def test_candidates_and_unsafe_folders(tmp_path):
    first = next(_numba_cache.candidates({"XDG_CACHE_HOME": str(tmp_path / "xdg")}))
    assert first == tmp_path / "xdg" / "imgrec" / "numba"
    assert _numba_cache.usable(tmp_path / "a" / "b")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by others: someone else could plant compiled code there
    assert not _numba_cache.usable(shared)
    (tmp_path / "file").write_text("x")
    assert not _numba_cache.usable(tmp_path / "file")


NOTHING_WRITABLE = """
import json
import numpy as np
from imgrec import _numba_cache
from imgrec.insights.graph import _fruchterman_reingold
from imgrec.search import kernels, topk
rows = np.random.default_rng(0).random((40, 8)).astype(np.float32)
got = kernels.dot_scores(rows, rows[:2])
cand, _ = topk.candidates(got, 3, True)
pos = _fruchterman_reingold(rows[:, :2].copy(), np.zeros(41, np.int64), np.zeros(0, np.int64),
                            np.zeros(0, np.float32), 2)
print(json.dumps({"cache": _numba_cache.CACHE,
                  "ok": bool(np.allclose(got, rows[:2] @ rows.T, atol=1e-5)),
                  "best": sorted(int(i) for i in np.asarray(cand[0])),
                  "true": sorted(int(i) for i in np.argsort(-got[0])[:3]), "moved": pos.shape == (40, 2)}))
"""

# every place a cache could go is read-only: /tmp, /var/tmp and /dev/shm are remounted
# read-only in a private mount namespace, then the probe runs as uid 65534 from "/"
READ_ONLY_WORLD = ("for d in /tmp /var/tmp /dev/shm; do [ -d $d ] && mount --bind $d $d && "
                   "mount -o remount,bind,ro $d || exit 97; done; exec setpriv --reuid=65534 "
                   '--regid=65534 --clear-groups "$@"')


def _in_a_read_only_world(code: str, pkg: Path, home: Path) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs root with unshare and setpriv to make every folder read-only")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH", "TMPDIR")}
    env.update({"PYTHONPATH": str(pkg), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(home)})
    out = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY_WORLD, "sh", sys.executable,
                          "-c", code], env=env, capture_output=True, text=True, cwd="/",
                         timeout=300)
    if out.returncode == 97 or "unshare failed" in out.stderr:
        pytest.skip(f"cannot remount folders read-only here: {out.stderr.strip()[-200:]}")
    return out


def test_nothing_writable_runs_uncached(open_tmp):
    pkg = _read_only_copy(open_tmp / "site")
    home = open_tmp / "no-home"  # does not exist, and its parent is not the user's
    plain = _in_a_read_only_world("import plain_kernel", pkg, home)
    assert plain.returncode != 0 and "no locator available" in plain.stderr
    out = _in_a_read_only_world(NOTHING_WRITABLE, pkg, home)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["cache"] is False and got["ok"] and got["moved"]
    assert set(got["true"]) <= set(got["best"])  # the exact top 3 are among the candidates
    assert not home.exists() and _files(open_tmp / "site") == _files(pkg)
