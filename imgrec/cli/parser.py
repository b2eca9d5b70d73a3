"""The command line's argument parser: every default comes from the module that owns it."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"imgrec: error: {message} (see imgrec {self.prog.split()[-1]} -h)\n")


class AppendTuple(argparse.Action):
    """A repeatable option collected into a tuple (None when it is not given)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, (*(getattr(namespace, self.dest, None) or ()), values))


def defaults(func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``func``'s signature, so the CLI never retypes them."""
    return {n: p.default for n, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _version() -> str:
    from imgrec import __version__

    return f"imgrec {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The ``imgrec`` parser with its sub-commands."""
    from imgrec.settings import Settings

    st = Settings.from_env()
    p = Parser(prog="imgrec", description="Find similar images by content or colour.",
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=f"defaults: index directory $IMGREC_INDEX_DIR, else {st.index_dir}\n"
                      f"          demo gallery $IMGREC_DEMO_DIR, else {st.demo_dir}\n"
                      "`imgrec COMMAND -h` lists a command's options, each with its default")
    p.add_argument("--version", action="version", version=_version(),
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser,
                           metavar="COMMAND")
    _demo(sub)
    _index(sub)
    _search(sub)
    _watch(sub)
    _info(sub)
    _insights(sub)
    _export(sub)
    from imgrec.app.launch import add_arguments as app_arguments
    from imgrec.cli.evaluate import add_arguments as evaluate_arguments
    from imgrec.server import add_arguments as serve_arguments

    evaluate_arguments(_add(sub, "evaluate", "retrieval quality of every method on this "
                                             "gallery's labels (leave-one-out)"))

    from imgrec.shard.cli import add_arguments as shard_arguments

    shard_arguments(sub)
    app_arguments(_add(sub, "app", "start the dashboard (Streamlit) in this process"))
    serve_arguments(_add(sub, "serve", "serve the HTTP API over one index (FastAPI + uvicorn)"))
    return p


def _add(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help)


def _index_dir(p: argparse.ArgumentParser) -> None:
    from imgrec.settings import Settings

    p.add_argument("--index", type=Path, metavar="DIR",
                   help="index directory (default: $IMGREC_INDEX_DIR, else "
                        f"{Settings.from_env().index_dir})")


def _ray(p: argparse.ArgumentParser) -> None:
    from imgrec.shard.cli import add_serve_option

    add_serve_option(p)


def _json(p: argparse.ArgumentParser, what: str = "print one JSON object") -> None:
    p.add_argument("--json", action="store_true", help=f"{what} (default: a table)")


def _demo(sub: Any) -> None:
    from imgrec.settings import Settings

    d = _add(sub, "demo", "write the built-in demo gallery")
    d.add_argument("--out", type=Path, metavar="DIR",
                   help=f"folder (default: $IMGREC_DEMO_DIR, else {Settings.from_env().demo_dir})")
    d.add_argument("--index", action="store_true",
                   help="also index it into the default index (default: off)")


def _index(sub: Any) -> None:
    from imgrec.build.builder import build_index
    from imgrec.features.embedding import BACKBONES
    from imgrec.images import IGNORE_FILE

    b = defaults(build_index)
    i = _add(sub, "index", "index (or re-sync) a gallery folder")
    i.add_argument("gallery", type=Path, help="folder of images, scanned recursively")
    _index_dir(i)
    i.add_argument("--model", choices=sorted(BACKBONES), default=b["model"],
                   help="backbone computing the embeddings (default: %(default)s)")
    i.add_argument("--weights", type=Path, metavar="FILE",
                   help="backbone state-dict file (.pth) (default: the packaged weights, or "
                        "the torch hub cache for resnet50)")
    i.add_argument("--workers", type=int, metavar="N", default=b["workers"],
                   help="decoding processes; 0 decodes in this process (default: the CPU count)")
    i.add_argument("--batch-size", type=int, metavar="N", default=b["batch_size"],
                   help="images per CNN forward pass (default: %(default)s; 8 and 16 measure "
                        "alike on 2 CPU cores)")
    i.add_argument("--device", choices=("auto", "cpu", "cuda"), default=b["device"],
                   help="where the CNN runs; auto uses CUDA when present (default: %(default)s)")
    i.add_argument("--pca-components", type=int, metavar="N", default=b["pca_components"],
                   help="PCA components kept for the pca method (default: %(default)s)")
    i.add_argument("--full", action="store_true",
                   help="recompute everything, ignoring the existing index (default: off)")
    i.add_argument("--wait", action="store_true",
                   help="wait for a running build of this index instead of failing "
                        "(default: off)")
    i.add_argument("--exclude", action=AppendTuple, dest="excludes", metavar="GLOB",
                   help="leave out files or folders matching this gitignore-style pattern, "
                        "relative to the gallery (repeatable; applied after the gallery's "
                        f"{IGNORE_FILE} file) (default: none)")
    i.add_argument("--max-megapixels", type=float, metavar="N", default=b["max_megapixels"],
                   help="skip images larger than this (default: %(default)s)")
    i.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    from imgrec.shard.cli import add_ray_option, add_shards_option

    add_ray_option(i)
    add_shards_option(i)


def _search(sub: Any) -> None:
    from imgrec.index.index import Index
    from imgrec.search.rank import EMBEDDING_METRICS, MAX_QUERIES, METHODS

    d = defaults(Index.search)
    s = _add(sub, "search", f"find the images most similar to 1-{MAX_QUERIES} query images")
    s.add_argument("images", nargs="*", metavar="IMAGE",
                   help="query image files, or @path for an indexed image")
    _index_dir(s)
    s.add_argument("--method", choices=METHODS, default=d["method"],
                   help="embedding (CNN content), color (RGB histogram, chi-square) or pca "
                        "(PCA-reduced histogram, cosine) (default: %(default)s)")
    s.add_argument("--metric", choices=EMBEDDING_METRICS, default=d["metric"],
                   help="distance for the embedding method; all = the union of the three "
                        "metrics' top-k (default: %(default)s)")
    s.add_argument("-k", type=int, metavar="N", default=d["k"],
                   help="results per query (default: %(default)s)")
    s.add_argument("--pca-components", type=int, metavar="N", default=d["pca_components"],
                   help="PCA components compared by the pca method (default: all stored)")
    _json(s)
    s.add_argument("--absolute", action="store_true",
                   help="print absolute file paths (default: relative to the gallery)")
    s.add_argument("--label", metavar="TEXT",
                   help="instead of query images: rank by the ImageNet labels matching TEXT, "
                        "e.g. 'dog', 'lakeside', 'cat, tiger' (default: none)")
    _filters(s)
    s.add_argument("--negative", action="append", default=[], metavar="IMAGE",
                   help=f"a 'less like this' example (file or @path; up to {MAX_QUERIES}; "
                        "embedding + cosine only): the combined ranking is refined "
                        "(default: none)")
    s.add_argument("--server", metavar="URL",
                   help="send the search to a running `imgrec serve`, e.g. "
                        "http://127.0.0.1:8600 (default: none, search the index here)")
    s.add_argument("--negative-weight", type=float, metavar="W", default=d["negative_weight"],
                   help="weight of the negative examples (default: %(default)s)")
    s.add_argument("--max-megapixels", type=float, metavar="N", default=d["max_megapixels"],
                   help="refuse query images larger than this (default: %(default)s)")
    s.add_argument("--rerank", metavar="SPEC", default=d["rerank"],
                   help="re-rank by alpha query expansion: 'aqe' or 'aqe:n=N,alpha=A' (each "
                        "query plus its N nearest images weighted by cosine^A, searched "
                        "again; embedding + cosine only) (default: none)")
    _ray(s)


def _watch(sub: Any) -> None:
    from imgrec.build.builder import build_index
    from imgrec.build.watch import DEBOUNCE_S

    b = defaults(build_index)
    w = _add(sub, "watch", "keep an index in sync with its gallery while running (Ctrl-C stops)")
    w.add_argument("gallery", type=Path, help="folder of images, watched recursively")
    _index_dir(w)
    w.add_argument("--debounce", type=float, metavar="S", default=DEBOUNCE_S,
                   help="quiet seconds after a change before syncing (default: %(default)s)")
    w.add_argument("--exclude", action=AppendTuple, dest="excludes", metavar="GLOB",
                   help="leave out files or folders matching this gitignore-style pattern "
                        "(repeatable) (default: none)")
    w.add_argument("--max-megapixels", type=float, metavar="N", default=b["max_megapixels"],
                   help="skip images larger than this (default: %(default)s)")
    w.add_argument("--workers", type=int, metavar="N", default=b["workers"],
                   help="decoding processes; 0 decodes in this process (default: the CPU count)")


def _filters(s: argparse.ArgumentParser) -> None:
    from imgrec.index.columns import ORIENTATIONS

    f = s.add_argument_group("filters (the exact top-k among the images that pass all of them)")
    f.add_argument("--in", dest="folders", action=AppendTuple, metavar="FOLDER",
                   help="only images under this gallery folder (repeatable: any of them) "
                        "(default: the whole gallery)")
    f.add_argument("--after", metavar="DATE",
                   help="only images taken on or after DATE: 2019, 2019-07 or 2019-07-14; the "
                        "date taken is EXIF DateTimeOriginal, else the file time (default: none)")
    f.add_argument("--before", metavar="DATE",
                   help="only images taken before DATE (default: none)")
    f.add_argument("--min-size", metavar="WxH",
                   help="only images at least W pixels wide and H high, e.g. 1920x1080 "
                        "(default: any size)")
    f.add_argument("--format", dest="formats", action=AppendTuple, metavar="F",
                   help="only images of this file format: jpeg, png, heic, avif, dng, ... "
                        "(repeatable: any of them) (default: every format)")
    f.add_argument("--orientation", choices=ORIENTATIONS,
                   help="only landscape, portrait or square images (default: any)")
    f.add_argument("--has-label", metavar="TEXT",
                   help="only images with an ImageNet label matching TEXT among their top 5, "
                        "e.g. 'dog' (default: none)")


def _info(sub: Any) -> None:
    n = _add(sub, "info", "what is indexed, with which model, what was skipped")
    _index_dir(n)
    _json(n)
    n.add_argument("--verify", action="store_true",
                   help="check that catalog, matrices and manifest agree (reads every file); "
                        "exit 2 naming each problem (default: off)")


def _insights(sub: Any) -> None:
    from imgrec.features.recipe import RECIPES
    from imgrec.insights.clusters import clusters
    from imgrec.insights.graph import neighbour_graph
    from imgrec.insights.labels import label_counts

    lb = _add(sub, "labels", "the most frequent ImageNet labels, or one image's labels")
    _index_dir(lb)
    lb.add_argument("--top", type=int, metavar="N", default=defaults(label_counts)["top"],
                    help="labels to list (default: %(default)s)")
    lb.add_argument("--image", metavar="PATH",
                    help="show the top-5 labels of this indexed image (default: none)")
    _json(lb)
    _ray(lb)

    from imgrec.cli.duplicates import add_arguments as duplicates_arguments
    from imgrec.cli.duplicates import add_check_arguments

    duplicates_arguments(_add(sub, "duplicates", "duplicate groups in three tiers (exact, same "
                                                 "picture, similar shots); decisions; move/undo"))
    add_check_arguments(_add(sub, "check", "say for each image whether it is already in the "
                                           "collection (exit 3) or new (exit 0)"))

    c = defaults(clusters)
    cl = _add(sub, "clusters", "K-means clusters with their representative images")
    _index_dir(cl)
    cl.add_argument("-k", type=int, metavar="N", default=None,
                    help="clusters (default: chosen from the data, the best silhouette, as the "
                         "dashboard does)")
    cl.add_argument("--seed", type=int, default=c["seed"],
                    help="random seed of K-means (default: %(default)s)")
    _json(cl)
    _ray(cl)

    g = defaults(neighbour_graph)
    gr = _add(sub, "graph", "nearest-neighbour graph of a sample, with communities")
    _index_dir(gr)
    gr.add_argument("-k", type=int, metavar="N", default=g["k"],
                    help="neighbours per image (default: %(default)s)")
    gr.add_argument("--threshold", type=float, metavar="T", default=g["threshold"],
                    help="cosine a link needs (default: the one calibrated for the index's "
                         "embedding recipe: " + ", ".join(f"{r.graph_threshold:g} for {n}"
                                                          for n, r in RECIPES.items()) + ")")
    gr.add_argument("--sample", type=int, metavar="N", default=g["sample"],
                    help="images in the graph (default: %(default)s)")
    gr.add_argument("--seed", type=int, default=g["seed"],
                    help="random seed of the sample and layout (default: %(default)s)")
    _json(gr, "nodes, edges and communities as JSON")
    _ray(gr)


def _export(sub: Any) -> None:
    from imgrec.insights.export import export_csv, export_projector

    ex = _add(sub, "export", "TensorBoard projector files, or the catalog as CSV")
    exs = ex.add_subparsers(dest="format", required=True, parser_class=Parser, metavar="FORMAT")
    p = defaults(export_projector)
    ep = _add(exs, "projector", "tensors.tsv, metadata.tsv, sprite.png, config")
    ep.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write into")
    _index_dir(ep)
    ep.add_argument("--sample", type=int, metavar="N", default=p["sample"],
                    help="images exported at most, drawn at random; 0 = all "
                         "(default: %(default)s)")
    ep.add_argument("--clusters", type=int, metavar="K", default=p["k_clusters"],
                    help="K-means clusters (default: %(default)s)")
    ep.add_argument("--seed", type=int, default=p["seed"],
                    help="random seed of the sample and clusters (default: %(default)s)")
    _ray(ep)
    c = defaults(export_csv)
    ec = _add(exs, "csv", "one row per gallery file, with label and cluster")
    ec.add_argument("out_csv", type=Path, metavar="OUT.csv", help="CSV file to write")
    _index_dir(ec)
    ec.add_argument("--clusters", type=int, metavar="K", default=c["k_clusters"],
                    help="K-means clusters (default: %(default)s)")
    ec.add_argument("--seed", type=int, default=c["seed"],
                    help="random seed of the clusters (default: %(default)s)")
    _ray(ec)
