"""The ``demo``, ``index`` and ``search`` commands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
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
    from imgrec.shard.cli import producer

    if not args.gallery.is_dir():
        raise ImgrecError(f"gallery folder not found: {args.gallery}")
    if not 0 < args.max_megapixels < float("inf"):
        raise ImgrecError(f"--max-megapixels must be a positive number, not "
                          f"{args.max_megapixels:g}")
    emb = CNNEmbedder(args.model, weights=args.weights, device=args.device,
                      batch_size=args.batch_size)
    emb.load()  # fail early, with one clear sentence, if weights are missing
    target = index_dir(args.index)
    with writing(target):
        report = build_index(args.gallery, target, embedder=emb, workers=args.workers,
                             batch_size=args.batch_size, pca_components=args.pca_components,
                             full=args.full, wait=args.wait, exclude=args.excludes or (),
                             max_megapixels=args.max_megapixels,
                             progress=None if args.quiet else ProgressBar(),
                             producer=producer(args), shards=args.shards)
    print(replace(report, skipped=[(printable(p), printable(why))
                                   for p, why in report.skipped]).summary())
    return EXIT_OK


def watch(args: argparse.Namespace) -> int:
    """Sync the index now and after each burst of gallery changes, until Ctrl-C."""
    from imgrec.build.watch import watch as run_watch
    from imgrec.features.embedding import DEFAULT_MODEL, CNNEmbedder
    from imgrec.index.index import Index

    if not args.gallery.is_dir():
        raise ImgrecError(f"gallery folder not found: {args.gallery}")
    from imgrec.shard.cli import is_sharded
    from imgrec.shard.split import ShardedManifest

    target = index_dir(args.index)
    try:  # keep the index's backbone (every shard's, for a sharded index)
        model = (ShardedManifest.read(target) if is_sharded(target) else Index.open(target)).model
    except ImgrecError:
        model = DEFAULT_MODEL
    emb = CNNEmbedder(model)
    emb.load()

    def synced(report: Any) -> None:
        print(f"synced: {report.indexed} indexed, {report.added} added, {report.updated} "
              f"updated, {report.moved} moved, {report.removed} removed, "
              f"{len(report.skipped)} skipped (version {report.version})", flush=True)

    def ready() -> None:
        print(f"watching {printable(str(args.gallery))} (Ctrl-C stops)", flush=True)

    def failed(message: str) -> None:
        print(f"imgrec: sync failed: {printable(message)}", file=sys.stderr, flush=True)

    stop = threading.Event()

    def interrupted(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: interrupt the running sync too
            raise KeyboardInterrupt
        stop.set()
        print("stopping after the current sync (Ctrl-C again interrupts it)", flush=True)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        with writing(target):
            run_watch(args.gallery, target, debounce=args.debounce, on_sync=synced,
                      on_ready=ready, on_error=failed, stop=stop, embedder=emb,
                      workers=args.workers, exclude=args.excludes or (),
                      max_megapixels=args.max_megapixels)
    except KeyboardInterrupt:
        pass  # a sync interrupted that way published nothing
    finally:
        signal.signal(signal.SIGINT, previous)
    print("stopped: the index is at its last published version", flush=True)
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


def _filter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The filter flags as :func:`imgrec.search.filters.from_options` takes them."""
    return {"folders": args.folders, "after": args.after, "before": args.before,
            "min_size": args.min_size, "formats": args.formats,
            "orientation": args.orientation, "label": args.has_label}


def where(args: argparse.Namespace) -> Any:
    """The search filter of the command line (a :class:`Where`), or None without filters.

    Raises:
        QueryError: a value is not valid (one line, naming the option).
    """
    from imgrec.search.filters import from_options

    return from_options(**_filter_options(args))


def _run_search(args: argparse.Namespace) -> tuple[Any, Path, dict[str, Any]]:
    """``(result, gallery root, its --json form with each hit's strength)``: searched here,
    or by the server of ``--server`` (which answers the same form, filters passed on)."""
    from imgrec.index.index import Index
    from imgrec.shard.cli import open_index

    cond = where(args)  # bad values fail here, before any request
    rerank = getattr(args, "rerank", None)
    if rerank and (args.server or args.label is not None):
        raise ImgrecError("--rerank re-ranks an image search on this machine: not with "
                          "--server or --label")
    if args.server:
        from imgrec.server import result_from_dict, search_via_server, server_info

        out = search_via_server(args.server, args.images, args.method, args.metric, args.k,
                                pca_components=args.pca_components, negatives=args.negative,
                                negative_weight=args.negative_weight, label=args.label,
                                filters=_filter_options(args) if cond is not None else None)
        return result_from_dict(out), Path(server_info(args.server)["gallery_root"]), out
    from imgrec.search.calibration import add_strength

    idx = open_index(index_dir(args.index), args.ray)  # an Index or a ShardedIndex
    if not args.images:
        from imgrec.insights.labels import search_by_label

        res = (search_by_label(idx, args.label, k=args.k, where=cond) if isinstance(idx, Index)
               else idx.search_by_label(args.label, k=args.k, where=cond))
    else:
        extra = {"rerank": rerank} if rerank else {}
        if rerank and not isinstance(idx, Index):
            raise ImgrecError("--rerank is not supported on a sharded index")
        res = idx.search(_queries(args.images), method=args.method, metric=args.metric,
                         k=args.k, pca_components=args.pca_components,
                         negatives=_queries(args.negative) or None,
                         negative_weight=args.negative_weight,
                         max_megapixels=args.max_megapixels, where=cond, **extra)
    out = res.to_dict()  # rated against the gallery's calibration (a sharded index's too;
    # not re-ranked scores: cosines to an expanded query are on another scale)
    return res, idx.root, out if rerank else add_strength(out, idx)


def search(args: argparse.Namespace) -> int:
    """Search by query images (files or @stored) or by label text; a table or JSON."""
    if args.label is not None and (args.images or args.negative):
        raise ImgrecError("give query images or --label TEXT, not both (--has-label TEXT "
                          "keeps the images with that label)")
    if args.label is None and not args.images:
        raise ImgrecError("give 1-5 query images (files or @path), or --label TEXT")
    res, root, out = _run_search(args)
    if args.json:
        print(json.dumps(_absolute(out, root) if args.absolute else out, indent=2))
        return EXIT_OK
    # each query's hits carry their strength; a combined ranking is a mean over queries or
    # a refined score, on another scale than one query's scores, so it is not rated
    bands = [{h["rank"]: h.get("strength") for h in q["hits"]} for q in out["queries"]]
    groups = [(q, hs, band) for q, hs, band in zip(res.queries, res.per_query, bands,
                                                   strict=True)]
    if res.negatives:
        groups.append((f"combined, refined: less like {', '.join(res.negatives)} "
                       f"(weight {res.negative_weight:g})", res.combined, {}))
    elif len(groups) > 1:
        groups.append(("combined (mean over queries)", res.combined, {}))
    print(f"method {res.method}, metric {res.metric}, k {res.k}, gallery {printable(str(root))}")
    for label, hits, band in groups:
        rated = any(band.values())
        print(f"\n{printable(label)}")
        print(f"  {'rank':>4}  {'score':>8}  {'distance':>9}  {'match':<8}  path" if rated else
              f"  {'rank':>4}  {'score':>8}  {'distance':>9}  path")
        for h in hits:
            path = str(root / h.path) if args.absolute else h.path
            match = f"{band.get(h.rank) or '':<8}  " if rated else ""
            print(f"  {h.rank:>4}  {h.score:8.4f}  {h.distance:9.4f}  {match}{printable(path)}")
    for note in res.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    """Leave-one-out retrieval quality per method (see :mod:`imgrec.insights.evaluate`)."""
    from imgrec.cli.evaluate import run

    return run(args)


def app(args: argparse.Namespace) -> int:
    """The dashboard, served by Streamlit until interrupted (see :mod:`imgrec.app.launch`)."""
    from imgrec.app.launch import run

    try:
        return run(args)
    except ValueError as exc:  # a bad port or index folder
        raise ImgrecError(str(exc)) from None


def shard(args: argparse.Namespace) -> int:
    """``imgrec shard split``: a sharded index for search over Ray (see :mod:`imgrec.shard`)."""
    from imgrec.shard.cli import run

    return run(args)
