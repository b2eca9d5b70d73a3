"""Where the quality benchmarks keep their corpora and cached features (outside the repository).

``IMGREC_BENCH_DATA`` (default ``/tmp/imgrec-bench``) holds ``clipart/``, ``photos/``,
``demo/`` and ``features/``; nothing there is committed.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.environ.get("IMGREC_BENCH_DATA", "/tmp/imgrec-bench"))
