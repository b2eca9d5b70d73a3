"""Command-line pieces of the Ray extra: ``shard split``, ``index --ray/--shards``, sharded ``--index``.

The CLI's parser calls :func:`add_arguments` (the ``shard`` command),
:func:`add_ray_option` and :func:`add_shards_option` (on ``index``) and
:func:`add_serve_option` (``--ray ADDRESS`` where a sharded index is read); its command
table maps ``shard`` to :func:`run`, and the ``index`` command passes :func:`producer`'s
result to ``Build(producer=...)``. Commands open ``--index`` with :func:`open_index` (an
Index or a ShardedIndex); :func:`refuse_sharded` stops the others in one line.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from imgrec.errors import ImgrecError

#: what ``--ray`` holds when given without an address: a local Ray started for the run
LOCAL = "local"
#: the Ray cluster a sharded index is served on when no ``--ray`` is given (unset: local)
RAY_ENV = "IMGREC_RAY_ADDRESS"
#: the commands that work on a sharded index (the others refuse it, naming themselves)
SHARDED_COMMANDS = frozenset({"search", "info", "labels", "app", "shard", "demo",
                              "clusters", "graph", "export", "evaluate", "index", "watch",
                              "serve", "check"})


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sharded index (it holds the sharded-index manifest)."""
    from imgrec.shard.split import MANIFEST

    return (Path(path) / MANIFEST).is_file()


def ray_address(given: str | None) -> str | None:
    """The Ray cluster to serve a sharded index on: ``--ray``, else ``$IMGREC_RAY_ADDRESS``,
    else None (a local Ray started for the run)."""
    address = given or os.environ.get(RAY_ENV, "").strip() or None
    return None if address == LOCAL else address


def open_index(path: Path, ray: str | None = None) -> Any:
    """The index at ``path``: an :class:`Index`, or for a sharded index a
    :class:`~imgrec.shard.sharded.ShardedIndex` on the Ray cluster ``ray`` (see
    :func:`ray_address`)."""
    if is_sharded(path):
        from imgrec.shard.sharded import ShardedIndex

        return ShardedIndex.open(path, ray_address=ray_address(ray))
    from imgrec.index.index import Index

    return Index.open(path)


def refuse_sharded(command: str, index: Any, shards: Any = None) -> None:
    """Raise a one-line ImgrecError when ``command`` cannot work on the sharded index at
    ``index`` (every command but :data:`SHARDED_COMMANDS`; ``index`` and ``watch`` sync
    every shard, and ``index --shards N`` with another N says so itself)."""
    if command in SHARDED_COMMANDS or not isinstance(index, Path) or not is_sharded(index):
        return
    works = ", ".join(sorted(SHARDED_COMMANDS - {"shard", "demo"}))
    raise ImgrecError(f"imgrec {command} is not supported on a sharded index ({index}): run "
                      f"it on an unsharded index (sharded: {works})")


def add_arguments(sub: Any) -> argparse.ArgumentParser:
    """Add ``shard split INDEX OUT --shards N`` to the sub-command set ``sub``."""
    p = sub.add_parser("shard", help="sharded indexes for search over a Ray cluster",
                       description="sharded indexes for search over a Ray cluster "
                                   "(needs the extra: pip install 'imgrec[ray]')")
    actions = p.add_subparsers(dest="shard_command", required=True, metavar="ACTION")
    s = actions.add_parser("split", help="split an index into N shards sharing one PCA",
                           description="write INDEX as a sharded index in OUT: N ordinary "
                                       "indexes over contiguous rows, sharing one PCA model")
    s.add_argument("index", type=Path, metavar="INDEX", help="the index directory to split")
    s.add_argument("out", type=Path, metavar="OUT", help="a new (or empty) folder")
    s.add_argument("--shards", type=int, default=2, metavar="N",
                   help="number of shards (default: %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``imgrec shard ACTION`` (only ``split`` so far); returns the exit code."""
    from imgrec.shard.split import ShardedManifest, split

    out = split(args.index, args.out, args.shards)
    m = ShardedManifest.read(out)
    print(f"split {m.count} rows of {args.index} into {len(m.shards)} shards at {out}: "
          + ", ".join(f"{s.name} rows {s.offset}-{s.offset + s.count - 1}" for s in m.shards))
    return 0


def add_serve_option(p: argparse.ArgumentParser) -> None:
    """Add ``--ray ADDRESS`` to a command that reads an index (used on a sharded one)."""
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="for a sharded index: the Ray cluster its shards are served on "
                        "('auto', ray://host:10001) (default: $IMGREC_RAY_ADDRESS, else a "
                        "local Ray with this machine's cores)")


def add_shards_option(p: argparse.ArgumentParser) -> None:
    """Add ``--shards N`` to the ``index`` command."""
    p.add_argument("--shards", type=int, metavar="N", default=None,
                   help="write a new collection as a sharded index of N shards (searched "
                        "over Ray; --index must be a new or empty folder); an --index that "
                        "is a sharded index is synced, each file in its shard, new files "
                        "in the smallest (default: one ordinary index)")


def add_ray_option(p: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]`` to the ``index`` command."""
    p.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help="compute the features on a Ray cluster: ADDRESS as Ray takes it "
                        "('auto' for a running cluster, ray://host:10001), or nothing for a "
                        "local Ray with this machine's cores; the gallery must be readable "
                        "at the same path on every node (a shared filesystem) "
                        "(default: off; needs pip install 'imgrec[ray]')")


def producer(args: argparse.Namespace) -> Any:
    """The ``Build(producer=...)`` for ``--ray`` (None without it: the local build)."""
    if getattr(args, "ray", None) is None:
        return None
    from imgrec.build.ray_producer import RayFeatures

    return RayFeatures(None if args.ray == LOCAL else args.ray, model=args.model,
                       weights=args.weights, device=args.device, batch_size=args.batch_size)


def info(path: Path, as_json: bool, verify: bool) -> int:
    """``imgrec info [--verify]`` on a sharded index: the manifest and each shard's facts
    (each shard opened here, no Ray needed); exit 2 naming each problem of ``--verify``."""
    import json

    from imgrec.shard.split import ShardedManifest, open_shard

    m = ShardedManifest.read(path)
    if verify:
        problems = verify_shards(path, m)
        if as_json:
            print(json.dumps({"index_dir": str(path), "ok": not problems,
                              "problems": problems}, indent=2))
        else:
            for p in problems:
                print(f"problem: {p}")
            print(f"{'failed' if problems else 'ok'}: sharded index {path}, "
                  f"{len(m.shards)} shards checked ({len(problems)} problems)")
        return 2 if problems else 0
    facts = []
    for s in m.shards:
        try:
            facts.append(open_shard(path / s.name, s.version).facts())
        except ImgrecError as exc:
            raise ImgrecError(f"shard {s.name} of {path} cannot be opened: {exc}") from None
    if as_json:
        print(json.dumps({**m.to_json(), "index_dir": str(path), "sharded": True,
                          "shard_facts": [f.to_json() for f in facts]}, indent=2))
        return 0
    print(f"index      {path} (sharded: {len(m.shards)} shards sharing one PCA model)")
    print(f"gallery    {m.gallery_root}")
    print(f"model      {m.model} ({m.pca_components} PCA components)")
    print(f"images     {m.count} indexed, {sum(len(f.skipped) for f in facts)} skipped")
    for s, f in zip(m.shards, facts, strict=True):
        print(f"shard      {s.name}: rows {s.offset}-{s.offset + s.count - 1}, version "
              f"{f.version}, {f.size_bytes / 1e6:.1f} MB")
    print("search     exact over every shard (imgrec search --index this folder, over Ray)")
    return 0


def verify_shards(path: Path, m: Any) -> list[str]:
    """The problems of every shard of the sharded index at ``path`` (manifest ``m``): the
    thorough check of each, and a published version other than the one ``m`` names."""
    from imgrec.index.verify import verify as check
    from imgrec.index.writer import current_version

    problems = []
    for s in m.shards:
        problems += [f"{s.name}: {p}" for p in check(path / s.name)]
        try:
            cur = current_version(path / s.name)
        except ImgrecError as exc:
            cur, problems = None, [*problems, f"{s.name}: {exc}"]
        if s.version is not None and cur is not None and cur.name != s.version:
            problems.append(f"{s.name}: its published version {cur.name} is not the "
                            f"{s.version} that {path.name}'s manifest names (an interrupted "
                            "sync: run `imgrec index GALLERY --index` on it again)")
        elif s.version is None and cur is None:
            problems.append(f"{s.name}: it holds no index version")
    return problems + _across(path, m)


def _across(path: Path, m: Any) -> list[str]:
    """What the shards must agree on: the manifest's rows, one PCA model, each path in one
    shard only."""
    import numpy as np

    from imgrec.shard.split import open_shard

    problems: list[str] = []
    pca, seen = None, {}
    for s in m.shards:
        try:
            idx = open_shard(path / s.name, s.version)
        except (ImgrecError, OSError) as exc:
            problems.append(f"{s.name}: {exc}")
            continue
        if len(idx) != s.count:
            problems.append(f"{s.name}: it holds {len(idx)} rows, the manifest says {s.count}")
        mine = idx.pca()
        if pca is None:
            pca = mine
        elif not (np.array_equal(mine.mean, pca.mean)
                  and np.array_equal(mine.components, pca.components)):
            problems.append(f"{s.name}: its PCA model is not the one the other shards share")
        for p in idx.all_paths():
            if p in seen:
                problems.append(f"{s.name}: {p!r} is also in {seen[p]}")
            seen[p] = s.name
    return problems
