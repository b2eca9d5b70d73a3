"""Command line: ``imgrec demo | index | search | info | labels | duplicates | clusters |
graph | export`` (also ``python -m imgrec``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.search.rank import EMBEDDING_METRICS, METHODS

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"imgrec: error: {message} (see imgrec {self.prog.split()[-1]} -h)\n")


def _parser() -> argparse.ArgumentParser:
    from imgrec.features.embedding import BACKBONES, DEFAULT_MODEL
    from imgrec.features.pca import DEFAULT_COMPONENTS

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
    i.add_argument("--batch-size", type=int, default=16,
                   help="images per CNN forward pass (8-16 measured fastest on 2 CPU cores)")
    i.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    i.add_argument("--pca-components", type=int, default=DEFAULT_COMPONENTS)
    i.add_argument("--full", action="store_true", help="recompute everything")
    i.add_argument("--wait", action="store_true", help="wait for a running build of this index")
    i.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("search", help="find the images most similar to 1-5 query images")
    s.add_argument("images", nargs="*", help="query image files, or @path for an indexed image")
    s.add_argument("--index", type=Path)
    s.add_argument("--method", choices=METHODS, default="embedding")
    s.add_argument("--metric", choices=EMBEDDING_METRICS, default="cosine")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--pca-components", type=int)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--label", metavar="TEXT",
                   help="instead of query images: rank by the ImageNet labels matching TEXT "
                        "(e.g. 'dog', 'lakeside', 'cat, tiger')")
    s.add_argument("--negative", action="append", default=[], metavar="IMAGE",
                   help="a 'less like this' example (file or @path; up to 5; embedding + "
                        "cosine only): the combined ranking is refined")
    s.add_argument("--negative-weight", type=float, default=0.5,
                   help="weight of the negative examples (default 0.5)")

    lb = sub.add_parser("labels", help="the most frequent ImageNet labels, or one image's labels")
    lb.add_argument("--index", type=Path)
    lb.add_argument("--top", type=int, default=50, help="labels to list (default 50)")
    lb.add_argument("--image", metavar="PATH", help="show the top-5 labels of this indexed image")
    lb.add_argument("--json", action="store_true")

    du = sub.add_parser("duplicates", help="exact and near-duplicate groups (read-only)")
    du.add_argument("--index", type=Path)
    du.add_argument("--threshold", type=float, help="cosine similarity for near-duplicates "
                    "(default 0.65)")
    du.add_argument("--exact-only", action="store_true", help="same file content only")
    du.add_argument("--csv", type=Path, metavar="OUT", help="also write the groups as CSV")
    du.add_argument("--json", action="store_true")

    cl = sub.add_parser("clusters", help="K-means clusters with their representative images")
    cl.add_argument("--index", type=Path)
    cl.add_argument("-k", type=int, default=30, help="clusters (default 30)")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--json", action="store_true")

    gr = sub.add_parser("graph", help="nearest-neighbour graph of a sample, with communities")
    gr.add_argument("--index", type=Path)
    gr.add_argument("-k", type=int, default=5, help="neighbours per image (default 5)")
    gr.add_argument("--threshold", type=float, default=0.5, help="cosine a link needs (0.5)")
    gr.add_argument("--sample", type=int, default=3000, help="images in the graph (3000)")
    gr.add_argument("--seed", type=int, default=0)
    gr.add_argument("--json", action="store_true", help="nodes, edges and communities as JSON")

    ex = sub.add_parser("export", help="TensorBoard projector files, or the catalog as CSV")
    exs = ex.add_subparsers(dest="format", required=True, parser_class=_Parser)
    ep = exs.add_parser("projector", help="tensors.tsv, metadata.tsv, sprite.png, config")
    ep.add_argument("out_dir", type=Path)
    ep.add_argument("--index", type=Path)
    ep.add_argument("--sample", type=int, default=10_000,
                    help="images exported at most, drawn at random (default 10000; 0 = all)")
    ep.add_argument("--clusters", type=int, default=30, help="K-means clusters (default 30)")
    ep.add_argument("--seed", type=int, default=0)
    ec = exs.add_parser("csv", help="one row per gallery file, with label and cluster")
    ec.add_argument("out_csv", type=Path)
    ec.add_argument("--index", type=Path)
    ec.add_argument("--clusters", type=int, default=30, help="K-means clusters (default 30)")
    ec.add_argument("--seed", type=int, default=0)

    n = sub.add_parser("info", help="what is indexed, with which model, what was skipped")
    n.add_argument("--index", type=Path)
    n.add_argument("--json", action="store_true")
    n.add_argument("--verify", action="store_true",
                   help="check that catalog, matrices and manifest agree (reads every file); "
                        "exit 2 naming each problem")
    return p


def _version() -> str:
    from imgrec import __version__

    return f"imgrec {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad usage or input, 1 unexpected)."""
    args = _parser().parse_args(argv)
    try:
        return {"demo": _demo, "index": _index, "search": _search, "info": _info,
                "labels": _labels, "duplicates": _duplicates, "clusters": _clusters,
                "graph": _graph, "export": _export}[args.command](args)
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
    from imgrec.settings import Settings

    return path or Settings.from_env().index_dir


def _demo(args: argparse.Namespace) -> int:
    from imgrec.demo import build_demo_gallery
    from imgrec.settings import Settings

    out = args.out or Settings.from_env().demo_dir
    try:
        g = build_demo_gallery(out)
    except ValueError as exc:
        raise ImgrecError(str(exc)) from None
    print(f"demo gallery: {g.count} images in {len(g.families)} folders at {g.root}")
    if args.index:
        return _index(argparse.Namespace(
            gallery=g.root, index=None, model="efficientnet-lite0", weights=None, workers=None,
            batch_size=16, device="auto", pca_components=75, full=False, wait=True, quiet=False))
    return EXIT_OK


class ProgressBar:
    """Progress on stderr: count, percentage, rate and ETA (redrawn in place on a terminal,
    one line every few seconds otherwise)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.finished: tuple[str, int] | None = None

    def __call__(self, p) -> None:  # p: imgrec.build.builder.Progress
        now = time.monotonic()
        final = p.done >= p.total
        if final and self.finished == (p.stage, p.total):
            return  # the last line of a stage is printed once
        if now - self.last < (0.1 if self.tty else 2.0) and not final:
            return
        self.last = now
        self.finished = (p.stage, p.total) if final else None
        frac = p.done / p.total if p.total else 1.0
        eta = f"{p.eta:.0f}s" if p.eta is not None else "?"
        line = (f"{p.stage:8} [{'#' * int(frac * 30):<30}] {p.done}/{p.total} {frac:5.1%} "
                f"{p.rate:6.1f} img/s ETA {eta}")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def _index(args: argparse.Namespace) -> int:
    from imgrec.build.builder import build_index
    from imgrec.features.embedding import CNNEmbedder

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


def _queries(names: list[str]) -> list:
    from imgrec.index.index import Stored

    queries = [Stored(q[1:]) if q.startswith("@") else q for q in names]
    for q in queries:
        if isinstance(q, str) and not Path(q).exists():
            raise ImgrecError(f"query image not found: {q}")
    return queries


def _search(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index

    if args.label is not None and (args.images or args.negative):
        raise ImgrecError("give query images or --label TEXT, not both")
    if args.label is None and not args.images:
        raise ImgrecError("give 1-5 query images (files or @path), or --label TEXT")
    idx = Index.open(_index_dir(args.index))
    if args.label is not None:
        from imgrec.insights.labels import search_by_label

        res = search_by_label(idx, args.label, k=args.k)
    else:
        res = idx.search(_queries(args.images), method=args.method, metric=args.metric,
                         k=args.k, pca_components=args.pca_components,
                         negatives=_queries(args.negative) or None,
                         negative_weight=args.negative_weight)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return EXIT_OK
    groups = list(zip(res.queries, res.per_query, strict=True))
    if res.negatives:
        groups.append((f"combined, refined: less like {', '.join(res.negatives)} "
                       f"(weight {res.negative_weight:g})", res.combined))
    elif len(groups) > 1:
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
    from imgrec.index.verify import read_manifest, verify
    from imgrec.index.writer import current_version

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
    from imgrec.build.lock import holder
    from imgrec.index.index import Index

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
            "build_running": running, "first_pass": idx.first_pass}
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
    print("search     exact; first pass over the " + (
        "float16 copy of the embeddings, candidates rescored from float32"
        if idx.first_pass == "float16" else
        "float32 embeddings (no float16 copy: rebuild with --full to add one)"))
    if running:
        print(f"building   a build is running now (pid {running.get('pid')}, "
              f"started {running.get('started')})")
    for p, r in idx.skipped():
        print(f"skipped    {p}: {r}")
    return EXIT_OK


def _labels(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.labels import label_counts, labels_of

    idx = Index.open(_index_dir(args.index))
    if args.image:
        labels = labels_of(idx, idx.row_of(args.image.removeprefix("@")))
        if args.json:
            print(json.dumps({"path": args.image, "labels": [
                {"class_id": lb.class_id, "label": lb.name, "probability": round(lb.probability, 6)}
                for lb in labels]}, indent=2))
            return EXIT_OK
        print(f"{args.image}")
        for lb in labels:
            print(f"  {lb.probability:6.1%}  {lb.name}")
        if not labels:
            print("  (no labels stored for this image)")
        return EXIT_OK
    if args.top < 1:
        raise ImgrecError(f"--top must be at least 1, got {args.top}")
    counts = label_counts(idx, args.top)
    if args.json:
        print(json.dumps({"images": len(idx), "labels": [
            {"class_id": c.class_id, "label": c.name, "count": c.count} for c in counts]},
            indent=2))
        return EXIT_OK
    print(f"top-1 ImageNet labels of {len(idx)} images ({idx.model}), most frequent first")
    width = max((len(c.name) for c in counts), default=5)
    most = max((c.count for c in counts), default=1)
    for c in counts:
        print(f"  {c.count:>6}  {c.name:<{width}}  {'#' * max(1, round(30 * c.count / most))}")
    return EXIT_OK


def _duplicates(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.duplicates import DEFAULT_THRESHOLD, find_duplicates, write_csv

    idx = Index.open(_index_dir(args.index))
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    rep = find_duplicates(idx, threshold, near=not args.exact_only)
    if args.csv:
        write_csv(rep, args.csv)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return EXIT_OK
    kinds = Counter(g.kind for g in rep.groups)
    what = "exact copies only" if args.exact_only else f"cosine >= {rep.threshold:g}"
    print(f"{len(rep.groups)} duplicate groups ({kinds['exact']} exact, {kinds['near']} near; "
          f"{what}) among {rep.images} images, {rep.redundant} images beyond one per group; "
          f"{rep.seconds:.2f} s")
    for g in rep.groups:
        print(f"\ngroup {g.id} ({g.kind}, {len(g.members)} images)")
        for i, m in enumerate(g.members):
            tag = "keep  " if i == 0 else "      "
            print(f"  {tag}{m.similarity:6.3f}  {m.width}x{m.height}  {m.size:>9} B  {m.path}")
    if args.csv:
        print(f"\nwrote {args.csv} (imgrec deletes nothing: the CSV is a list to review)")
    return EXIT_OK


def _clusters(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.clusters import clusters

    idx = Index.open(_index_dir(args.index))
    if args.k < 1:
        raise ImgrecError(f"-k must be at least 1, got {args.k}")
    res = clusters(idx, args.k, seed=args.seed)
    reps = idx.paths(res.representatives)
    if args.json:
        print(json.dumps({"k": res.k, "seed": args.seed, "clusters": [
            {"cluster": c, "size": int(res.sizes[c]), "representative": reps[c]}
            for c in range(res.k)]}, indent=2))
        return EXIT_OK
    print(f"{res.k} K-means clusters of {len(idx)} images (seed {args.seed}), largest first")
    print(f"  {'cluster':>7}  {'size':>6}  representative (nearest its centroid)")
    for c in range(res.k):
        print(f"  {c:>7}  {int(res.sizes[c]):>6}  {reps[c]}")
    return EXIT_OK


def _graph(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.graph import neighbour_graph

    idx = Index.open(_index_dir(args.index))
    try:
        g = neighbour_graph(idx, k=args.k, threshold=args.threshold, sample=args.sample,
                            seed=args.seed)
    except ValueError as exc:
        raise ImgrecError(str(exc)) from None
    paths = idx.paths(g.rows)
    sizes = g.community_sizes()
    if args.json:
        print(json.dumps({"nodes": [{"path": p, "x": round(float(x), 5), "y": round(float(y), 5),
                                     "community": int(c)}
                                    for p, x, y, c in zip(paths, g.x, g.y, g.community,
                                                          strict=True)],
                          "edges": [[int(a), int(b), round(float(w), 5)]
                                    for (a, b), w in zip(g.edges, g.weights, strict=True)],
                          "communities": len(sizes), "modularity": round(g.modularity, 5),
                          "seconds": round(g.seconds, 3)}))
        return EXIT_OK
    print(f"{len(g.rows)} images, {len(g.edges)} links (k {args.k}, cosine >= {args.threshold:g}), "
          f"{len(sizes)} communities, modularity {g.modularity:.3f}; {g.seconds:.2f} s")
    for c, size in enumerate(sizes[:20]):
        members = [paths[i] for i in range(len(paths)) if g.community[i] == c][:3]
        print(f"  community {c:>3}  {int(size):>5} images  e.g. {', '.join(members)}")
    if len(sizes) > 20:
        print(f"  ... and {len(sizes) - 20} more")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.export import export_csv, export_projector

    idx = Index.open(_index_dir(args.index))
    if args.clusters < 1:
        raise ImgrecError(f"--clusters must be at least 1, got {args.clusters}")
    if args.format == "csv":
        path = export_csv(idx, args.out_csv, k_clusters=args.clusters, seed=args.seed)
        print(f"wrote {path}: {len(idx.entries())} catalog rows with label and cluster")
        return EXIT_OK
    if args.sample < 0:
        raise ImgrecError(f"--sample must be 0 (all) or more, got {args.sample}")
    t = time.perf_counter()
    ex = export_projector(idx, args.out_dir, sample=args.sample or None, seed=args.seed,
                          k_clusters=args.clusters)
    print(f"wrote {len(ex.rows)} of {len(idx)} images ({ex.dim}-d) to {ex.out_dir} in "
          f"{time.perf_counter() - t:.1f} s: tensors.tsv, metadata.tsv, sprite.png "
          f"({ex.sprite_size[0]}x{ex.sprite_size[1]}, {ex.thumb} px cells), "
          "projector_config.pbtxt, projector_config.json")
    if ex.unreadable:
        print(f"note: {ex.unreadable} thumbnails left grey (file unreadable now)", file=sys.stderr)
    print(f"view: tensorboard --logdir {ex.out_dir}  (Projector tab), or load the files at "
          "https://projector.tensorflow.org")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
