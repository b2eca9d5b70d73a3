"""Act without risk: move non-keepers into a quarantine folder, and put them back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.insights.duplicates.report import DuplicateReport


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan(report: DuplicateReport, tiers: list[str]) -> list[tuple[str, str]]:
    """(relative path, content hash) of every non-keeper of the chosen tiers."""
    seen: set[str] = set()
    out = []
    for g in report.groups:
        if g.tier in tiers:
            for m in g.members[1:]:
                if m.path not in seen:
                    seen.add(m.path)
                    out.append((m.path, m.sha256))
    return out


def move(root: Path, moves: list[tuple[str, str]], dest: Path) -> Path:
    """Move files (relative paths kept) under ``dest``; returns the undo manifest.

    Nothing is deleted: a file whose hash changed since indexing, or whose target exists,
    stops the move with a clear message before anything moves.
    """
    root, dest = Path(root).resolve(), Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise ImgrecError(f"--move-to {dest} lies inside the gallery {root}: choose a folder "
                          "outside it")
    for rel, sha in moves:
        src, dst = root / rel, dest / rel
        if not src.is_file():
            raise ImgrecError(f"{rel} is missing from the gallery: rebuild the index first")
        if sha and sha256_of(src) != sha:
            raise ImgrecError(f"{rel} changed since it was indexed: rebuild the index first")
        if dst.exists():
            raise ImgrecError(f"{dst} already exists: nothing moved")
    dest.mkdir(parents=True, exist_ok=True)
    manifest = dest / f"imgrec-undo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    done = []
    for rel, sha in moves:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root / rel), str(dest / rel))
        done.append({"path": rel, "sha256": sha})
        manifest.write_text(json.dumps({"gallery": str(root), "quarantine": str(dest),
                                        "files": done}, indent=1))
    if not done:
        manifest.write_text(json.dumps({"gallery": str(root), "quarantine": str(dest),
                                        "files": []}, indent=1))
    return manifest


def undo(manifest: Path) -> tuple[Path, int]:
    """Put back every file of an undo manifest, checked by hash; returns (gallery, count)."""
    try:
        m = json.loads(Path(manifest).read_text())
        root, dest, files = Path(m["gallery"]), Path(m["quarantine"]), m["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ImgrecError(f"{manifest} is not an imgrec undo manifest") from None
    for f in files:
        src, dst = dest / f["path"], root / f["path"]
        if not src.is_file():
            raise ImgrecError(f"{src} is missing from the quarantine folder: nothing restored")
        if dst.exists():
            raise ImgrecError(f"{dst} exists again in the gallery: nothing restored")
        if f["sha256"] and sha256_of(src) != f["sha256"]:
            raise ImgrecError(f"{src} changed in quarantine: nothing restored")
    for f in files:
        (root / f["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dest / f["path"]), str(root / f["path"]))
    os.replace(manifest, str(manifest) + ".done")
    return root, len(files)
