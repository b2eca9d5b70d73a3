"""A repeated search through a warm ``imgrec serve`` vs ``python -m imgrec search`` cold, on
one index: each cold run pays the imports, the model and the index; the server paid them once."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from imgrec import Index

from .machine import machine

CLIENT = ("import sys; from imgrec.server import search_via_server; "
          "search_via_server(sys.argv[1], sys.argv[2:], k=5)")


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def _start(index_dir: Path, log: Path) -> tuple[subprocess.Popen, str, float]:
    import httpx

    t = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "imgrec.server", "--index", str(index_dir),
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while not (found := re.search(r"at (http://\S+)", log.read_text())):
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)
    url = found.group(1)
    listening = time.perf_counter() - t
    while not httpx.get(f"{url}/healthz", trust_env=False).json()["model_warm"]:
        time.sleep(0.05)
    return proc, url, listening


def run(args) -> dict:
    import httpx

    from imgrec.server import search_via_server

    idx = Index.open(args.index)
    query = str(idx.resolve(idx.paths([0])[0]))
    stored = "@" + idx.paths([1])[0]
    cold = [_wall([sys.executable, "-m", "imgrec", "search", query, "--index", str(args.index),
                   "--json"]) for _ in range(args.cold)]
    args.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    proc, url, listening = _start(args.index, args.work / "server.log")
    warm_after = time.perf_counter() - t
    try:
        timings: dict[str, list[float]] = {"upload": [], "stored": [], "similar_http": []}
        for _ in range(args.repeat):
            for name, qs in (("upload", [query]), ("stored", [stored])):
                t = time.perf_counter()
                search_via_server(url, qs, k=5)
                timings[name].append(time.perf_counter() - t)
            with httpx.Client(base_url=url, trust_env=False) as c:
                t = time.perf_counter()
                c.get(f"/similar/{stored[1:]}", params={"k": 5}).raise_for_status()
                timings["similar_http"].append(time.perf_counter() - t)
        process = [_wall([sys.executable, "-c", CLIENT, url, query]) for _ in range(args.cold)]
    finally:
        proc.send_signal(2)
        proc.wait(30)

    def ms(xs: list[float]) -> float:
        return round(1000 * statistics.median(xs), 1)

    return {"machine": machine(), "load_average_1min": round(os.getloadavg()[0], 1),
            "images": len(idx), "model": idx.model,
            "cli_cold_search_s": [round(x, 2) for x in cold],
            "server_listening_after_s": round(listening, 2),
            "server_warm_after_s": round(warm_after, 2),
            "in_process_client_ms": {k: ms(v) for k, v in timings.items()},
            "fresh_process_client_upload_s": [round(x, 2) for x in process],
            "repeat": args.repeat}
