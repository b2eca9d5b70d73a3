"""Plotly figures of the dashboard: the Explore scatter, the label chart, the neighbour graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from imgrec.app.projection import Highlight, Projection


def scatter_figure(proj: Projection, paths: Sequence[str], groups: Sequence[str] | None,
                   highlights: Sequence[Highlight] = (), dims: int = 2,
                   title_prefix: str = "PC", images: Sequence[tuple[float, float, str]] = ()
                   ) -> Any:
    """A plotly scatter (WebGL in 2-D) with one trace per colour group plus highlights.

    Every gallery point carries its row number as ``customdata`` so a box or lasso
    selection maps back to gallery images; the hover text is the file name. Highlights
    of kind ``"rep"`` (cluster representatives) are labelled with their file name;
    ``images`` are ``(x, y, data URI)`` thumbnails drawn at those points (2-D only).
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Dark24 + qualitative.Light24
    three = dims == 3
    traces = []
    labels = list(groups) if groups is not None else ["all images"] * len(proj.rows)
    order = sorted(set(labels), key=_natural)
    if "other" in order:
        order = [g for g in order if g != "other"] + ["other"]
    for gi, g in enumerate(order):
        mask = np.fromiter((lab == g for lab in labels), bool, len(labels))
        sel = np.flatnonzero(mask)
        c = proj.coords[sel]
        marker: dict[str, Any] = {"size": 3 if three else 7, "opacity": 0.8,
                                  "color": "#9aa0a6" if g == "other" or groups is None
                                  else palette[gi % len(palette)]}
        common = {"mode": "markers", "name": g, "customdata": proj.rows[sel].tolist(),
                  "hovertext": [paths[i] for i in sel], "hoverinfo": "text", "marker": marker,
                  "showlegend": groups is not None}
        if three:
            traces.append(go.Scatter3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], **common))
        else:
            traces.append(go.Scattergl(x=c[:, 0], y=c[:, 1], **common))
    traces += _highlight_traces(highlights, three)
    fig = go.Figure(traces)
    ax = [f"{title_prefix}{i + 1} ({100 * proj.explained[i]:.1f} %)" for i in range(3)]
    fig.update_layout(height=600 if not three else 680, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.7)"},
                      hovermode="closest", uirevision="explore")
    if three:
        fig.update_layout(scene={"xaxis_title": ax[0], "yaxis_title": ax[1], "zaxis_title": ax[2]})
    else:
        fig.update_layout(dragmode="lasso", xaxis_title=ax[0], yaxis_title=ax[1])
        if images:
            span = float(np.ptp(proj.coords[:, :2], axis=0).max()) if len(proj.coords) else 1.0
            size = 0.07 * (span or 1.0)
            for x, y, uri in images:
                fig.add_layout_image(source=uri, x=float(x), y=float(y), xref="x", yref="y",
                                     sizex=size, sizey=size, xanchor="center", yanchor="middle",
                                     layer="above", opacity=0.95)
    return fig


def _highlight_traces(highlights: Sequence[Highlight], three: bool) -> list[Any]:
    """Traces of the queries (stars), results (rings) and representatives (labelled squares)."""
    import plotly.graph_objects as go

    # Scatter3d knows only a few symbols (circle, square, diamond, cross, x and -open forms)
    styles = {"query": {"symbol": "diamond" if three else "star", "size": 9 if three else 20,
                        "color": "#e8175d", "line": {"width": 1.5, "color": "#ffffff"}},
              "result": {"symbol": "circle-open", "size": 7 if three else 15, "color": "#111111",
                         "line": {"width": 2.5, "color": "#111111"}},
              "rep": {"symbol": "square", "size": 6 if three else 13, "color": "#ffffff",
                      "line": {"width": 2, "color": "#1f2330"}}}
    traces = []
    for h in highlights:
        if not len(h.coords):
            continue
        common = {"mode": "markers", "name": h.name, "customdata": list(h.rows),
                  "hovertext": list(h.labels), "hoverinfo": "text", "marker": styles[h.kind]}
        if h.kind == "rep":
            common.update(mode="markers+text", textposition="top center",
                          text=[lab.rsplit("/", 1)[-1] for lab in h.labels],
                          textfont={"size": 10, "color": "#1f2330"})
        if three:
            traces.append(go.Scatter3d(x=h.coords[:, 0], y=h.coords[:, 1], z=h.coords[:, 2],
                                       **common))
        else:
            traces.append(go.Scattergl(x=h.coords[:, 0], y=h.coords[:, 1], **common))
    return traces


def _natural(label: str) -> tuple[int, Any]:
    """Sort "cluster 10" after "cluster 9"."""
    tail = label.rsplit(" ", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, label)


def label_chart(counts: Sequence[Any], title: str = "") -> Any:
    """A horizontal plotly bar chart of :func:`imgrec.insights.labels.label_counts`, most frequent on top."""
    import plotly.graph_objects as go

    names = [c.name for c in counts][::-1]
    values = [int(c.count) for c in counts][::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker={"color": "#4c6ef5"},
                           hovertemplate="%{y}: %{x} images<extra></extra>"))
    fig.update_layout(height=max(300, 22 * len(names) + 80), title=title or None,
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      xaxis={"title": "images (top-1 label)", "tickformat": ",d",
                             "dtick": 1 if max(values, default=0) <= 10 else None},
                      yaxis={"automargin": True})
    return fig


def graph_figure(graph: Any, paths: Sequence[str], labels: Sequence[str] | None = None) -> Any:
    """A WebGL plotly figure of a :class:`imgrec.insights.graph.NeighbourGraph`.

    ``labels`` (the drawn images' top-1 labels, like ``paths``) name each community by its
    most frequent one.

    All edges are one line trace (``x0, x1, None, ...``); nodes are one marker trace per
    community (the 23 largest get their own colour, the rest share grey as "other"), each
    node carrying its index row as ``customdata`` so a selection maps back to images.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Dark24
    ex, ey = graph.edge_xy()
    traces = [go.Scattergl(x=ex, y=ey, mode="lines", name="links", hoverinfo="skip",
                           line={"width": 1.0, "color": "rgba(70,70,70,0.5)"},
                           showlegend=False)]
    comm = np.asarray(graph.community)
    n_named = min(len(palette) - 1, int(comm.max()) + 1 if len(comm) else 0)
    groups = [(community_name(c, np.flatnonzero(comm == c), labels),
               np.flatnonzero(comm == c), palette[c % len(palette)]) for c in range(n_named)]
    rest = np.flatnonzero(comm >= n_named)
    if len(rest):
        groups.append(("other", rest, "#9aa0a6"))
    for name, sel, colour in groups:
        traces.append(go.Scattergl(
            x=graph.x[sel], y=graph.y[sel], mode="markers", name=name,
            customdata=np.asarray(graph.rows)[sel].tolist(),
            hovertext=[paths[i] for i in sel], hoverinfo="text",
            marker={"size": 6, "color": colour, "line": {"width": 0}}))
    fig = go.Figure(traces)
    # the top margin holds plotly's toolbar, so it never covers the first legend entry
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode="lasso",
                      hovermode="closest", uirevision="graph",
                      legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.7)",
                              "y": 1, "yanchor": "top"},
                      xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
    return fig


def community_name(c: int, members: np.ndarray, labels: Sequence[str] | None) -> str:
    """``community 3: tabby`` (its members' most frequent label), or ``community 3``.

    Example:
        >>> community_name(2, np.array([0, 1, 2]), ["tabby", "tabby", "espresso"])
        'community 3: tabby'
    """
    name = f"community {c + 1}"
    if labels:
        counts = Counter(labels[int(i)] for i in members if labels[int(i)])
        if counts:
            name += f": {counts.most_common(1)[0][0]}"
    return name
