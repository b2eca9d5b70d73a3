"""Helpers of the HTTP API tests: start and stop ``python -m imgrec.server`` in a subprocess,
wait for its model, copy a small gallery from the demo (import them from here, not from
conftest: several conftest modules share that name)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("chelsea", "coffee", "rocket")
PER_FAMILY = 4
CORRUPT = "broken.jpg"
SERVING = re.compile(r"serving .* at (http://\S+)")


@dataclass
class Server:
    """A running ``python -m imgrec.server``."""

    url: str
    proc: subprocess.Popen
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, trust_env=False, **kw)


def server_env(tmp: Path) -> dict[str, str]:
    """This checkout first on the path, and a proxy that refuses every download."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "TORCH_HOME": str(tmp / "torch"), "PYTHONUNBUFFERED": "1"}
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env[var] = "http://127.0.0.1:9"
    for var in ("no_proxy", "NO_PROXY", "IMGREC_INDEX_DIR"):
        env.pop(var, None)
    return env


def start_server(index_dir: Path, tmp: Path, *args: str, timeout: float = 120) -> Server:
    """Start the server with ``--port 0`` and wait for the URL it prints."""
    log = tmp / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgrec.server", "--index", str(index_dir), "--port", "0",
             *args], stdout=out, stderr=subprocess.STDOUT, env=server_env(tmp), cwd=tmp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = SERVING.search(log.read_text())
        if found:
            return Server(found.group(1), proc, log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> str:
    """Stop it as Ctrl-C would; return its log."""
    server.proc.send_signal(2)
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    return server.log.read_text()


def wait_warm(server: Server, timeout: float = 300) -> dict:
    """Poll /healthz until the model is loaded."""
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:
            health = c.get("/healthz").json()
            if health["model_warm"] or time.monotonic() > deadline:
                return health
            time.sleep(0.25)


def make_gallery(dest: Path, demo_root: Path, families: dict[str, list[str]]) -> Path:
    """``PER_FAMILY`` images of each of ``FAMILIES`` from the demo, plus a corrupt file."""
    for fam in FAMILIES:
        for rel in families[fam][:PER_FAMILY]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(demo_root / rel, dest / rel)
    (dest / CORRUPT).write_bytes(b"this is not a JPEG")
    return dest
