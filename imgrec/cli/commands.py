"""The ``demo``, ``index`` and ``search`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from imgrec.cli.output import ProgressBar, printable, writing
from imgrec.errors import ImgrecError

EXIT_OK = 0


def index_dir(path: Path | None) -> Path:
    """The ``--index`` directory, or the default one from the settings."""
    from imgrec.settings import Settings

    return path or Settings.from_env().index_dir


def demo(args: argparse.Namespace) -> int:
    """Write the demo gallery; with ``--index`` also index it into the default index."""
    from imgrec.cli.parser import build_parser
    from imgrec.demo import build_demo_gallery
    from imgrec.settings import Settings

    out = args.out or Settings.from_env().demo_dir
    try:
        g = build_demo_gallery(out)
    except ValueError as exc:
        raise ImgrecError(str(exc)) from None
    print(f"demo gallery: {g.count} images in {len(g.families)} folders at {g.root}")
    if args.index:  # the index command with its own defaults
        return index(build_parser().parse_args(["index", str(g.root), "--wait"]))
    return EXIT_OK


def index(args: argparse.Namespace) -> int:
    """Index or re-sync a gallery, with a progress bar on stderr."""
    from imgrec.build.builder import build_index
    from imgrec.features.embedding import CNNEmbedder

    if not args.gallery.is_dir():
        raise ImgrecError(f"gallery folder not found: {args.gallery}")
    emb = CNNEmbedder(args.model, weights=args.weights, device=args.device,
                      batch_size=args.batch_size)
    emb.load()  # fail early, with one clear sentence, if weights are missing
    target = index_dir(args.index)
    with writing(target):
        report = build_index(args.gallery, target, embedder=emb, workers=args.workers,
                             batch_size=args.batch_size, pca_components=args.pca_components,
                             full=args.full, wait=args.wait,
                             progress=None if args.quiet else ProgressBar())
    print(replace(report, skipped=[(printable(p), printable(why))
                                   for p, why in report.skipped]).summary())
    return EXIT_OK


def _queries(names: list[str]) -> list[Any]:
    from imgrec.index.index import Stored

    queries = [Stored(q[1:]) if q.startswith("@") else q for q in names]
    for q in queries:
        if isinstance(q, str) and not Path(q).exists():
            raise ImgrecError(f"query image not found: {printable(q)}")
    return queries


def _absolute(res: dict[str, Any], root: Path) -> dict[str, Any]:
    """The ``--json`` object with every hit's path made absolute."""
    for group in [q["hits"] for q in res["queries"]] + [res["combined"]]:
        for h in group:
            h["path"] = str(root / h["path"])
    return res


def serve(args: argparse.Namespace) -> int:
    """The HTTP API until Ctrl-C (see :mod:`imgrec.server`)."""
    from imgrec.server import run

    return run(args)


def search(args: argparse.Namespace) -> int:
    """Search by query images (files or @stored) or by label text; a table or JSON."""
    from imgrec.index.index import Index

    if args.label is not None and (args.images or args.negative):
        raise ImgrecError("give query images or --label TEXT, not both")
    if args.label is None and not args.images:
        raise ImgrecError("give 1-5 query images (files or @path), or --label TEXT")
    if args.server:
        from imgrec.server import result_from_dict, search_via_server, server_info

        out = search_via_server(args.server, args.images, args.method, args.metric, args.k,
                                pca_components=args.pca_components, negatives=args.negative,
                                negative_weight=args.negative_weight, label=args.label)
        res, root = result_from_dict(out), Path(server_info(args.server)["gallery_root"])
    elif args.label is not None:
        from imgrec.insights.labels import search_by_label

        idx = Index.open(index_dir(args.index))
        res, root = search_by_label(idx, args.label, k=args.k), idx.root
    else:
        idx = Index.open(index_dir(args.index))
        root = idx.root
        res = idx.search(_queries(args.images), method=args.method, metric=args.metric,
                         k=args.k, pca_components=args.pca_components,
                         negatives=_queries(args.negative) or None,
                         negative_weight=args.negative_weight)
    if args.json:
        out = res.to_dict()
        print(json.dumps(_absolute(out, root) if args.absolute else out, indent=2))
        return EXIT_OK
    groups = list(zip(res.queries, res.per_query, strict=True))
    if res.negatives:
        groups.append((f"combined, refined: less like {', '.join(res.negatives)} "
                       f"(weight {res.negative_weight:g})", res.combined))
    elif len(groups) > 1:
        groups.append(("combined (mean over queries)", res.combined))
    print(f"method {res.method}, metric {res.metric}, k {res.k}, gallery {printable(str(root))}")
    for label, hits in groups:
        print(f"\n{printable(label)}")
        print(f"  {'rank':>4}  {'score':>8}  {'distance':>9}  path")
        for h in hits:
            path = str(root / h.path) if args.absolute else h.path
            print(f"  {h.rank:>4}  {h.score:8.4f}  {h.distance:9.4f}  {printable(path)}")
    for note in res.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    """Leave-one-out retrieval quality per method (see :mod:`imgrec.insights.evaluate`)."""
    from imgrec.cli.evaluate import run

    return run(args)
