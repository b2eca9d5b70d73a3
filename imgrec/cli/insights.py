"""The insight commands: ``labels``, ``duplicates``, ``check``, ``clusters``, ``graph``, ``export``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from imgrec.cli.commands import index_dir as _index_dir
from imgrec.cli.output import printable, writing
from imgrec.errors import ImgrecError

EXIT_OK = 0


def _labels(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.labels import label_counts, labels_of
    from imgrec.shard.cli import open_index

    idx = open_index(_index_dir(args.index), args.ray)
    sharded = not isinstance(idx, Index)
    if args.image:
        path = args.image.removeprefix("@")
        labels = idx.labels_of(path) if sharded else labels_of(idx, idx.row_of(path))
        if args.json:
            print(json.dumps({"path": args.image, "labels": [
                {"class_id": lb.class_id, "label": lb.name, "probability": round(lb.probability, 6)}
                for lb in labels]}, indent=2))
            return EXIT_OK
        print(printable(args.image))
        for lb in labels:
            print(f"  {lb.probability:6.1%}  {lb.name}")
        if not labels:
            print("  (no labels stored for this image)")
        return EXIT_OK
    if args.top < 1:
        raise ImgrecError(f"--top must be at least 1, got {args.top}")
    counts = idx.label_counts(args.top) if sharded else label_counts(idx, args.top)
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


def _clusters(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.clusters import auto_k, clusters
    from imgrec.shard.cli import open_index

    if args.k is not None and args.k < 1:
        raise ImgrecError(f"-k must be at least 1, got {args.k}")
    idx = open_index(_index_dir(args.index), args.ray)
    k = auto_k(idx, seed=args.seed).k if args.k is None else args.k
    note, drawn = None, len(idx)
    if isinstance(idx, Index):
        res = clusters(idx, k, seed=args.seed)
    else:  # K-means of the shared sample; every image assigned to its nearest centre
        from imgrec.shard.sample import SAMPLE, describe

        res, note = idx.sample_clusters(k, args.seed), describe(idx, SAMPLE)
        drawn = min(len(idx), SAMPLE)
    reps = idx.paths(res.representatives)
    if args.json:
        print(json.dumps({"k": res.k, "seed": args.seed, "clusters": [
            {"cluster": c, "size": int(res.sizes[c]), "representative": reps[c]}
            for c in range(res.k)], **_sample_json(note, drawn, len(idx))}, indent=2))
        return EXIT_OK
    print(f"{res.k} K-means clusters of {len(idx)} images (seed {args.seed}), largest first")
    if note:
        print(f"  K-means of {note}; the sizes count every image")
    print(f"  {'cluster':>7}  {'size':>6}  representative (nearest its centroid)")
    for c in range(res.k):
        print(f"  {c:>7}  {int(res.sizes[c]):>6}  {printable(reps[c])}")
    return EXIT_OK


def _sample_json(note: str | None, images: int, of: int) -> dict:
    """``{"sample": {...}}`` for an insight of a sharded index (nothing for an index)."""
    return {"sample": {"images": images, "of": of, "note": note}} if note else {}


def _graph(args: argparse.Namespace) -> int:
    from imgrec.insights.graph import MAX_SAMPLE, neighbour_graph
    from imgrec.shard.cli import open_index
    from imgrec.shard.sample import sample_of

    idx = open_index(_index_dir(args.index), args.ray)
    view, note = idx, None
    if 1 <= args.sample <= MAX_SAMPLE:  # else neighbour_graph says what is wrong
        view, note = sample_of(idx, args.sample, args.seed)
    try:
        g = neighbour_graph(view, k=args.k, threshold=args.threshold, sample=args.sample,
                            seed=args.seed)
    except ValueError as exc:
        raise ImgrecError(str(exc)) from None
    paths = view.paths(g.rows)
    sizes = g.community_sizes()
    if args.json:
        print(json.dumps({"nodes": [{"path": p, "x": round(float(x), 5), "y": round(float(y), 5),
                                     "community": int(c)}
                                    for p, x, y, c in zip(paths, g.x, g.y, g.community,
                                                          strict=True)],
                          "edges": [[int(a), int(b), round(float(w), 5)]
                                    for (a, b), w in zip(g.edges, g.weights, strict=True)],
                          "communities": len(sizes), "modularity": round(g.modularity, 5),
                          "seconds": round(g.seconds, 3),
                          **_sample_json(note, len(g.rows), len(idx))}))
        return EXIT_OK
    print(f"{len(g.rows)} images, {len(g.edges)} links (k {args.k}, cosine >= {g.threshold:g}), "
          f"{len(sizes)} communities, modularity {g.modularity:.3f}; {g.seconds:.2f} s")
    if note:
        print(f"  ran on {note}")
    for c, size in enumerate(sizes[:20]):
        members = [paths[i] for i in range(len(paths)) if g.community[i] == c][:3]
        print(f"  community {c:>3}  {int(size):>5} images  e.g. {printable(', '.join(members))}")
    if len(sizes) > 20:
        print(f"  ... and {len(sizes) - 20} more")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.insights.export import export_csv, export_projector
    from imgrec.shard.cli import open_index

    if args.clusters < 1:
        raise ImgrecError(f"--clusters must be at least 1, got {args.clusters}")
    if args.format == "projector" and args.sample < 0:
        raise ImgrecError(f"--sample must be 0 (all) or more, got {args.sample}")
    idx = open_index(_index_dir(args.index), args.ray)
    if not isinstance(idx, Index):
        return _export_sharded(args, idx)
    if args.format == "csv":
        with writing(args.out_csv):
            path = export_csv(idx, args.out_csv, k_clusters=args.clusters, seed=args.seed)
        print(f"wrote {path}: {len(idx.entries())} catalog rows with label and cluster")
        return EXIT_OK
    t = time.perf_counter()
    with writing(args.out_dir):
        ex = export_projector(idx, args.out_dir, sample=args.sample or None, seed=args.seed,
                              k_clusters=args.clusters)
    _wrote_projector(ex, len(idx), time.perf_counter() - t)
    return EXIT_OK


def _export_sharded(args: argparse.Namespace, idx: Any) -> int:
    """``imgrec export`` of a sharded index: the CSV of every row of every shard, or the
    projector files of a sample drawn across the shards (clusters: K-means of the shared
    sample, every image in its nearest cluster)."""
    from dataclasses import replace

    from imgrec.insights.export import export_csv, export_projector
    from imgrec.shard.sample import SAMPLE, describe

    if args.format == "csv":
        res, catalog = idx.sample_clusters(args.clusters, args.seed), idx.catalog()
        with writing(args.out_csv):
            path = export_csv(catalog, args.out_csv, cluster_result=res)
        print(f"wrote {path}: {len(catalog.entries())} catalog rows of every shard with label "
              "and cluster")
        if len(idx) > SAMPLE:
            print(f"note: clusters by K-means on {describe(idx, SAMPLE)}, every image in its "
                  "nearest cluster", file=sys.stderr)
        return EXIT_OK
    size = min(args.sample or len(idx), len(idx))
    if size > SAMPLE:
        raise ImgrecError(f"--sample {args.sample}: at most {SAMPLE:,} images are exported "
                          f"from a sharded index ({len(idx):,} images); give --sample N")
    t = time.perf_counter()
    res = idx.sample_clusters(args.clusters, args.seed)
    view = idx.sample(size, args.seed)
    with writing(args.out_dir):
        ex = export_projector(view, args.out_dir, sample=None, seed=args.seed,
                              cluster_result=replace(res, labels=res.labels[view.rows]))
    _wrote_projector(ex, len(idx), time.perf_counter() - t, view.describe())
    return EXIT_OK


def _wrote_projector(ex: Any, total: int, seconds: float, note: str | None = None) -> None:
    print(f"wrote {len(ex.rows)} of {total} images ({ex.dim}-d) to {ex.out_dir} in "
          f"{seconds:.1f} s: tensors.tsv, metadata.tsv, sprite.png "
          f"({ex.sprite_size[0]}x{ex.sprite_size[1]}, {ex.thumb} px cells), "
          "projector_config.pbtxt, projector_config.json")
    if note:
        print(f"  ran on {note}")
    if ex.unreadable:
        print(f"note: {ex.unreadable} thumbnails left grey (file unreadable now)", file=sys.stderr)
    print(f"view: tensorboard --logdir {ex.out_dir}  (Projector tab), or load the files at "
          "https://projector.tensorflow.org")


def _duplicates(args: argparse.Namespace) -> int:
    from imgrec.cli.duplicates import run

    return run(args)


def _check(args: argparse.Namespace) -> int:
    from imgrec.cli.duplicates import run_check

    return run_check(args)


COMMANDS = {"labels": _labels, "duplicates": _duplicates, "check": _check, "clusters": _clusters,
            "graph": _graph, "export": _export}
