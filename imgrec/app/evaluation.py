"""The Dataset page's retrieval-quality chart (plotly; no Streamlit here)."""

from __future__ import annotations

from typing import Any

from imgrec.insights.evaluate import EvaluationReport


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


