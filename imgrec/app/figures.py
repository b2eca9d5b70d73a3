"""Plotly figures of the dashboard: the Explore scatter, the label chart, the neighbour graph."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.app.placement import place
from imgrec.app.projection import Highlight, Projection

GREY = "#9aa0a6"  # the "other" group
#: Communities of the neighbour graph with their own colour, name and thumbnail.
NAMED_COMMUNITIES = 23
#: The hover label of a gallery point: its path, its group, what a click does.
HOVER = "%{hovertext}<br>%{fullData.name}<br><i>click: open the image</i><extra></extra>"


@dataclass(frozen=True)
class Thumb:
    """A thumbnail drawn on a 2-D plot beside the point ``(x, y)`` it belongs to."""

    x: float
    y: float
    uri: str  # a data: URI of the image and its caption strip (no request leaves the dashboard)
    caption: str  # the layout image's name


def group_order(labels: Sequence[str]) -> list[str]:
    """The legend order of colour groups: natural order ("cluster 10" after "cluster 9"),
    "other" last."""
    order = sorted(set(labels), key=_natural)
    return [g for g in order if g != "other"] + (["other"] if "other" in order else [])


def group_colours(labels: Sequence[str]) -> dict[str, str]:
    """The colour of each group in :func:`scatter_figure` (grey for "other").

    Example:
        >>> group_colours(["cluster 1", "other", "cluster 0"])
        {'cluster 0': '#2E91E5', 'cluster 1': '#E15F99', 'other': '#9aa0a6'}
    """
    from plotly.colors import qualitative

    palette = qualitative.Dark24 + qualitative.Light24
    return {g: GREY if g == "other" else palette[i % len(palette)]
            for i, g in enumerate(group_order(labels))}


def scatter_figure(proj: Projection, paths: Sequence[str], groups: Sequence[str] | None,
                   highlights: Sequence[Highlight] = (), dims: int = 2,
                   title_prefix: str = "PC", images: Sequence[Thumb] = ()) -> Any:
    """A plotly scatter (WebGL in 2-D) with one trace per colour group plus highlights.

    Every gallery point carries its row number as ``customdata`` so a click, box or lasso
    selection maps back to gallery images; the hover text is the file name (the hover label
    adds its group). ``images`` are thumbnails drawn beside their points (2-D only), placed
    by :func:`add_thumbnails` so that none overlaps another or leaves the plot.
    """
    import plotly.graph_objects as go

    three = dims == 3
    traces = []
    labels = list(groups) if groups is not None else ["all images"] * len(proj.rows)
    colours = group_colours(labels)
    for g in group_order(labels):
        mask = np.fromiter((lab == g for lab in labels), bool, len(labels))
        sel = np.flatnonzero(mask)
        c = proj.coords[sel]
        marker: dict[str, Any] = {"size": 4 if three else 7, "opacity": 0.8,
                                  "color": GREY if groups is None else colours[g]}
        common = {"mode": "markers", "name": g, "customdata": proj.rows[sel].tolist(),
                  "hovertext": [paths[i] for i in sel], "hovertemplate": HOVER,
                  "marker": marker, "showlegend": groups is not None}
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
        # a click selects (opens) one point only while dragging pans or zooms: the dashboard
        # turns click selection off in the lasso and box modes, which the toolbar offers
        fig.update_layout(dragmode="pan", clickmode="event+select", xaxis_title=ax[0],
                          yaxis_title=ax[1])
        if images:
            extra = [h.coords[:, :2] for h in highlights if len(h.coords)]
            add_thumbnails(fig, images, np.concatenate([proj.coords[:, :2], *extra]))
    return fig


def add_thumbnails(fig: Any, thumbs: Sequence[Thumb], points: np.ndarray) -> None:
    """Draw ``thumbs`` (images with their caption strip, see
    :func:`imgrec.app.thumbs.plot_thumb_uri`) on a 2-D ``fig``, each with a thin line to its point.

    :func:`imgrec.app.placement.place` puts them near their points, covering few of
    ``points`` (every point drawn), never overlapping each other and never cut by the plot's
    edge: the axis ranges are fixed to leave room (a double click returns to them). Each
    layout image is named by its caption.
    """
    if not thumbs:
        return
    pl = place(np.array([[t.x, t.y] for t in thumbs]), points)
    for t, (x0, y0, x1, y1) in zip(thumbs, pl.boxes(), strict=True):
        # the line runs from the point to the nearest point of the box
        fig.add_shape(type="line", x0=t.x, y0=t.y, x1=min(max(t.x, x0), x1),
                      y1=min(max(t.y, y0), y1), layer="below",
                      line={"color": "rgba(31,35,48,0.45)", "width": 1})
        fig.add_layout_image(source=t.uri, name=t.caption, x=float((x0 + x1) / 2), y=float(y1),
                             xref="x", yref="y", sizex=float(x1 - x0), sizey=float(y1 - y0),
                             xanchor="center", yanchor="top", sizing="contain", layer="above")
    fig.update_xaxes(range=list(pl.xrange), autorange=False)
    fig.update_yaxes(range=list(pl.yrange), autorange=False)


def _highlight_traces(highlights: Sequence[Highlight], three: bool) -> list[Any]:
    """Traces of the queries (stars), results (rings) and representatives (squares)."""
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


def graph_figure(graph: Any, paths: Sequence[str], labels: Sequence[str] | None = None,
                 images: Sequence[Thumb] = ()) -> Any:
    """A WebGL plotly figure of a :class:`imgrec.insights.graph.NeighbourGraph`.

    ``labels`` (the drawn images' top-1 labels, like ``paths``) name each community by its
    most frequent one; ``images`` (the communities' representatives, see
    :func:`community_thumbs`) are drawn beside them as :func:`add_thumbnails` places them.

    All edges are one line trace (``x0, x1, None, ...``); nodes are one marker trace per
    community (the 23 largest get their own colour, the rest share grey as "other"), each
    node carrying its index row as ``customdata`` so a selection maps back to images.
    """
    import plotly.graph_objects as go

    ex, ey = graph.edge_xy()
    traces = [go.Scattergl(x=ex, y=ey, mode="lines", name="links", hoverinfo="skip",
                           line={"width": 1.0, "color": "rgba(70,70,70,0.5)"},
                           showlegend=False)]
    comm = np.asarray(graph.community)
    n_named = min(NAMED_COMMUNITIES, int(comm.max()) + 1 if len(comm) else 0)
    groups = [(community_name(c, np.flatnonzero(comm == c), labels),
               np.flatnonzero(comm == c), community_colour(c)) for c in range(n_named)]
    rest = np.flatnonzero(comm >= n_named)
    if len(rest):
        groups.append(("other", rest, "#9aa0a6"))
    for name, sel, colour in groups:
        traces.append(go.Scattergl(
            x=graph.x[sel], y=graph.y[sel], mode="markers", name=name,
            customdata=np.asarray(graph.rows)[sel].tolist(),
            hovertext=[paths[i] for i in sel], hovertemplate=HOVER,
            marker={"size": 6, "color": colour, "line": {"width": 0}}))
    fig = go.Figure(traces)
    add_thumbnails(fig, images, np.stack([graph.x, graph.y], 1))
    # the top margin holds plotly's toolbar, so it never covers the first legend entry
    fig.update_layout(height=620, margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode="lasso",
                      hovermode="closest", uirevision="graph",
                      legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.7)",
                              "y": 1, "yanchor": "top"},
                      xaxis={"visible": False}, yaxis={"visible": False})
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


def community_captions(graph: Any, labels: Sequence[str] | None) -> list[str]:
    """The caption of each named community's thumbnail: its legend name without the word
    "community".

    Example:
        >>> from imgrec.insights.graph import neighbour_graph
        >>> g = neighbour_graph(np.eye(4, dtype=np.float32).repeat(3, 0), k=2, threshold=0.5)
        >>> community_captions(g, ["cat"] * 12)
        ['1: cat', '2: cat', '3: cat', '4: cat']
    """
    comm = np.asarray(graph.community)
    return [community_name(c, np.flatnonzero(comm == c), labels).removeprefix("community ")
            for c in range(min(NAMED_COMMUNITIES, graph.n_communities))]


def community_thumbs(graph: Any, uris: Sequence[str | None], captions: Sequence[str]
                     ) -> list[Thumb]:
    """Thumbnails of the named communities' representatives for :func:`graph_figure`
    (``uris``: one per community, None where the image cannot be read)."""
    return [Thumb(float(graph.x[node]), float(graph.y[node]), uri, cap)
            for node, uri, cap in zip(graph.representatives, uris, captions, strict=False) if uri]


def community_colour(c: int) -> str:
    """The colour of named community ``c`` on the neighbour graph."""
    from plotly.colors import qualitative

    return qualitative.Dark24[int(c) % len(qualitative.Dark24)]
