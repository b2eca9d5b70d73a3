"""Build the clip-art categories corpus from Debian's openclipart-png (fixed seed, outside the repo).

Usage: ``python -m bench.make_clipart [--out DIR] [--per-folder 40] [--min-folder 10]``
(default ``--out``: ``$IMGREC_BENCH_DATA/clipart``, see :mod:`bench.data`).
The package is fetched with ``apt-get download`` and unpacked with ``dpkg -x`` in a temporary
folder; from each folder holding at least ``--min-folder`` PNGs at most ``--per-folder`` are
drawn (seed 0) and copied to ``OUT/<folder>/<file>``, so the folder structure carries the
labels: category = the top folder (``depth:1``), subcategory = the folder (``folder``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

from .data import data_dir

PACKAGE = "openclipart-png"
PNG_ROOT = Path("usr/share/openclipart/png")


def fetch(work: Path) -> Path:
    """Download and unpack the package into ``work``; return the folder of PNGs."""
    def download() -> bool:
        return subprocess.run(["apt-get", "download", PACKAGE], cwd=work,
                              capture_output=True).returncode == 0
    if not download():
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        if not download():
            raise SystemExit(f"apt-get download {PACKAGE} failed")
    deb = next(work.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True)
    return work / "x" / PNG_ROOT


def _indexable(f: Path) -> bool:
    """Whether imgrec indexes the file (it skips images above its pixel limit)."""
    from PIL import Image

    from imgrec.images import MAX_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                return im.width * im.height <= MAX_PIXELS
    except Exception:
        return False


def sample(root: Path, per_folder: int, min_folder: int, seed: int) -> list[Path]:
    """Relative paths: at most ``per_folder`` PNGs of each folder holding ``min_folder`` or more."""
    folders: dict[Path, list[Path]] = defaultdict(list)
    for f in sorted(root.rglob("*.png")):
        if f.is_file() and _indexable(f):
            folders[f.relative_to(root).parent].append(f.relative_to(root))
    rng = random.Random(seed)
    chosen: list[Path] = []
    for folder in sorted(folders):
        files = folders[folder]
        if len(files) >= min_folder and folder != Path("."):
            chosen += sorted(rng.sample(files, min(per_folder, len(files))))
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.make_clipart", description=__doc__)
    p.add_argument("--out", type=Path, default=data_dir() / "clipart")
    p.add_argument("--per-folder", type=int, default=40)
    p.add_argument("--min-folder", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", type=Path, help="an unpacked PNG folder (skips the download)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = a.source or fetch(Path(tmp))
        files = sample(root, a.per_folder, a.min_folder, a.seed)
        if a.out.exists():
            shutil.rmtree(a.out)
        for rel in files:
            (a.out / rel.parent).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, a.out / rel)
    cats = {r.parts[0] for r in files}
    subs = {r.parent for r in files}
    print(f"{len(files)} images, {len(cats)} categories, {len(subs)} folders in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
