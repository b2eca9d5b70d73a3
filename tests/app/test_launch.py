"""`imgrec app` from an installed wheel: the dashboard ships inside the package."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from imgrec import build_index
from imgrec.app import launch

ROOT = Path(__file__).resolve().parents[2]


def flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_launcher_passes_what_config_toml_sets() -> None:
    """A wheel has no .streamlit/config.toml: the launcher's flags must say the same."""
    config = flat(tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text()))
    assert config.pop("server.address") == launch.DEFAULT_ADDRESS
    assert config == launch.SERVER_OPTIONS
    parser = argparse.ArgumentParser()
    launch.add_arguments(parser)
    cmd = launch.command(parser.parse_args(["--port", "8601"]))
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == launch.ENTRY
    assert "--server.fileWatcherType=none" in cmd and "--server.headless=true" in cmd
    assert cmd[-4:] == ["--server.port", "8601", "--server.address", "127.0.0.1"]


def test_the_launcher_refuses_bad_arguments(tmp_path: Path, capsys) -> None:
    assert launch.main(["--port", "70000"]) == 2
    (tmp_path / "file").write_text("x")
    assert launch.main(["--index", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "--port must be between 1 and 65535" in err and "is a file, not a folder" in err
    assert "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH (which would put a checkout before the wheel)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel (its dependencies come from this interpreter's
    site-packages through a .pth file): returns the venv's python."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "imgrec", src / "imgrec",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", ".", "-w", str(tmp / "dist")], cwd=src, check=True)
    wheel = next((tmp / "dist").glob("imgrec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"imgrec/app/entry.py", "imgrec/app/pages/search.py", "imgrec/app/launch.py"} <= set(names)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv), "--without-pip"], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True)
    return python


@pytest.mark.slow
def test_the_dashboard_starts_from_an_installed_wheel(installed: Path, tmp_path: Path,
                                                     tiny_gallery: Path, app_embedder) -> None:
    index_dir = tmp_path / "index"
    build_index(tiny_gallery, index_dir, embedder=app_embedder, workers=0)
    where = subprocess.run([str(installed), "-c", "import imgrec; print(imgrec.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path,
                           env=clean_env()).stdout.strip()
    assert Path(where).resolve().is_relative_to(installed.parents[1])  # the wheel, not the checkout
    subprocess.run([str(installed), "-c", "import imgrec.app.entry, imgrec.app.pages.search"],
                   check=True, cwd=tmp_path, env=clean_env())  # the pages import from the wheel
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    command = installed.parent / "imgrec"  # the wheel's console script
    assert command.is_file()
    proc = subprocess.Popen([str(command), "app", "--index", str(index_dir),
                             "--port", str(port)], cwd=tmp_path, stdout=log, env=clean_env(),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/_stcore/health").strip() == "ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "app.log").read_text()
            time.sleep(0.5)
        assert "<title>Streamlit</title>" in _get(f"http://127.0.0.1:{port}/search")
    finally:
        proc.terminate()  # the launcher became the server: this stops it, nothing is left
        proc.wait(15)
        log.close()
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/_stcore/health")
    text = (tmp_path / "app.log").read_text()
    assert f"imgrec dashboard: http://localhost:{port}" in text and "Traceback" not in text
