"""``imgrec evaluate``: its arguments, its output and the command (see :mod:`imgrec.insights.evaluate`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imgrec.errors import ImgrecError
from imgrec.insights.evaluate import DEFAULT_KS, DEFAULT_METHODS, EvaluationReport, evaluate


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"-k wants positive whole numbers like 5,10,20, got {text!r}")
    return ks


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    if not methods:
        raise argparse.ArgumentTypeError("--methods wants a comma-separated list")
    return methods


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``imgrec evaluate`` (defaults read from :func:`evaluate`)."""
    import inspect

    d = {k: v.default for k, v in inspect.signature(evaluate).parameters.items()}
    p.add_argument("--index", type=Path, help="index directory (default: IMGREC_INDEX_DIR, "
                   "else data/index)")
    p.add_argument("--labels", default=d["labels"], help="'folder' (the immediate folder), "
                   "'depth:N' (the folder at depth N; depth:1 = the top folder) or a CSV file "
                   "path,label[,label...] (default: %(default)s)")
    # string defaults go through ``type`` like typed values, and print as they are typed
    p.add_argument("-k", dest="ks", type=_ks, default=",".join(map(str, DEFAULT_KS)),
                   metavar="K[,K...]", help="cut-offs (default: %(default)s)")
    p.add_argument("--methods", type=_methods, default=",".join(DEFAULT_METHODS),
                   metavar="M[,M...]",
                   help="embedding:cosine, embedding:euclidean, embedding:manhattan, color, "
                        "pca, pca:N (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=d["bootstrap"],
                   help="resamples for the 95%% intervals; 0 = none (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the bootstrap resamples (default: %(default)s)")
    p.add_argument("--rerank", metavar="SPEC", default=d["rerank"],
                   help="also measure embedding:cosine re-ranked by alpha query expansion: "
                        "'aqe' or 'aqe:n=N,alpha=A', as `imgrec search --rerank` (default: "
                        "none)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (default: a table)")
    from imgrec.shard.cli import add_serve_option

    add_serve_option(p)


def render(report: EvaluationReport) -> str:
    """The text ``imgrec evaluate`` prints."""
    lines = [f"{report.n_queries} queries of {report.n_images} images, labels {report.labels} "
             f"({report.n_unlabelled} unlabelled, {report.n_singletons} alone in their label: "
             "candidates only)", report.table(),
             f"best: {report.best} by {report.best_by} (ahead of the runner-up in "
             f"{report.best_confidence:.0%} of bootstrap resamples); "
             f"{report.seconds['total']:.1f} s"]
    if report.unknown_paths:
        shown = ", ".join(report.unknown_paths[:5])
        more = f" and {len(report.unknown_paths) - 5} more" if len(report.unknown_paths) > 5 else ""
        lines.append(f"warning: {len(report.unknown_paths)} CSV paths are not in the index: "
                     f"{shown}{more}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``imgrec evaluate`` (errors are ImgrecErrors: one line, exit 2, from the CLI's main)."""
    from imgrec.cli.commands import index_dir
    from imgrec.shard.cli import open_index

    if args.bootstrap < 0:
        raise ImgrecError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    idx = open_index(index_dir(args.index), args.ray)  # a sharded index: each query over every shard
    report = evaluate(idx, labels=args.labels, ks=args.ks, methods=args.methods,
                      bootstrap=args.bootstrap, seed=args.seed, rerank=args.rerank)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return 0
