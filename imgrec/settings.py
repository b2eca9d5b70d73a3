"""Where imgrec keeps its data: resolved from environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    env = os.environ.get("IMGREC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    if (PROJECT_ROOT / "pyproject.toml").is_file():  # running from a source checkout
        return PROJECT_ROOT / "data"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "imgrec"


@dataclass(frozen=True)
class Settings:
    """Paths used when the caller gives none.

    ``IMGREC_INDEX_DIR`` overrides the index directory, ``IMGREC_DEMO_DIR`` the demo
    gallery, ``IMGREC_DATA_DIR`` the folder holding both (default: ``data/`` in a source
    checkout, else ``~/.local/share/imgrec``).
    """

    data_dir: Path
    index_dir: Path
    demo_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        data = _data_dir()
        return cls(
            data_dir=data,
            index_dir=Path(os.environ.get("IMGREC_INDEX_DIR") or data / "index").expanduser(),
            demo_dir=Path(os.environ.get("IMGREC_DEMO_DIR") or data / "demo").expanduser(),
        )
