"""Command line: ``imgrec demo | index | search | info`` (also ``python -m imgrec``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from .errors import ImgrecError
from .search import EMBEDDING_METRICS, METHODS

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"imgrec: error: {message} (see imgrec {self.prog.split()[-1]} -h)\n")


def _parser() -> argparse.ArgumentParser:
    from .features.embedding import BACKBONES, DEFAULT_MODEL
    from .reduce import DEFAULT_COMPONENTS

    p = _Parser(prog="imgrec", description="Find similar images by content or colour.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="write the built-in demo gallery")
    d.add_argument("--out", type=Path, help="folder (default: data/demo or IMGREC_DEMO_DIR)")
    d.add_argument("--index", action="store_true", help="also index it into the default index")

    i = sub.add_parser("index", help="index (or re-sync) a gallery folder")
    i.add_argument("gallery", type=Path)
    i.add_argument("--index", type=Path, help="index directory (default: data/index or IMGREC_INDEX_DIR)")
    i.add_argument("--model", choices=sorted(BACKBONES), default=DEFAULT_MODEL)
    i.add_argument("--weights", type=Path, help="backbone state-dict file (.pth)")
    i.add_argument("--workers", type=int, help="decoding processes (default: CPU count; 0 = none)")
    i.add_argument("--batch-size", type=int, default=32)
    i.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    i.add_argument("--pca-components", type=int, default=DEFAULT_COMPONENTS)
    i.add_argument("--full", action="store_true", help="recompute everything")
    i.add_argument("--wait", action="store_true", help="wait for a running build of this index")
    i.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("search", help="find the images most similar to 1-5 query images")
    s.add_argument("images", nargs="+", help="query image files, or @path for an indexed image")
    s.add_argument("--index", type=Path)
    s.add_argument("--method", choices=METHODS, default="embedding")
    s.add_argument("--metric", choices=EMBEDDING_METRICS, default="cosine")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--pca-components", type=int)
    s.add_argument("--json", action="store_true", help="print one JSON object")

    n = sub.add_parser("info", help="what is indexed, with which model, what was skipped")
    n.add_argument("--index", type=Path)
    n.add_argument("--json", action="store_true")
    n.add_argument("--verify", action="store_true",
                   help="check that catalog, matrices and manifest agree (reads every file); "
                        "exit 2 naming each problem")
    return p


def _version() -> str:
    from . import __version__

    return f"imgrec {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad usage or input, 1 unexpected)."""
    args = _parser().parse_args(argv)
    try:
        return {"demo": _demo, "index": _index, "search": _search, "info": _info}[args.command](args)
    except ImgrecError as exc:
        print(f"imgrec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("imgrec: interrupted (an index build resumes where it stopped)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception:
        import traceback

        traceback.print_exc()
        print("imgrec: unexpected failure (a bug); please report the traceback above",
              file=sys.stderr)
        return EXIT_FAIL


def _index_dir(path: Path | None) -> Path:
    from .settings import Settings

    return path or Settings.from_env().index_dir


def _demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_gallery
    from .settings import Settings

    out = args.out or Settings.from_env().demo_dir
    try:
        g = build_demo_gallery(out)
    except ValueError as exc:
        raise ImgrecError(str(exc)) from None
    print(f"demo gallery: {g.count} images in {len(g.families)} folders at {g.root}")
    if args.index:
        return _index(argparse.Namespace(
            gallery=g.root, index=None, model="efficientnet-lite0", weights=None, workers=None,
            batch_size=32, device="auto", pca_components=75, full=False, wait=True, quiet=False))
    return EXIT_OK


class ProgressBar:
    """Progress on stderr: count, percentage, rate and ETA (redrawn in place on a terminal,
    one line every few seconds otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p) -> None:  # p: imgrec.build.Progress
        now = time.monotonic()
        final = p.done >= p.total
        if now - self.last < (0.1 if self.tty else 2.0) and not final:
            return
        self.last = now
        frac = p.done / p.total if p.total else 1.0
        eta = f"{p.eta:.0f}s" if p.eta is not None else "?"
        line = (f"{p.stage:8} [{'#' * int(frac * 30):<30}] {p.done}/{p.total} {frac:5.1%} "
                f"{p.rate:6.1f} img/s ETA {eta}")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def _index(args: argparse.Namespace) -> int:
    from .build import build_index
    from .features.embedding import CNNEmbedder

    if not args.gallery.is_dir():
        raise ImgrecError(f"gallery folder not found: {args.gallery}")
    emb = CNNEmbedder(args.model, weights=args.weights, device=args.device,
                      batch_size=args.batch_size)
    emb.load()  # fail early, with one clear sentence, if weights are missing
    bar = ProgressBar()
    report = build_index(args.gallery, _index_dir(args.index), embedder=emb,
                         workers=args.workers, batch_size=args.batch_size,
                         pca_components=args.pca_components, full=args.full, wait=args.wait,
                         progress=None if args.quiet else bar)
    print(report.summary())
    return EXIT_OK


def _search(args: argparse.Namespace) -> int:
    from .index import Index, Stored

    idx = Index.open(_index_dir(args.index))
    queries = [Stored(q[1:]) if q.startswith("@") else q for q in args.images]
    for q in queries:
        if isinstance(q, str) and not Path(q).exists():
            raise ImgrecError(f"query image not found: {q}")
    res = idx.search(queries, method=args.method, metric=args.metric, k=args.k,
                     pca_components=args.pca_components)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return EXIT_OK
    groups = list(zip(res.queries, res.per_query, strict=True))
    if len(groups) > 1:
        groups.append(("combined (mean over queries)", res.combined))
    print(f"method {res.method}, metric {res.metric}, k {res.k}, gallery {idx.root}")
    for label, hits in groups:
        print(f"\n{label}")
        print(f"  {'rank':>4}  {'score':>8}  {'distance':>9}  path")
        for h in hits:
            print(f"  {h.rank:>4}  {h.score:8.4f}  {h.distance:9.4f}  {h.path}")
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from .store import current_version
    from .verify import read_manifest, verify

    index_dir = _index_dir(args.index)
    problems = verify(index_dir)
    if args.json:
        print(json.dumps({"index_dir": str(index_dir), "ok": not problems,
                          "problems": problems}, indent=2))
        return EXIT_USAGE if problems else EXIT_OK
    if problems:
        for problem in problems:
            print(f"problem: {problem}")
        print(f"imgrec: the index at {index_dir} failed verification ({len(problems)} "
              f"problem{'s' if len(problems) > 1 else ''}); rebuild it with "
              f"`imgrec index GALLERY --index {index_dir} --full`", file=sys.stderr)
        return EXIT_USAGE
    version = current_version(index_dir)
    assert version is not None
    m = read_manifest(version)
    print(f"ok: {index_dir} version {m['version']}: {m['count']} images, {m['skipped']} "
          f"skipped; manifest, catalog, matrices and PCA agree (no NaN/inf, unit embeddings)")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from .index import Index
    from .lock import holder

    if args.verify:
        return _verify(args)
    idx = Index.open(_index_dir(args.index))
    entries = idx.entries()
    size = sum(f.stat().st_size for f in idx.dir.iterdir() if f.is_file())
    formats = Counter(e.format for e in entries if e.row is not None)
    running = holder(idx.index_dir)
    info = {**idx.manifest, "index_dir": str(idx.index_dir), "size_bytes": size,
            "formats": dict(sorted(formats.items())),
            "skipped_files": [{"path": p, "reason": r} for p, r in idx.skipped()],
            "build_running": running}
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    m = idx.manifest
    print(f"index      {idx.index_dir} (version {m['version']}, format {m['format_version']}, "
          f"{size / 1e6:.1f} MB)")
    print(f"gallery    {m['gallery_root']}")
    print(f"model      {m['model']} ({m['embedding_dim']}-d embeddings, "
          f"{m['histogram_dim']}-bin histograms, {m['pca_components']} PCA components)")
    print(f"images     {m['count']} indexed, {m['skipped']} skipped; formats: "
          + ", ".join(f"{k} {v}" for k, v in sorted(formats.items())))
    print(f"built      {m['built_at']}" + (f" in {m['build_seconds']:.1f} s"
                                           if m.get("build_seconds") else ""))
    if running:
        print(f"building   a build is running now (pid {running.get('pid')}, "
              f"started {running.get('started')})")
    for p, r in idx.skipped():
        print(f"skipped    {p}: {r}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
