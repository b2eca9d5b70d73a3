"""The dashboard in a real browser: `streamlit run app.py` driven by Playwright + Chromium.

Uses Debian's Chromium at /usr/bin/chromium (never a downloaded browser) and skips with a
visible reason when it is missing. The tests share one server on a small prepared index
and run in file order: the first request goes to a deep link, as a bookmark would.
Screenshots of every page land in $IMGREC_SCREENSHOTS (default: a temporary folder).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgrec import build_index

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# set IMGREC_SCREENSHOTS=docs/screenshots to refresh the README's pictures
SHOTS = Path(os.environ.get("IMGREC_SCREENSHOTS") or tempfile.mkdtemp(prefix="imgrec-shots-"))
K = 5
OUTSIDE: list[str] = []  # requests the pages made to anything but the dashboard itself
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} "
                    "(install Debian's `chromium` package; .ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="browser test skipped: playwright missing")
    return CHROMIUM


@dataclass
class Server:
    """A running dashboard: its URL, its process and its log file."""

    url: str
    proc: subprocess.Popen
    log: Path


def start_like_make_run(env: dict[str, str], log: Path) -> Server:
    """`streamlit run app.py --server.port PORT --server.address 127.0.0.1` from the checkout,
    exactly as `make run` does (no other flags, no STREAMLIT_* variables: the rest comes from
    .streamlit/config.toml)."""
    port = _free_port()
    env = {k: v for k, v in env.items() if not k.startswith("STREAMLIT_")}
    streamlit = Path(sys.executable).with_name("streamlit")
    fh = log.open("w")
    proc = subprocess.Popen([str(streamlit), "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return Server(url, proc, log)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            pytest.fail("streamlit did not start:\n" + log.read_text())
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def served(chromium: Path, tiny_gallery: Path, app_embedder,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The dashboard started as `make run` does, against an index of its own (it gets rebuilt)."""
    tmp = tmp_path_factory.mktemp("browser")
    gallery = tmp / "gallery"
    shutil.copytree(tiny_gallery, gallery)
    index_dir = tmp / "index"
    build_index(gallery, index_dir, embedder=app_embedder, workers=0)
    env = {**os.environ, "IMGREC_INDEX_DIR": str(index_dir), "IMGREC_DEMO_DIR": str(tmp / "demo")}
    srv = start_like_make_run(env, tmp / "streamlit.log")
    try:
        yield srv
    finally:
        stop(srv.proc)
        text = srv.log.read_text()
        assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def server(served: Server) -> str:
    return served.url


@pytest.fixture(scope="module")
def page(server: str, chromium: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1440, "height": 1000})
        pg.set_default_timeout(90_000)
        pg.on("request", lambda r: OUTSIDE.append(r.url)
              if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        yield pg
        browser.close()


def settle(pg) -> None:
    """Wait until Streamlit has finished running the script."""
    pg.wait_for_selector('[data-testid="stApp"]')
    time.sleep(0.5)
    pg.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !/Running|Connecting/.test(document.querySelector('[data-testid=\"stStatusWidget\"]')"
        ".innerText)")
    time.sleep(0.5)


def shoot(pg, name: str) -> None:
    """Screenshot the whole page (Streamlit scrolls inside its main pane, so grow the window)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = pg.viewport_size
    height = pg.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    pg.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height), 4000)})
    time.sleep(1.0)  # let plotly and the images re-lay out
    pg.screenshot(path=str(SHOTS / f"{name}.png"))
    pg.set_viewport_size(size)
    time.sleep(0.3)


def nav(pg, server: str, title: str) -> None:
    """Open the page ``title`` from the sidebar (the app first, where this test is the
    first to use the browser page, so each test also runs alone)."""
    if not pg.url.startswith(server):
        pg.goto(server)
        settle(pg)
    pg.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    pg.wait_for_selector(f'h1:has-text("{title}")')
    settle(pg)


def lasso_all(pg, plot) -> None:
    """Draw a lasso around the whole plot area of ``plot`` (a plotly chart locator),
    choosing the lasso in the plot's toolbar first where it is not the drag mode."""
    if plot.evaluate("gd => gd._fullLayout.dragmode") != "lasso":
        plot.hover()
        plot.locator('.modebar-btn[data-val="lasso"]').click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0, x1, y1 = box["x"] + 3, box["y"] + 3, box["x"] + box["width"] - 3, box["y"] + box["height"] - 3
    pg.mouse.move(x0, y0)
    pg.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
        pg.mouse.move(x, y, steps=8)
    pg.mouse.up()


def expect(locator):
    """Playwright's retrying assertions (imported here: playwright is optional)."""
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def no_exception(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert "Unexpected error" not in pg.inner_text("body")


def test_deep_link_on_a_fresh_server_gets_the_router(page, server: str) -> None:
    page.goto(f"{server}/explore")  # the first request this server sees
    page.wait_for_selector('h1:has-text("Explore")')
    page.wait_for_selector('[data-testid="stSidebar"] >> text=efficientnet-lite0')
    settle(page)
    links = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
    assert [t.split()[-1] for t in links] == ["Search", "Explore", "Insights", "Dataset"]
    page.wait_for_selector('[data-testid="stPlotlyChart"] .js-plotly-plot')  # the page itself ran
    no_exception(page)
    shoot(page, "explore-deep-link")


def test_a_bookmarked_search_url_restores_the_view_on_a_fresh_load(page, server: str) -> None:
    """``/search?...`` (the Search page is served at ``/``) opens the Search page with the
    view the link names, in a browser session of its own; the URL keeps the view."""
    query = "coffee/coffee_color.jpg"
    fresh = page.context.browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        fresh.set_default_timeout(90_000)
        fresh.goto(f"{server}/search?method=color&k=3&q={query}")
        fresh.wait_for_selector('h1:has-text("Search")')
        fresh.wait_for_selector("text=Searching with gallery image")
        fresh.wait_for_selector("text=#3")
        settle(fresh)
        body = fresh.inner_text("body")
        assert "not found" not in body.lower() and "Page not found" not in body
        no_exception(fresh)
        row = fresh.locator(".st-key-results-q0")
        text = row.inner_text()
        assert re.findall(r"#(\d+) · ", text)[:3] == ["1", "2", "3"] and "#4" not in text
        assert query in text and "cosine" not in text  # the colour method, as the link asks
        current = fresh.locator('[data-testid="stSidebarNav"] a[aria-current="page"]')
        assert current.inner_text().strip().endswith("Search")
        fresh.wait_for_function("() => location.search.includes('k=3')")
        url = fresh.url
        assert "method=color" in url and "k=3" in url and "q=coffee" in url, url
    finally:
        fresh.close()


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                out.add(addr)
    return out


def test_the_server_listens_on_localhost_only(served: Server) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 or ::


def test_idle_server_uses_little_cpu_and_logs_no_watcher(page, served: Server) -> None:
    """One tab open on a page, nothing happening: the server stays quiet (it used to burn
    ~13 CPU-seconds per 20 s in its file watcher and print "Inotify queue overflowed")."""
    page.goto(f"{served.url}/insights")
    page.wait_for_selector('h1:has-text("Insights")')
    settle(page)
    before = cpu_seconds(served.proc.pid)
    time.sleep(20)
    used = cpu_seconds(served.proc.pid) - before
    log = served.log.read_text()
    assert used < 2.0, f"the idle server used {used:.1f} CPU-seconds in 20 s"
    assert not re.search(r"inotify|watchdog|watcher", log, re.I), log
    no_exception(page)


def test_search_upload_shows_k_results_with_scores(page, server: str, tiny_gallery: Path) -> None:
    page.goto(server)
    page.wait_for_selector('h1:has-text("Search")')
    settle(page)
    page.set_input_files('input[type=file]', str(tiny_gallery / "coffee/coffee_color.jpg"))
    page.wait_for_selector('text=Query 1: coffee_color.jpg')
    page.wait_for_selector(f'text=#{K}')
    settle(page)
    no_exception(page)
    row = page.locator(".st-key-results-q0")
    assert "Query 1: coffee_color.jpg" in row.inner_text()
    images = row.locator('[data-testid="stImage"] img')
    assert images.count() == K + 1  # the query, then k results
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    text = row.inner_text()
    scores = re.findall(r"#(\d+) · cosine (\d\.\d{3})", text)
    assert [int(r) for r, _ in scores] == list(range(1, K + 1))
    assert scores[0][1] == "1.000" and "coffee/coffee_color.jpg" in text
    assert row.get_by_role("button", name=re.compile("More like this")).count() == K
    one_line = page.evaluate(
        "() => [...document.querySelectorAll('.imgrec-path')].map(e => "
        "e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).fontSize))")
    assert one_line and max(one_line) < 2, one_line  # file names never wrap mid-word
    shoot(page, "search")


def test_a_result_opens_its_detail_and_zooms_into_the_original(page, tiny_gallery: Path
                                                                ) -> None:
    """The first card of the search above: its detail dialog (facts, labels, the strip of
    nearest images, "Search with this image"), then a zoom cut from the original."""
    from PIL import Image

    from imgrec.app.formatting import format_bytes

    first = "coffee/coffee_color.jpg"
    page.locator(".st-key-detail-q0-1 button").first.click()
    dialog = page.locator('[role="dialog"]')
    dialog.wait_for()
    dialog.locator("text=Nearest images").wait_for()  # after the duplicate group is found
    settle(page)
    text = dialog.inner_text()
    with Image.open(tiny_gallery / first) as im:
        width, height = im.size
    size = format_bytes((tiny_gallery / first).stat().st_size)
    for want in (f"Path: {first}", f"File size: {size}", "Format: JPEG (decoded by pillow)",
                 f"Dimensions: {width:,} × {height:,} px (landscape)", "Date taken:",
                 "Labels:", "espresso"):
        assert want in text, (want, text)
    images = dialog.locator('[data-testid="stImage"] img')
    strip = dialog.locator('[class*="st-key-detail_nb_"]')  # one widget per neighbour
    expect(strip).to_have_count(10)  # its 10 nearest images (12 in the gallery)
    assert images.count() >= 1 + 10  # the image, its duplicate group's members, the strip
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
    fit = images.first.evaluate("img => [img.src, img.naturalWidth, img.naturalHeight]")
    assert fit[1:] == [width, height]  # the whole image, fit to the dialog
    expect(dialog.get_by_role("button", name=re.compile("Search with this image"))).to_have_count(1)
    no_exception(page)

    zoom = dialog.get_by_role("slider", name="Zoom")
    zoom.focus()
    for _ in range(4):  # fit, 1.5x, 2x, 3x, 4x
        page.keyboard.press("ArrowRight")
    caption = dialog.locator("text=/^Zoom 4× · pixels/")
    caption.wait_for()
    settle(page)
    left, right = (round(width / 2 - width / 8), round(width / 2 - width / 8) + round(width / 4))
    assert caption.inner_text().startswith(f"Zoom 4× · pixels {left:,}–{right:,} × "), \
        caption.inner_text()
    zoomed = images.first.evaluate("img => [img.src, img.naturalWidth, img.naturalHeight]")
    assert zoomed[0] != fit[0] and zoomed[1] == 1200  # the window, enlarged on the server
    assert zoomed[2] == round(round(height / 4) * 1200 / round(width / 4))
    shoot(page, "detail-zoom")
    across = dialog.get_by_role("slider", name="Across")
    across.focus()
    page.keyboard.press("Home")  # the window moves to the left edge
    dialog.locator("text=/^Zoom 4× · pixels 0–/").wait_for()
    settle(page)
    no_exception(page)

    dialog.get_by_role("button", name=re.compile("Search with this image")).click()
    page.wait_for_selector(f"text=Searching with gallery image {first}")
    expect(page.locator('[role="dialog"]')).to_have_count(0)
    page.wait_for_selector(f"text=#{K}")
    settle(page)
    no_exception(page)


POINT = """gd => { const t = gd._fullData.find(t => t.name.startsWith('cluster')), i = t.x.length - 1;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
  return {x: r.left + xa._offset + xa.l2p(t.x[i]), y: r.top + ya._offset + ya.l2p(t.y[i]),
          path: t.hovertext[i], row: t.customdata[i]}; }"""


PLOT_2D = ".st-key-explore-plot-2 .js-plotly-plot"  # the 3-D one is built ahead, hidden
TIP = '[data-testid="imgrec-hover-tip"]'


def hover_point(pg, plot) -> dict:
    """Move the mouse onto the last point of the first cluster of the 2-D ``plot`` and wait
    for the thumbnail beside the cursor to show it (the way there may cross another point,
    whose thumbnail shows first): that point's screen position, path and row."""
    plot.scroll_into_view_if_needed()
    point = plot.evaluate(POINT)
    pg.mouse.move(point["x"] + 40, point["y"] + 40)
    pg.mouse.move(point["x"], point["y"], steps=4)
    pg.locator(TIP).wait_for(state="visible")
    pg.wait_for_function("([sel, row]) => document.querySelector(sel)?.dataset.row === row",
                         arg=[TIP, str(point["row"])], timeout=10_000)
    return point


def test_explore_scatter_renders_and_selection_shows_images(page, server: str) -> None:
    if not page.url.startswith(server):  # run alone: no search yet for Explore to highlight
        page.goto(f"{server}/search?k=5&q=coffee/coffee_color.jpg")
        page.wait_for_selector("text=#5")
        settle(page)
    nav(page, server, "Explore")
    plot = page.locator(PLOT_2D)
    plot.wait_for()
    page.wait_for_function(f"() => document.querySelector('{PLOT_2D}')?._fullLayout")
    info = plot.evaluate("""gd => ({types: gd._fullData.map(t => t.type),
                                    names: gd._fullData.map(t => t.name),
                                    points: gd._fullData.filter(t => t.name.startsWith('cluster'))
                                              .reduce((n, t) => n + t.x.length, 0),
                                    canvases: gd.querySelectorAll('canvas').length})""")
    assert set(info["types"]) == {"scattergl"}
    assert info["points"] == 12 and info["canvases"] > 0
    assert info["names"][-2:] == ["search results", "queries"]  # the search is highlighted
    assert "WebGL is not supported" not in page.inner_text("body")
    no_exception(page)
    shoot(page, "explore")

    # hovering a point shows its own thumbnail beside the cursor, above plotly's label
    page.wait_for_function(f"() => document.querySelector('{PLOT_2D}').__imgrecHover")
    point = hover_point(page, plot)
    tip = page.locator(TIP)
    shown = tip.evaluate("t => ({row: t.dataset.row, box: t.getBoundingClientRect().toJSON(),"
                         " img: [t.firstChild.complete, t.firstChild.naturalWidth,"
                         " t.firstChild.src.slice(0, 22)]})")
    assert shown["row"] == str(point["row"]) and shown["img"] == [True, 128, "data:image/jpeg;base64"]
    box = shown["box"]
    assert box["width"] >= 128 and box["x"] <= point["x"] <= box["x"] + box["width"]
    assert box["y"] + box["height"] <= point["y"]  # above the cursor, clear of the point
    label = plot.locator(".hoverlayer .hovertext").first
    expect(label).to_contain_text(point["path"])  # plotly's label still names the file
    page.screenshot(path=str(SHOTS / "explore-hover.png"))
    page.mouse.move(5, 5)  # off the plot: the thumbnail goes
    expect(tip).to_be_hidden()

    # lasso around the whole plot area: every point is selected, thumbnails appear below
    lasso_all(page, plot)
    page.wait_for_selector("text=12 selected images")
    settle(page)
    expect(page.get_by_role("button", name=re.compile("Use as query"))).to_have_count(12)
    shoot(page, "explore-selection")
    page.get_by_role("button", name=re.compile("Use as query")).first.click()
    page.wait_for_selector('h1:has-text("Search")')
    page.wait_for_selector("text=Searching with gallery image")
    page.wait_for_selector(f"text=#{K}")
    settle(page)
    no_exception(page)


def apart_and_inside(pg, plot) -> list[dict]:
    """The screen boxes of the thumbnails drawn on ``plot``, asserting that no two overlap
    and that each lies inside the plot area (not cut at its edge)."""
    area = plot.locator(".nsewdrag").first.bounding_box()
    boxes = plot.evaluate("gd => [...gd.querySelectorAll('.layer-above .imagelayer image')]"
                          ".map(e => { const r = e.getBoundingClientRect();"
                          " return {x: r.x, y: r.y, w: r.width, h: r.height}; })")
    for i, a in enumerate(boxes):
        assert a["w"] >= 40 and a["h"] >= 40, a  # readable, not the 25 px of before
        assert area["x"] - 1 <= a["x"] and a["x"] + a["w"] <= area["x"] + area["width"] + 1, a
        assert area["y"] - 1 <= a["y"] and a["y"] + a["h"] <= area["y"] + area["height"] + 1, a
        for b in boxes[:i]:
            assert (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]), (a, b)
    return boxes




def test_explore_point_opens_the_detail_view_and_searches_from_it(page, server: str) -> None:
    """A click on a point opens the image's detail dialog; Search with this image runs the
    search on the Search page. With representatives, their thumbnails are readable and
    neither overlap nor leave the plot."""
    nav(page, server, "Explore")
    plot = page.locator(PLOT_2D)
    page.wait_for_function(f"() => document.querySelector('{PLOT_2D}')?._fullLayout")
    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="Clusters with representatives").click()
    page.wait_for_function(f"() => document.querySelectorAll('{PLOT_2D} .imagelayer image')"
                           ".length > 0")
    settle(page)
    k = plot.evaluate("gd => gd._fullData.filter(t => t.name.startsWith('cluster')).length")
    assert len(apart_and_inside(page, plot)) == k >= 2
    shoot(page, "explore-representatives")
    point = plot.evaluate(POINT)
    page.mouse.click(point["x"], point["y"])
    dialog = page.get_by_role("dialog")
    # the dialog looks for the image's duplicate group first (the first scan reads files)
    dialog.locator("text=Nearest images").wait_for(timeout=120_000)
    expect(dialog).to_contain_text(f"Path: {point['path']}")
    settle(page)
    assert dialog.locator('[data-testid="stImage"] img').first.evaluate(
        "img => img.complete && img.naturalWidth > 0")
    shoot(page, "explore-detail")
    dialog.get_by_role("button", name="Search with this image").click()
    page.wait_for_selector('h1:has-text("Search")')
    page.wait_for_selector(f"text=Query 1: {point['path']}")
    page.wait_for_selector(f"text=#{K}")
    settle(page)
    no_exception(page)


#: a plot is on screen: laid out, and neither it nor its container hidden
VISIBLE = ("g => g.checkVisibility({visibilityProperty: true})"
           " && g.getBoundingClientRect().width > 100"
           " && g.closest('[class*=\"st-key-explore-plot\"], [data-testid=\"stMain\"]')"
           ".getBoundingClientRect().height > 100")
SCENE = "g => g._fullLayout?.scene?._scene?.glplot"
SHOWN_3D = (f"() => [...document.querySelectorAll('.js-plotly-plot')].find(g => ({SCENE})(g)"
            f" && ({VISIBLE})(g))")
BUILT_3D = f"() => [...document.querySelectorAll('.js-plotly-plot')].find({SCENE})"


def coloured_spots(png: bytes, limit: int = 40) -> list[tuple[int, int]]:
    """Pixel positions of strongly coloured spots in a screenshot (the markers of a scene:
    its axes, grid and background are grey), the most saturated first."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        hsv = np.asarray(im.convert("RGB").convert("HSV"), np.int32)
    score = hsv[..., 1] * (hsv[..., 2] > 60)
    ys, xs = np.nonzero(score > 120)
    order = np.argsort(-score[ys, xs])[:limit]
    return [(int(xs[i]), int(ys[i])) for i in order]


def click_a_3d_point(pg) -> dict:
    """Hover the coloured spots of the shown 3-D scene until a point's thumbnail appears,
    then click there: that point's row and path."""
    scene = pg.locator(".st-key-explore-plot-3 .js-plotly-plot")
    box = scene.bounding_box()
    area = scene.evaluate("gd => gd._fullLayout._size")  # the scene, without the legend
    shot = pg.screenshot(clip={"x": box["x"] + area["l"], "y": box["y"] + area["t"],
                               "width": area["w"], "height": area["h"]})
    for sx, sy in coloured_spots(shot):
        x, y = box["x"] + area["l"] + sx, box["y"] + area["t"] + sy
        pg.mouse.move(x + 3, y + 3)
        pg.mouse.move(x, y, steps=2)
        time.sleep(0.2)
        if pg.locator(TIP).is_visible():
            row = pg.locator(TIP).get_attribute("data-row")
            path = scene.evaluate("(gd, row) => { for (const t of gd._fullData) {"
                                  " const i = (t.customdata || []).indexOf(row);"
                                  " if (i >= 0) return t.hovertext[i]; } }", int(row))
            pg.screenshot(path=str(SHOTS / "explore-3d-hover.png"))
            pg.mouse.click(x, y)
            return {"row": int(row), "path": path}
    raise AssertionError("no 3-D point showed its thumbnail")


def test_explore_3d_toggle_keeps_its_scene(page, server: str) -> None:
    """The 3-D scene is built ahead, hidden, once the 2-D page is drawn; switching 3-D on
    and off shows that same WebGL scene, not a new one (building one took seconds at every
    toggle); hovering a 3-D point shows its thumbnail, and a click opens it."""
    nav(page, server, "Explore")
    page.wait_for_function(f"() => ({BUILT_3D})() && !({SHOWN_3D})()")  # built, hidden
    page.evaluate(f"() => {{ ({BUILT_3D})().__kept = true; }}")  # mark this scene's element
    page.get_by_text("3-D", exact=True).click()
    page.wait_for_function(f"({SHOWN_3D})()")
    settle(page)
    assert page.evaluate(f"() => ({SHOWN_3D})().__kept === true")  # the one built ahead
    no_exception(page)
    shoot(page, "explore-3d")
    page.get_by_text("3-D", exact=True).click()
    page.wait_for_function(f"() => !({SHOWN_3D})()")
    settle(page)
    shown = page.evaluate(f"() => [...document.querySelectorAll('.js-plotly-plot')]"
                          f".filter({VISIBLE}).map(g => g._fullData[0].type)")
    assert shown == ["scattergl"]  # only the 2-D plot is visible
    page.get_by_text("3-D", exact=True).click()
    page.wait_for_function(f"({SHOWN_3D})()")
    settle(page)
    assert page.evaluate(f"() => ({SHOWN_3D})().__kept === true")  # the same scene again

    point = click_a_3d_point(page)
    dialog = page.get_by_role("dialog")
    dialog.locator("text=Nearest images").wait_for(timeout=120_000)
    expect(dialog).to_contain_text(f"Path: {point['path']}")
    expect(page.locator(TIP)).to_be_hidden()  # the thumbnail does not cover the dialog
    settle(page)
    no_exception(page)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    page.get_by_text("3-D", exact=True).click()  # leave the page in 2-D
    settle(page)
    no_exception(page)


def section_button(pg, name: str):
    """An option of a segmented control on the main pane."""
    return pg.locator('[data-testid="stMain"] button', has_text=re.compile(rf"^{name}$")).first


def test_insights_sections_and_the_neighbour_graph_in_webgl(page, server: str) -> None:
    nav(page, server, "Insights")
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullLayout")
    settle(page)
    bars = page.locator(".js-plotly-plot").evaluate("gd => gd._fullData.map(t => t.type)")
    assert bars == ["bar"]
    no_exception(page)
    shoot(page, "insights-labels")
    for section, marker in (("Clusters", "text=Cluster 0"), ("Duplicates", "text=never deletes")):
        section_button(page, section).click()
        page.wait_for_selector(marker)
        settle(page)
        no_exception(page)
        shoot(page, f"insights-{section.lower()}")

    section_button(page, "Neighbour graph").click()
    page.wait_for_selector("text=Louvain communities")
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullData?.[0]?.mode"
                           " === 'lines'")
    settle(page)
    plot = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot')
    info = plot.evaluate("""gd => ({types: gd._fullData.map(t => t.type),
                                    modes: gd._fullData.map(t => t.mode),
                                    nodes: gd._fullData.slice(1).reduce((n, t) => n + t.x.length, 0),
                                    canvases: gd.querySelectorAll('canvas').length})""")
    assert set(info["types"]) == {"scattergl"} and info["modes"][0] == "lines"
    assert info["nodes"] == 12 and info["canvases"] > 0
    assert "WebGL is not supported" not in page.inner_text("body")
    no_exception(page)
    # each community's representative, readable, apart, inside; the toolbar (shown on
    # hover) leaves the first legend entry free
    assert len(apart_and_inside(page, plot)) == len(info["types"]) - 1
    plot.hover()
    bar = plot.locator(".modebar").bounding_box()
    first = plot.locator(".legend .traces").first.bounding_box()
    assert bar["y"] + bar["height"] <= first["y"], (bar, first)
    # hovering a node shows its thumbnail; a click on it opens its detail dialog (before
    # the lasso below: plotly's selection outline then takes the pointer)
    plot.scroll_into_view_if_needed()
    node = plot.evaluate(POINT.replace("t.name.startsWith('cluster')", "t.mode === 'markers'"))
    page.mouse.move(node["x"] + 40, node["y"] + 40)
    page.mouse.move(node["x"], node["y"], steps=4)
    tip = page.locator(TIP)
    tip.wait_for(state="visible")
    assert tip.get_attribute("data-row") == str(node["row"])
    assert tip.locator("img").evaluate("i => i.complete && i.naturalWidth === 128")
    page.mouse.click(node["x"], node["y"])
    dialog = page.get_by_role("dialog")
    dialog.locator("text=Nearest images").wait_for(timeout=120_000)
    expect(dialog).to_contain_text(f"Path: {node['path']}")
    settle(page)
    no_exception(page)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    lasso_all(page, plot)
    page.wait_for_selector("text=12 selected")
    settle(page)
    expect(page.get_by_role("button", name=re.compile("Use as query"))).to_have_count(12)
    shoot(page, "insights-graph")


def test_a_duplicate_decided_in_the_browser(page, server: str) -> None:
    nav(page, server, "Insights")
    section_button(page, "Duplicates").click()
    page.wait_for_selector("text=★ Keeper")
    settle(page)
    assert "same picture" in page.inner_text('[data-testid="stMain"]')
    page.get_by_role("button", name=re.compile(r"^Not dup\.$")).first.click()
    page.wait_for_selector("text=Remembered:")
    page.wait_for_selector("text=Your decisions (1)")
    settle(page)
    no_exception(page)
    shoot(page, "insights-duplicates-decided")


def test_dataset_page_and_rebuild_with_live_progress(page, server: str) -> None:
    nav(page, server, "Dataset")
    body = page.inner_text("body")
    assert "Indexed images" in body and "Skipped files" in body
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "12"
    shoot(page, "dataset")
    page.get_by_role("button", name=re.compile("Rebuild dataset")).click()
    page.wait_for_selector("text=Indexed 12 images", timeout=120_000)
    settle(page)
    no_exception(page)
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "12"


def test_no_page_fetched_anything_from_outside() -> None:
    """The dashboard works offline: no page asked for a resource outside the server."""
    assert not OUTSIDE, sorted(set(OUTSIDE))
