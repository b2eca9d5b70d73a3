"""The Explore page in a real browser: the dashboard started as ``make run`` does, opened
in Chromium on an index; timed until the 2-D scatter is drawn and answers hovers, a hover
until the point's thumbnail is shown, and the switch to 3-D until its scene is shown."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from .machine import machine
from .thumbs_browser import CHROMIUM, CHROMIUM_ARGS, _serve, _stop

PLOT = ".st-key-explore-plot-2 .js-plotly-plot"
TIP = '[data-testid="imgrec-hover-tip"]'
#: screen positions of the first point of each trace of the 2-D scatter
POINTS = """gd => gd._fullData.filter(t => t.x && t.x.length && (t.customdata || [])[0] >= 0)
  .map(t => { const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis,
                    r = gd.getBoundingClientRect();
              return [r.left + xa._offset + xa.l2p(t.x[0]), r.top + ya._offset + ya.l2p(t.y[0])]; })"""
SHOWN_3D = """() => { const g = document.querySelector('.st-key-explore-plot-3 .js-plotly-plot');
  return g && g._fullLayout?.scene?._scene?.glplot && g.checkVisibility({visibilityProperty: true})
         && g.closest('.st-key-explore-plot-3').getBoundingClientRect().height > 100; }"""


def _view(browser, url: str) -> dict:
    """One fresh session: the page, the hovers, the 3-D switch."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        t = time.perf_counter()
        page.goto(url + "/explore")
        page.wait_for_function(f"() => document.querySelector('{PLOT}')?._fullLayout",
                               timeout=600_000, polling=50)
        drawn = time.perf_counter() - t
        page.wait_for_function(f"() => document.querySelector('{PLOT}').__imgrecHover",
                               timeout=600_000, polling=50)
        ready = time.perf_counter() - t
        hovers = []
        for x, y in page.locator(PLOT).evaluate(POINTS):
            page.mouse.move(5, 5)  # off the plot
            page.wait_for_selector(TIP, state="hidden")
            t = time.perf_counter()
            page.mouse.move(x, y)
            page.wait_for_selector(TIP, state="visible", timeout=60_000)
            hovers.append(time.perf_counter() - t)
        page.mouse.move(5, 5)
        # the 3-D scene is built ahead once the page is idle; then the switch only shows it
        page.wait_for_function("() => document.querySelector('.st-key-explore-plot-3 "
                               ".js-plotly-plot')?._fullLayout?.scene?._scene?.glplot",
                               timeout=600_000, polling=50)
        t = time.perf_counter()
        page.get_by_text("3-D", exact=True).click()
        page.wait_for_function(SHOWN_3D, timeout=600_000, polling=50)
        three = time.perf_counter() - t
        page.get_by_text("3-D", exact=True).click()  # leave the session in 2-D
        page.wait_for_function(f"() => !({SHOWN_3D})()", timeout=600_000, polling=50)
        return {"drawn_s": drawn, "hover_ready_s": ready, "hovers_s": hovers, "to_3d_s": three}
    finally:
        page.close()


def run(args) -> dict:
    from playwright.sync_api import sync_playwright

    index_dir = Path(args.index).resolve()
    proc, base = _serve(index_dir, Path(args.work).resolve() / "explore-streamlit.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                views = [_view(browser, base) for _ in range(args.repeat + 1)]
            finally:
                browser.close()
    finally:
        _stop(proc)

    def summary(v: dict) -> dict:
        return {"drawn_s": round(v["drawn_s"], 2), "hover_ready_s": round(v["hover_ready_s"], 2),
                "hover_median_ms": round(1000 * statistics.median(v["hovers_s"])),
                "hover_max_ms": round(1000 * max(v["hovers_s"])), "hovers": len(v["hovers_s"]),
                "to_3d_s": round(v["to_3d_s"], 2)}

    later = sorted(views[1:], key=lambda v: v["hover_ready_s"])
    return {"benchmark": "explore-browser", "machine": machine(), "index": str(index_dir),
            "browser": "Chromium (playwright), no GPU (--disable-gpu)",
            "measured": "a fresh session opens /explore: until the 2-D scatter is drawn "
                        "(drawn_s) and answers hovers (hover_ready_s); from the mouse reaching "
                        "a point until its thumbnail shows (one point per colour group); from "
                        "the 3-D switch until its scene shows (built ahead while idle)",
            "first_view": summary(views[0]), "later_view": summary(later[len(later) // 2])}
