"""``imgrec duplicates`` and ``imgrec check``: their arguments and commands.

Exit codes: 0 done (``check``: every file new), 2 bad input (one line, from the CLI's
main), 3 (``check``) some files are already in the collection.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from imgrec.cli.output import printable, writing
from imgrec.errors import ImgrecError
from imgrec.features.recipe import RECIPES
from imgrec.insights.duplicates import actions
from imgrec.insights.duplicates.core import find_duplicates
from imgrec.insights.duplicates.report import EXACT, SAME, TIERS, write_csv

EXIT_OK, EXIT_KNOWN = 0, 3
TIER_FLAGS = {"exact": EXACT, "same": SAME, "similar": "similar shots"}
RECIPE_DEFAULTS = ", ".join(f"{r.duplicate_threshold:g} for {n}" for n, r in RECIPES.items())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``imgrec duplicates``."""
    _index(p)
    p.add_argument("--threshold", type=float, metavar="T", default=None,
                   help="embedding cosine a candidate pair needs (default: the one calibrated "
                        f"for the index's embedding recipe: {RECIPE_DEFAULTS})")
    p.add_argument("--exact-only", action="store_true",
                   help="same file content only (default: off)")
    p.add_argument("--tiers", default="exact,same",
                   help="tiers --move-to acts on, of exact,same,similar (default: %(default)s)")
    p.add_argument("--distinct", nargs="+", metavar="PATH",
                   help="remember these images as not duplicates of each other (default: none)")
    p.add_argument("--keep", metavar="PATH",
                   help="remember this image as its group's keeper (default: none)")
    p.add_argument("--forget", nargs="+", metavar="PATH",
                   help="undo the decisions on these images (default: none)")
    p.add_argument("--ignore-decisions", action="store_true",
                   help="show the raw result, as if no decision had been made (default: off)")
    p.add_argument("--move-to", type=Path, metavar="DIR",
                   help="move the non-keepers of --tiers here, relative paths kept; a dry run "
                        "unless --apply (default: none)")
    p.add_argument("--apply", action="store_true",
                   help="really move the files (default: off, a dry run)")
    p.add_argument("--undo", type=Path, metavar="MANIFEST",
                   help="put the files of a --move-to back, checked by hash (default: none)")
    p.add_argument("--csv", type=Path, metavar="OUT",
                   help="also write the groups as CSV (default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: off)")


def _index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, metavar="DIR",
                   help="index directory (default: IMGREC_INDEX_DIR, else data/index)")


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``imgrec check``."""
    p.add_argument("targets", nargs="+", metavar="FILE|DIR",
                   help="images, or folders of images, to check against the collection")
    _index(p)
    p.add_argument("--threshold", type=float, metavar="T", default=None,
                   help="embedding cosine a candidate match needs (default: the one calibrated "
                        f"for the index's embedding recipe: {RECIPE_DEFAULTS})")
    p.add_argument("--json", action="store_true", help="print one JSON list (default: off)")
    from imgrec.shard.cli import add_serve_option

    add_serve_option(p)  # --ray ADDRESS, for a sharded --index


def _open(index_dir: Path | None):
    from imgrec.index.index import Index

    return Index.open(index_dir) if index_dir else Index.open()


def run(args: argparse.Namespace) -> int:
    """``imgrec duplicates``; returns the exit code."""
    if args.undo:
        root, count = actions.undo(args.undo)
        print(f"restored {count} files into {root} (checked by hash)")
        _sync(root, args.index)
        return EXIT_OK
    idx = _open(args.index)
    if args.distinct or args.keep or args.forget:
        return _decide(idx, args)
    tiers = [TIER_FLAGS.get(t.strip()) for t in args.tiers.split(",") if t.strip()]
    if None in tiers or not tiers:
        raise ImgrecError(f"--tiers takes exact, same, similar; got {args.tiers!r}")
    rep = find_duplicates(idx, args.threshold, near=not args.exact_only,
                          decisions=not args.ignore_decisions)
    if args.csv:
        with writing(args.csv):
            write_csv(rep, args.csv)
    if args.json and not args.move_to:
        print(json.dumps(rep.to_dict(), indent=2))
        return EXIT_OK
    if not args.json:
        _print(rep)
    if args.move_to:
        moves = actions.plan(rep, tiers)
        if not args.apply:
            print(f"\ndry run: would move {len(moves)} files to {args.move_to} "
                  "(add --apply to move them)")
            for rel, _ in moves:
                print(f"  {printable(rel)}")
            return EXIT_OK
        manifest = actions.move(idx.root, moves, args.move_to)
        print(f"moved {len(moves)} files to {args.move_to}; undo with "
              f"imgrec duplicates --undo {manifest}")
        _sync(idx.root, args.index)
    return EXIT_OK


def _print(rep) -> None:
    kinds = Counter(g.tier for g in rep.groups)
    print(f"{len(rep.groups)} duplicate groups ({', '.join(f'{kinds[t]} {t}' for t in TIERS)};"
          f" cosine >= {rep.threshold:g}) among {rep.images} images, {rep.redundant} images "
          f"beyond one per group; {rep.seconds:.2f} s")
    for g in rep.groups:
        print(f"\ngroup {g.id} ({g.tier}, {len(g.members)} images)")
        print(f"  keep    {printable(g.keeper.path)}  ({g.reason})")
        for m in g.members[1:]:
            print(f"  {m.similarity:6.3f}  {printable(m.path)}  ({m.evidence})")


def _decide(idx, args: argparse.Namespace) -> int:
    from imgrec.insights.duplicates.decide import Decisions

    d = Decisions(idx)
    sha = d.hashes()
    named = [*(args.distinct or []), *([args.keep] if args.keep else []), *(args.forget or [])]
    missing = [p for p in named if p not in sha]
    if missing:
        raise ImgrecError(f"not indexed images of this gallery: {', '.join(missing)}")
    if args.distinct:
        if len(args.distinct) < 2:
            raise ImgrecError("--distinct needs at least two images")
        print(f"remembered {d.distinct(args.distinct)} pairs as not duplicates")
    if args.keep:
        d.keep(args.keep)
        print(f"remembered {args.keep} as its group's keeper")
    if args.forget:
        print(f"forgot {d.forget(args.forget)} decisions")
    return EXIT_OK


def _sync(root: Path, index_dir: Path | None) -> None:
    """Bring the index up to date with the gallery after files moved."""
    from imgrec import build_index

    idx = _open(index_dir)
    build_index(root, idx.index_dir, model=idx.model, workers=0)
    print(f"index {idx.index_dir} synced")


def run_check(args: argparse.Namespace) -> int:
    """``imgrec check``: exit 0 when every file is new, 3 when some are known."""
    from imgrec.cli.commands import index_dir
    from imgrec.insights.duplicates.check import check
    from imgrec.shard.cli import open_index

    verdicts = check(open_index(index_dir(args.index), args.ray), args.targets, args.threshold)
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        for v in verdicts:
            print(f"{printable(str(v.file))}: new" if v.tier is None else
                  f"{printable(str(v.file))}: already in the collection as "
                  f"{printable(str(v.match))} ({v.tier}, "
                  f"score {v.score:.3f}; {v.evidence})")
    return EXIT_KNOWN if any(v.tier for v in verdicts) else EXIT_OK
