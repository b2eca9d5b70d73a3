"""Thumbnails on hover and clicks on a plotly chart: a small component beside it.

``st.plotly_chart`` shows text on hover only and reports no click on a 3-D point. The
component mounted by :func:`plot_hover` finds the chart of the keyed container it is given
(plotly's public ``plotly_hover`` / ``plotly_unhover`` events on the chart's element) and

- shows the hovered point's thumbnail beside the cursor, from data URIs the page sends
  (the first :data:`EAGER` points at once; any other is asked for when hovered and sent by
  the rerun that follows), so nothing is fetched from outside the dashboard;
- reports a click on a point (its gallery row: a press and release in place while it is
  hovered) where the chart itself cannot;
- tells the page once when the browser has drawn it and gone idle, the mouse still for a
  moment (work worth doing ahead).

Points are named by their ``customdata``: the gallery row, as every figure of
:mod:`imgrec.app.figures` sets it (``-1`` for uploads, which have no thumbnail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from imgrec.app import data, state
from imgrec.app.cache import per_index
from imgrec.app.thumbs import data_uri
from imgrec.index.index import Index

#: Side in pixels of a hover thumbnail.
HOVER_THUMB = 128
#: Points whose thumbnails travel with the page; any other is sent when first hovered.
EAGER = 400
#: Thumbnails asked for by hovering that a plot keeps (the most recent ones).
WANTED = 64

JS = r"""
export default function (component) {
  const { data, setTriggerValue, setStateValue } = component;
  const all = (window.__imgrecHover = window.__imgrecHover || {});
  if (!all.tip) {
    const tip = document.createElement("div");
    tip.className = "imgrec-hover-tip";
    tip.setAttribute("data-testid", "imgrec-hover-tip");
    tip.style.cssText = "position:fixed;z-index:999990;pointer-events:none;display:none;" +
      "padding:3px;background:#fff;border:1px solid #c9ced6;border-radius:6px;" +
      "box-shadow:0 4px 14px rgba(31,35,48,.25)";
    const img = document.createElement("img");
    img.alt = "";
    img.style.cssText = "display:block;width:" + data.size + "px;height:" + data.size + "px";
    tip.appendChild(img);
    document.body.appendChild(tip);
    all.tip = tip;
    all.x = 0; all.y = 0; all.moved = 0;
    document.addEventListener("mousemove", (e) => {
      all.x = e.clientX; all.y = e.clientY; all.moved = Date.now();
    }, { passive: true, capture: true });
  }
  const plot = (all[data.key] = all[data.key] || { hovered: null });
  Object.assign(plot, { thumbs: data.thumbs, lazy: data.lazy, setTriggerValue, setStateValue });
  const tip = all.tip, img = tip.firstChild;
  const rowOf = (ev) => {
    const p = ev && ev.points && ev.points[0];
    const cd = p ? (Array.isArray(p.customdata) ? p.customdata[0] : p.customdata) : null;
    return cd === null || cd === undefined || Number(cd) < 0 ? null : String(Number(cd));
  };
  const place = () => {
    const w = data.size + 8, gap = 28;
    let left = Math.min(Math.max(4, all.x - w / 2), window.innerWidth - w - 4);
    let top = all.y - gap - w;  // above the cursor: plotly's own label sits beside it
    if (top < 4) top = all.y + gap;
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  };
  // a dialog opened (or a click about to open one) hides the thumbnail
  const covered = () => Date.now() < (plot.quietUntil || 0) ||
    Boolean(document.querySelector('[role="dialog"]'));
  const show = () => {
    const uri = plot.hovered && plot.thumbs[plot.hovered];
    plot.waiting = Boolean(plot.hovered && !uri);
    if (!uri || covered()) { tip.style.display = "none"; return; }
    if (img.getAttribute("src") !== uri) img.src = uri;
    tip.setAttribute("data-row", plot.hovered);
    place();
    tip.style.display = "block";
  };
  const hide = () => { plot.hovered = null; plot.waiting = false; tip.style.display = "none"; };
  const attach = () => {
    for (const [container, click] of Object.entries(data.plots)) {
      const gd = document.querySelector(".st-key-" + container + " .js-plotly-plot");
      if (!gd || typeof gd.on !== "function" || gd.__imgrecHover) continue;
      gd.__imgrecHover = true;
      gd.on("plotly_hover", (ev) => {
        plot.hovered = rowOf(ev);
        if (plot.hovered && !plot.thumbs[plot.hovered] && plot.lazy) {
          plot.setStateValue("want", Number(plot.hovered));
        }
        show();
      });
      gd.on("plotly_unhover", hide);
      if (!click) continue;
      // a click is a press and release in place over a hovered point: plotly reports none
      // for a 3-D point unless the scene redraws while the button is down
      let down = null;
      gd.addEventListener("pointerdown", (e) => { down = [e.clientX, e.clientY, plot.hovered]; },
                          true);
      // on the window: a drag mode's cover (lasso, box) takes the release from the chart
      window.addEventListener("pointerup", (e) => {
        const d = down; down = null;
        const row = d && (d[2] || plot.hovered);
        if (!d || !row || Math.hypot(e.clientX - d[0], e.clientY - d[1]) > 4) return;
        hide();
        plot.quietUntil = Date.now() + 1500;
        plot.setTriggerValue("click", Number(row));
      }, true);
    }
  };
  attach();
  if (data.idle && !plot.idleSent) {  // once the page is drawn, the browser idle and the
    plot.idleSent = true;             // mouse still for a while (not in the middle of hovers)
    const later = window.requestIdleCallback || ((f) => setTimeout(f, 200));
    const when = () => {
      if (Date.now() - all.moved < 1500) { setTimeout(when, 500); return; }
      later(() => plot.setTriggerValue("idle", true), { timeout: 3000 });
    };
    setTimeout(when, 1500);
  }
  if (plot.waiting) show();  // the thumbnail asked for has arrived
  const timer = setInterval(() => {  // the chart mounts after this, and may be redrawn
    attach();
    if (tip.style.display !== "none" && covered()) tip.style.display = "none";
  }, 300);
  return () => clearInterval(timer);
}
"""

_component = st.components.v2.component("imgrec_plot_hover", js=JS, isolate_styles=False)


def _rows_key(rows: Sequence[int]) -> tuple:
    return (tuple(int(r) for r in rows),)


@per_index(max_entries=16, spinner="Making the thumbnails shown on hover…",
           key=lambda rows: _rows_key(rows))
def hover_thumbs(idx: Index, rows: Sequence[int]) -> dict[str, str]:
    """Data URIs of the :data:`HOVER_THUMB` thumbnails of gallery ``rows``, keyed by row
    (as text: the component's data is JSON); unreadable images are left out."""
    paths = data.all_paths(idx)
    out: dict[str, str] = {}
    for r in rows:
        jpeg = data.small_thumbnail(idx, paths[int(r)], HOVER_THUMB)
        if jpeg is not None:
            out[str(int(r))] = data_uri(jpeg)
    return out


def eager_rows(rows: Sequence[int], first: Sequence[int] = ()) -> list[int]:
    """The gallery rows whose thumbnails travel with the page: ``first`` (queries and
    results), then the drawn ``rows`` in order, at most :data:`EAGER` in all.

    Example:
        >>> eager_rows(range(1000), first=[999, -1])[:3], len(eager_rows(range(1000)))
        ([999, 0, 1], 400)
    """
    keep = dict.fromkeys(int(r) for r in [*first, *rows] if int(r) >= 0)
    return list(keep)[:EAGER]


def plot_hover(idx: Index, name: str, plots: dict[str, bool], rows: Sequence[int], *,
               first: Sequence[int] = (), on_click: Callable[[str], None] | None = None,
               on_idle: Callable[[], None] | None = None) -> None:
    """Mount the hover component of the charts inside the containers keyed in ``plots``.

    Args:
        idx: the opened index the charts draw.
        name: names this component (its widget key derives from it).
        plots: container key -> whether a click on that chart's points calls ``on_click``
            (False where the chart's own selection handles clicks).
        rows: the gallery rows the charts draw.
        first: rows whose thumbnails matter most (queries, results: sent before the others).
        on_click: called with the clicked point's gallery path.
        on_idle: called (in a rerun) once the browser has drawn the page and gone idle.
    """
    _mount(idx, name, dict(plots), tuple(int(r) for r in rows), tuple(int(r) for r in first),
           on_click, on_idle)


def _mount(idx: Index, name: str, plots: dict[str, bool], rows: tuple[int, ...],
           first: tuple[int, ...], on_click: Callable[[str], None] | None,
           on_idle: Callable[[], None] | None) -> None:
    """The component itself; its callbacks run before the rerun that follows a hover (a
    thumbnail asked for) or a click (``on_click``: the page's dialog then opens)."""
    key, wanted_key = state.hover_key(name), state.hover_wanted_key(name)
    thumbs = dict(hover_thumbs(idx, eager_rows(rows, first)))
    drawn = {r for r in (*rows, *first) if r >= 0}  # uploads (-1) have no thumbnail
    wanted = [r for r in state.get(wanted_key) or [] if r in drawn and str(r) not in thumbs]
    if wanted:
        thumbs.update(hover_thumbs(idx, wanted))

    def _want() -> None:
        got = (state.get(key) or {}).get("want")
        if isinstance(got, int) and got in drawn:
            kept = [r for r in state.get(wanted_key) or [] if r != got]
            state.put(wanted_key, [*kept, got][-WANTED:])

    def _click() -> None:
        row = (state.get(key) or {}).get("click")
        if on_click is not None and isinstance(row, int) and row in drawn:
            on_click(data.all_paths(idx)[row])

    def _idle() -> None:
        if on_idle is not None and (state.get(key) or {}).get("idle"):
            on_idle()

    payload: dict[str, Any] = {"key": key, "plots": plots, "thumbs": thumbs,
                               "size": HOVER_THUMB, "lazy": len(drawn) > len(thumbs),
                               "idle": on_idle is not None}
    _component(key=key, data=payload, height=0, on_want_change=_want, on_click_change=_click,
               on_idle_change=_idle)
