"""Hostile-input suites: Hypothesis profiles, and running code as a user who is not root.

Profiles: ``ci`` (the default: a fixed seed and 200 examples, so a run is repeatable and
short) and ``fuzz`` (many more random examples; ``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

NOBODY = 65534
_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=timedelta(seconds=5),
                          suppress_health_check=_CHECKS, print_blob=True)
settings.register_profile("fuzz", max_examples=5_000, deadline=timedelta(seconds=5),
                          suppress_health_check=_CHECKS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[2]


def _nobody_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []  # already an ordinary user
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture(scope="session")
def as_nobody() -> object:
    """Run ``python -c CODE`` as an ordinary user (uid 65534 when the tests run as root).

    Skips, saying why, where that is impossible (no setpriv, or the interpreter is not
    reachable by that user).
    """
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("the tests run as root and setpriv is missing: cannot drop to a plain user")
    probe = subprocess.run([*_nobody_prefix(), sys.executable, "-c", "import numpy, PIL"],
                           capture_output=True, text=True, cwd="/", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"python cannot run as uid {NOBODY} here: {probe.stderr.strip()[-200:]}")

    def run(code: str, *, pythonpath: str | os.PathLike = ROOT, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items()
                if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
        full.update({"PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1"})
        full.update(env or {})
        return subprocess.run([*_nobody_prefix(), sys.executable, "-c", code], env=full,
                              capture_output=True, text=True, cwd="/", timeout=timeout)

    return run


@pytest.fixture()
def open_tmp() -> Iterator[Path]:
    """A temporary folder that an ordinary user can enter (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="imgrec-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
