"""A new collection built straight into a sharded index: the ordinary build into a staging
index inside the target folder, then the split of :mod:`imgrec.shard.split` (one
implementation of the shard layout), then the staging index is removed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from imgrec.build.report import BuildReport
from imgrec.errors import ImgrecError
from imgrec.folders import resolve_path
from imgrec.settings import Settings

#: the ordinary index the build writes first, inside the sharded index's folder (a killed
#: build resumes from its work store; it is removed once the shards are written)
STAGING = ".build"
_SHARD = re.compile(r"shard-\d{3,}")  # the folders write_shards makes


def check_shards(shards: object) -> int:
    """``shards`` as a whole number of at least 1, or a one-line error naming ``--shards``."""
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ImgrecError(f"--shards must be a whole number of at least 1, got {shards!r}")
    return shards


def sharded_sync(index_dir: str | Path | None, shards: int | None) -> bool:
    """Whether a build into ``index_dir`` is the sync of an existing sharded index.

    Raises:
        ImgrecError: it is one, and ``shards`` asks for another number of shards.
    """
    from imgrec.shard.split import MANIFEST, ShardedManifest

    out = resolve_path(index_dir or Settings.from_env().index_dir)
    if not (out / MANIFEST).is_file():
        return False
    have = len(ShardedManifest.read(out).shards)
    if shards is not None and check_shards(shards) != have:
        raise ImgrecError(f"{out} is a sharded index of {have} shards: a sync keeps its shard "
                          f"count (leave out --shards, or give --shards {have}); for {shards}"
                          " shards split an unsharded index again into a new folder")
    return True


def build_sharded(index_dir: str | Path | None, shards: int,
                  build: Callable[[Path], BuildReport]) -> BuildReport:
    """Run ``build(staging folder)`` and write its index as ``shards`` shards in ``index_dir``.

    Args:
        index_dir: the sharded index to make: a new or empty folder, or one holding only
            the staging index of an interrupted build (which then resumes).
        shards: how many shards (from 1 to the number of indexed images).
        build: the ordinary build of the gallery into the folder it is given.

    Returns:
        The build's report, naming ``index_dir``.

    Raises:
        ImgrecError: ``index_dir`` already holds something else (an existing sharded
            index is synced by :mod:`imgrec.build.shardsync` instead), or
            ``shards`` exceeds the images indexed (the staging index is kept, so a rerun
            with fewer shards reuses its features).
    """
    from imgrec.index.index import Index
    from imgrec.shard.split import MANIFEST, write_shards

    check_shards(shards)
    out = resolve_path(index_dir or Settings.from_env().index_dir)
    if out.exists() and not out.is_dir():
        raise ImgrecError(f"{out} is a file, not a folder for a sharded index")
    if (out / MANIFEST).exists():
        raise ImgrecError(f"{out} is already a sharded index: sync it with build_index "
                          "(imgrec.build.shardsync)")
    here = sorted(out.iterdir()) if out.exists() else []
    partial = [p for p in here if _SHARD.fullmatch(p.name) and p.is_dir()]  # a killed split
    others = [p.name for p in here if p.name != STAGING and p not in partial]
    if others:
        raise ImgrecError(f"{out} is not empty (it holds {others[0]}): a sharded build needs a "
                          "new or empty folder")
    staging = out / STAGING
    report = build(staging)
    for p in partial:
        shutil.rmtree(p)
    write_shards(Index.open(staging), out, shards, source="build")
    shutil.rmtree(staging)
    return replace(report, index_dir=out,
                   notes=[*report.notes, f"written as a sharded index of {shards} shards "
                          f"(open it with ShardedIndex.open or --index {out})"])
