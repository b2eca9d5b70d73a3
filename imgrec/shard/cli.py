"""Command-line pieces of the Ray extra: ``imgrec shard split`` and ``imgrec index --ray``.

The CLI's parser calls :func:`add_arguments` (the ``shard`` command) and
:func:`add_ray_option` (on ``index``); its command table maps ``shard`` to :func:`run`,
and the ``index`` command passes :func:`producer`'s result to ``Build(producer=...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: what ``--ray`` holds when given without an address: a local Ray started for the run
LOCAL = "local"


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
