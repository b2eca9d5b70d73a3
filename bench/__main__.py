"""`python -m bench search --n 400000` / `python -m bench index --corpus DIR` /
`python -m bench beyond --n 100000` / `python -m bench server --index DIR` /
`python -m bench quality` / `python -m bench evaluate` / `python -m bench duplicates` /
`python -m bench scale --corpus DIR --like INDEX` / `python -m bench thumbs` /
`python -m bench explore --index DIR` / `python -m bench thresholds --corpus DIR`: print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import data_dir


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("search", help="exact search speed on a synthetic index")
    s.add_argument("--n", type=int, default=400_000)
    s.add_argument("--dim", type=int, default=2048)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--work", type=Path, default=Path("bench/out"))
    s.add_argument("--no-baseline", action="store_true", help="skip the slow original kernels")
    s.add_argument("--save", type=Path, help="also write the JSON here")
    i = sub.add_parser("index", help="indexing throughput on a folder of photos")
    i.add_argument("--corpus", type=Path, required=True)
    i.add_argument("--limit", type=int, default=300)
    i.add_argument("--workers", type=int)
    i.add_argument("--batch-size", type=int, default=16)
    i.add_argument("--repeat", type=int, default=3, help="CNN-only / end-to-end run pairs")
    i.add_argument("--recipes", help="instead: whole builds under each of these recipes in "
                   "turns (e.g. v1,v2,v3), seconds per image")
    i.add_argument("--work", type=Path, default=Path("bench/out"))
    i.add_argument("--save", type=Path)
    b = sub.add_parser("beyond", help="duplicates, neighbour graph, clusters, refine at scale")
    b.add_argument("--n", type=int, default=100_000)
    b.add_argument("--dim", type=int, default=1280)
    b.add_argument("--groups", type=int, default=300, help="synthetic groups of similar images")
    b.add_argument("--sample", type=int, default=3000, help="nodes of the neighbour graph")
    b.add_argument("--skip-duplicates", action="store_true", help="skip the n^2 duplicate scan")
    b.add_argument("--work", type=Path, default=Path("bench/out"))
    b.add_argument("--save", type=Path)
    v = sub.add_parser("server", help="repeated search through the HTTP API vs the CLI cold")
    v.add_argument("--index", type=Path, required=True)
    v.add_argument("--repeat", type=int, default=20)
    v.add_argument("--cold", type=int, default=3, help="cold CLI runs and fresh client processes")
    v.add_argument("--work", type=Path, default=Path("bench/out"))
    v.add_argument("--save", type=Path)
    q = sub.add_parser("quality", help="retrieval quality: categories, copies, demo families")
    q.add_argument("--clipart", type=Path, default=data_dir() / "clipart",
                   help="the categories corpus (python -m bench.make_clipart)")
    q.add_argument("--photos", type=Path, default=data_dir() / "photos",
                   help="the copy-detection set (python -m bench.make_photos)")
    q.add_argument("--demo", type=Path, default=data_dir() / "demo")
    q.add_argument("--recipes", help="';'-separated recipe names (default: all)")
    q.add_argument("--no-extract", dest="extract", action="store_false",
                   help="skip recipes whose features are not cached yet")
    q.add_argument("--work", type=Path, default=Path("bench/out"))
    q.add_argument("--save", type=Path, default=Path("bench/results/quality-2core.json"))
    e = sub.add_parser("evaluate", help="time imgrec.evaluate on a synthetic labelled index")
    e.add_argument("--n", type=int, default=10_000)
    e.add_argument("--dim", type=int, default=1280)
    e.add_argument("--classes", type=int, default=100)
    e.add_argument("--work", type=Path, default=Path("bench/out"))
    e.add_argument("--save", type=Path)
    du = sub.add_parser("duplicates", help="duplicate scan speed and copy-detection accuracy")
    du.add_argument("--n", type=int, nargs="*", default=[100_000, 400_000])
    du.add_argument("--threshold", type=float, default=0.65)
    du.add_argument("--rank", type=int, default=64, help="first-pass dimension")
    du.add_argument("--stats-index", type=Path, help="index whose embedding statistics the "
                    "synthetic data copies (default: the --corpus-index)")
    du.add_argument("--corpus", type=Path, help="copy-detection corpus (bench.copy_corpus)")
    du.add_argument("--corpus-index", type=Path, nargs="+", default=[],
                    help="its index, or one per embedding recipe (each measured in turn)")
    du.add_argument("--keeper-corpus", type=Path, help="keeper corpus (bench.keeper_corpus)")
    du.add_argument("--keeper-index", type=Path, help="its index")
    du.add_argument("--work", type=Path, default=Path("bench/out"))
    du.add_argument("--save", type=Path)
    sc = sub.add_parser("scale", help="Ray indexing vs local; sharded search vs unsharded")
    sc.add_argument("--corpus", type=Path, help="photos to index (skip indexing without)")
    sc.add_argument("--repeat", type=int, default=1, help="local / Ray build rounds")
    sc.add_argument("--like", type=Path, default=Path("data/index"),
                    help="a real index whose embedding statistics the synthetic rows follow")
    sc.add_argument("--n", type=int, default=400_000)
    sc.add_argument("--shards", default="2,4")
    sc.add_argument("--repeat-search", type=int, default=20)
    sc.add_argument("--skip-search", action="store_true")
    sc.add_argument("--work", type=Path, default=Path("bench/out"))
    sc.add_argument("--save", type=Path)
    t = sub.add_parser("thumbs", help="a 20-image result grid: first view and cached views")
    t.add_argument("--grid", type=int, default=20)
    t.add_argument("--repeat", type=int, default=5)
    t.add_argument("--browser", action="store_true",
                   help="time the grid in Chromium: the dashboard as `make run` starts it")
    t.add_argument("--work", type=Path, default=Path("bench/out"))
    t.add_argument("--save", type=Path)
    e = sub.add_parser("explore", help="the Explore page in Chromium: first render, hover, 3-D")
    e.add_argument("--index", type=Path, default=Path("data/index"))
    e.add_argument("--repeat", type=int, default=3)
    e.add_argument("--work", type=Path, default=Path("bench/out"))
    e.add_argument("--save", type=Path)
    from .thresholds import add_arguments as thresholds_arguments

    thresholds_arguments(sub.add_parser("thresholds", help="each recipe's thresholds that "
                                        "admit as many pairs as v1's"))
    args = p.parse_args()
    if args.what == "quality":
        from imgrec.demo import build_demo_gallery

        from .quality import run

        build_demo_gallery(args.demo)  # returns the complete gallery already there
    elif args.what == "evaluate":
        from .evaluate_speed import run
    elif args.what == "search":
        from .search import run
    elif args.what == "beyond":
        from .beyond import run
    elif args.what == "server":
        from .server import run
    elif args.what == "duplicates":
        from .duplicates import run
        args.stats_index = args.stats_index or (args.corpus_index or [None])[0]
    elif args.what == "scale":
        from .scale import run
    elif args.what == "thumbs" and args.browser:
        from .thumbs_browser import run
    elif args.what == "thumbs":
        from .thumbs import run
    elif args.what == "explore":
        from .explore_browser import run
    elif args.what == "thresholds":
        from .thresholds import run
    else:
        from .indexing import run
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
