"""``imgrec evaluate``: the arguments, the command, and the Dashboard's table and bar chart.

The command line wires :func:`add_arguments` into a sub-parser and calls :func:`run`;
the Dataset page shows ``report.to_frame()`` and :func:`figure` (a plotly bar chart).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    """The options of ``imgrec evaluate``."""
    p.add_argument("--index", type=Path, help="index directory (default: data/index or "
                   "IMGREC_INDEX_DIR)")
    p.add_argument("--labels", default="folder", help="'folder' (the immediate folder), "
                   "'depth:N' (the folder at depth N; depth:1 = the top folder) or a CSV file "
                   "path,label[,label...] (default: folder)")
    p.add_argument("-k", dest="ks", type=_ks, default=DEFAULT_KS, metavar="K[,K...]",
                   help="cut-offs (default: 5,10,20)")
    p.add_argument("--methods", type=_methods, default=DEFAULT_METHODS, metavar="M[,M...]",
                   help="embedding:cosine, embedding:euclidean, embedding:manhattan, color, "
                        "pca, pca:N (default: all five)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="resamples for the 95%% intervals (default 1000; 0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


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
    """Run ``imgrec evaluate``; 0 on success, 1 with a one-line error."""
    from imgrec.index.index import Index

    try:
        if args.bootstrap < 0:
            raise ImgrecError(f"--bootstrap must be >= 0, got {args.bootstrap}")
        idx = Index.open(args.index)
        report = evaluate(idx, labels=args.labels, ks=args.ks, methods=args.methods,
                          bootstrap=args.bootstrap, seed=args.seed)
    except ImgrecError as exc:
        print(f"imgrec: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return 0


def figure(report: EvaluationReport, k: int | None = None) -> Any:
    """A plotly bar chart: each method's precision, recall and mAP at ``k`` and first hit,
    with the 95 % intervals as error bars (``k`` defaults to the report's first)."""
    import plotly.graph_objects as go

    k = report.ks[0] if k is None else k
    fig = go.Figure()
    for metric, title in (("precision", f"P@{k}"), ("recall", f"recall@{k}"),
                          ("mAP", f"mAP@{k}"), ("first_hit", "first hit")):
        rows = [next(r for r in report.rows if r["method"] == m and r["metric"] == metric
                     and (metric == "first_hit" or r["k"] == k)) for m in report.methods]
        fig.add_bar(name=title, x=report.methods, y=[r["value"] for r in rows],
                    error_y={"type": "data", "symmetric": False,
                             "array": [r["high"] - r["value"] for r in rows],
                             "arrayminus": [r["value"] - r["low"] for r in rows]})
    fig.update_layout(barmode="group", yaxis={"range": [0, 1], "title": "share"},
                      title=f"Retrieval quality by method (labels: {report.labels})")
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m imgrec.insights.evaluate_cli ...`` (the same as ``imgrec evaluate``)."""
    p = argparse.ArgumentParser(prog="imgrec evaluate", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
