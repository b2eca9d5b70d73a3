"""The Dataset page's Evaluate section: labels, k and methods, a run button, table and chart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgrec.errors import ImgrecError
from imgrec.insights.evaluate import DEFAULT_METHODS, EvaluationReport, evaluate

if TYPE_CHECKING:
    from imgrec.index.index import Index

LABEL_SOURCES = {"folder": "the image's own folder", "depth": "the folder at a depth"}


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


def summary_frame(report: EvaluationReport, k: int | None = None) -> Any:
    """One row per method: P@k, recall@k, mAP@k and first hit, each ``value [low-high]``."""
    import pandas as pd

    k = report.ks[0] if k is None else k
    cols = {"precision": f"P@{k}", "recall": f"recall@{k}", "mAP": f"mAP@{k}",
            "first_hit": "first hit"}
    out = []
    for m in report.methods:
        row: dict[str, Any] = {"method": m + (" (best)" if m == report.best else "")}
        for metric, name in cols.items():
            r = next(r for r in report.rows if r["method"] == m and r["metric"] == metric
                     and (metric == "first_hit" or r["k"] == k))
            row[name] = f"{r['value']:.3f} [{r['low']:.3f}-{r['high']:.3f}]"
        out.append(row)
    return pd.DataFrame(out)


def labels_spec(source: str, depth: int) -> str:
    """The ``labels`` argument of :func:`evaluate` for a choice of the section."""
    return "folder" if source == "folder" else f"depth:{int(depth)}"


def evaluate_view(idx: Index) -> None:
    """The Evaluate section: leave-one-out retrieval quality of the chosen methods."""
    import streamlit as st

    from imgrec.app import state
    from imgrec.app.state import Key

    st.subheader("Evaluate")
    st.caption("Which method suits this gallery? Each labelled image queries the others "
               "(itself left out), with the search's own scoring; a hit is relevant when it "
               "has the same label. Intervals are 95 % bootstrap intervals over the queries.")
    c = st.columns([2, 1, 1])
    source = c[0].radio("Labels from", list(LABEL_SOURCES), key=Key.EVAL_LABELS,
                        format_func=LABEL_SOURCES.__getitem__, horizontal=True)
    depth = c[1].number_input("Folder depth", min_value=1, max_value=20, value=1, step=1,
                              key=Key.EVAL_DEPTH, disabled=source != "depth",
                              help="1: the top folder under the gallery")
    k = c[2].number_input("k", min_value=1, max_value=100, value=5, step=1, key=Key.EVAL_K)
    methods = st.multiselect("Methods", list(DEFAULT_METHODS), default=list(DEFAULT_METHODS),
                             key=Key.EVAL_METHODS)
    labels = labels_spec(source, depth)
    asked = (str(idx.index_dir), str(idx.version), labels, int(k), tuple(methods))
    if st.button("Evaluate", key=Key.EVAL_RUN, icon=":material/analytics:",
                 disabled=not methods, help=None if methods else "choose at least one method"):
        with st.spinner(f"Evaluating {len(methods)} methods on {len(idx):,} images..."):
            try:
                got: EvaluationReport | str = evaluate(idx, labels=labels, ks=(int(k),),
                                                       methods=methods)
            except ImgrecError as exc:
                got = str(exc)
        state.put(Key.EVAL_RESULT, (asked, got))
    done = state.get(Key.EVAL_RESULT)
    if done is None or done[0] != asked:
        st.caption("Choose the labels, k and methods, then press Evaluate.")
        return
    report = done[1]
    if isinstance(report, str):
        st.warning(report, icon=":material/warning:")
        return
    st.markdown(f"**Best here: `{report.best}`** by {report.best_by} (ahead of the runner-up "
                f"in {report.best_confidence:.0%} of resamples) · {report.n_queries:,} "
                f"queries · {report.n_unlabelled:,} unlabelled, {report.n_singletons:,} "
                "alone in their label")
    for note in report.notes:
        st.caption(note)
    st.dataframe(summary_frame(report), hide_index=True, width="stretch")
    st.plotly_chart(figure(report), key=Key.EVAL_CHART)
