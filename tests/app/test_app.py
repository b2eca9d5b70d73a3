"""Dashboard tests with Streamlit's AppTest: every page, uploads, methods, rebuilds.

All tests run the real app script (``app.py`` routing to ``imgrec/app/pages/``) against a real index of a tiny
gallery built with the real CNN (see conftest.py).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from imgrec import Index, Stored, build_index
from imgrec.build.lock import BuildLock

CORRUPT = "broken.jpg"  # the corrupt file every test gallery holds (see conftest.py)
pytestmark = pytest.mark.slow

PAGES = ("imgrec/app/pages/search.py", "imgrec/app/pages/explore.py",
         "imgrec/app/pages/dataset.py")
CARD = re.compile(r'<div class="imgrec-card imgrec-(\w+)">(?:<b>(.*?)</b>)?(?: · )?(.*?)'
                  r'(?:<br>)?(?:<span class="imgrec-path">(.*)</span>)?</div>')


def assert_clean(at) -> None:
    """No exception element and no 'unexpected error' message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Unexpected" in e.value]


def cards(at, root=None) -> list[tuple[str, str, str, str]]:
    """(kind, head, detail, path) of every thumbnail label on the page (or under ``root``,
    e.g. the whole tree with its dialogs), in order."""
    out = []
    for m in (root if root is not None else at.main).markdown:
        if (c := CARD.fullmatch(m.value)) is not None:
            path = html.unescape((c[4] or "").replace("<wbr>", ""))
            out.append((c[1], html.unescape(c[2] or ""), html.unescape(c[3] or ""), path))
    return out


def result_rows(at, root=None) -> list[list[tuple[int, str, str]]]:
    """The result grid as rows of (rank, score text, path), one row per query (+ combined);
    ``root=at``: with the rows of an open dialog."""
    rows: list[list[tuple[int, str, str]]] = []
    for kind, head, detail, path in cards(at, root):
        if kind in ("query", "combined"):
            rows.append([])
        elif kind == "hit" and rows:
            rows[-1].append((int(head.lstrip("#")), detail, path))
    return rows


def paths_of(row: list[tuple[int, str, str]]) -> list[str]:
    return [p for _, _, p in row]


def upload(at, files: list[tuple[str, bytes]]):
    at.file_uploader[0].set_value([(n, d, "image/jpeg") for n, d in files])
    return at.run()


def plotly_spec(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def wait_for_build(at, index_dir: Path, timeout: float = 120) -> None:
    """Let the background build of ``index_dir`` finish, then rerun the page."""
    from imgrec.app.resources import get_runner

    state = get_runner().wait(index_dir, timeout)
    assert state is not None and not state.running
    for _ in range(3):  # the page notices the end and reruns itself once
        at.run()
        time.sleep(0.1)


# ---- without an index ----------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_every_page_without_index(make_app, tmp_path: Path, page: str) -> None:
    at = make_app(tmp_path / "no-index")
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert_clean(at)
    text = " ".join(i.value for i in at.info)
    assert "no index" in text.lower()
    assert any(b.label == "Build the demo gallery" for b in at.button)
    assert "no index" in " ".join(c.value for c in at.sidebar.caption).lower()
    if page == PAGES[0]:  # the search page offers the Dataset page too
        links = [e for e in at.main.get("page_link")]
        assert links and "Dataset" in links[0].proto.label


def test_damaged_index_is_a_message_not_a_traceback(make_app, tmp_path: Path) -> None:
    broken = tmp_path / "broken-index"
    (broken / "v-1").mkdir(parents=True)
    (broken / "CURRENT").write_text("v-1")
    at = make_app(broken)
    at.run()
    assert_clean(at)
    assert "manifest" in " ".join(i.value for i in at.info)


# ---- with an index -------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_every_page_with_index(make_app, tiny_index: Path, tiny_gallery: Path, page: str) -> None:
    at = make_app(tiny_index)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert_clean(at)
    side = " ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.caption)
    assert "**12** images" in side and "efficientnet-lite0" in side and str(tiny_gallery) in side
    if page == "imgrec/app/pages/search.py":
        assert at.file_uploader[0].accept_multiple_files
        assert "Drop one to five images" in at.info[0].value
    elif page == "imgrec/app/pages/explore.py":
        spec = plotly_spec(at)
        gallery = [t for t in spec["data"] if t["type"] == "scattergl"]
        assert sum(len(t["customdata"]) for t in gallery) == 12
        assert "PC1" in at.main.caption[0].value and "% of the variance" in at.main.caption[0].value
    else:
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Indexed images"] == "12"
        assert metrics["Skipped files"] == "1"
        assert metrics["Formats"] == "2"  # JPEG and TIFF
        assert "**Backbone:** `efficientnet-lite0`" in " ".join(m.value for m in at.main.markdown)
        skipped = at.dataframe[1].value
        assert list(skipped["file"]) == [CORRUPT]
        assert "not an image" in skipped["reason"][0]
        formats = at.dataframe[0].value
        assert int(formats["images"].sum()) == 12
        assert not at.button(key="rebuild").disabled


def test_the_cnn_warms_in_the_background_once_per_process(make_app, tiny_index: Path) -> None:
    """Opening any page starts loading the weights (12): no search is needed, and every
    session and the opened index share the one model."""
    from imgrec.app import resources

    resources._warmup.clear()
    resources._embedder.clear()
    resources._open_index.clear()
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    assert_clean(at)
    warm = resources.warm_embedder()
    assert warm.done.wait(120) and warm.error is None
    assert warm.embedder is resources.get_embedder() is resources.get_embedder("efficientnet-lite0")
    assert warm.embedder._net is not None  # the weights are in
    assert warm.thread.name == "imgrec-warm-efficientnet-lite0" and not warm.thread.is_alive()
    make_app(tiny_index).run()  # a second session: the same warm-up, no second thread
    assert resources.warm_embedder() is warm
    idx, _ = resources.load_index(tiny_index)
    assert idx is not None and idx.embedder is warm.embedder


# ---- uploads -------------------------------------------------------------------------------


def test_upload_one_image(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    assert_clean(at)
    rows = result_rows(at)
    assert len(rows) == 1 and len(rows[0]) == 5
    rank, score, path = rows[0][0]
    assert (rank, path) == (1, "chelsea/chelsea_color.jpg")  # a gallery file finds itself
    assert score == "cosine 1.000"
    assert [r for r, _, _ in rows[0]] == [1, 2, 3, 4, 5]
    assert sum(p.startswith("chelsea/") for p in paths_of(rows[0])[:4]) == 4
    assert any(m.value.startswith("**Query 1: cat.jpg**") for m in at.markdown)
    assert ("query", "query", "", "cat.jpg") in cards(at)
    assert at.get("download_button")  # CSV export offered


def test_scores_are_rated_against_the_gallery(make_app, tiny_index: Path, gallery_bytes) -> None:
    """Each card rates its score (strong / related / weak); a query nothing is close to
    says so (14.3)."""
    import io

    from PIL import Image
    from skimage import data as skdata

    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    assert_clean(at)
    bars = [m.value for m in at.main.markdown if 'class="imgrec-strength' in m.value]
    assert len(bars) == 5 and "strong match" in bars[0] and 'class="imgrec-strength imgrec-strong"' in bars[0]
    assert not [w for w in at.warning if "Nothing in the gallery" in w.value]
    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, "JPEG")
    upload(at, [("astronaut.jpg", buf.getvalue())])
    assert_clean(at)
    assert "Nothing in the gallery is close to this image" in " ".join(w.value for w in at.warning)
    bars = [m.value for m in at.main.markdown if 'class="imgrec-strength' in m.value]
    assert bars and all("weak match" in b for b in bars)


def test_upload_three_images(make_app, tiny_index: Path, tiny_gallery: Path, gallery_bytes,
                             app_embedder) -> None:
    at = make_app(tiny_index)
    at.run()
    files = [("a.jpg", gallery_bytes("chelsea/chelsea_color.jpg")),
             ("b.jpg", gallery_bytes("coffee/coffee_color.jpg")),
             ("c.jpg", gallery_bytes("rocket/rocket_color.jpg"))]
    upload(at, files)
    assert_clean(at)
    rows = result_rows(at)
    assert len(rows) == 4  # three queries + combined
    for row, fam in zip(rows[:3], ("chelsea", "coffee", "rocket"), strict=True):
        assert len(row) == 5 and row[0][2] == f"{fam}/{fam}_color.jpg"
    idx = Index.open(tiny_index, embedder=app_embedder)
    expect = idx.search([tiny_gallery / f"{f}/{f}_color.jpg" for f in ("chelsea", "coffee", "rocket")])
    assert paths_of(rows[3]) == [h.path for h in expect.combined]
    assert not at.warning


def test_upload_six_images_refuses_the_sixth(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    names = ["chelsea/chelsea_color.jpg", "coffee/coffee_color.jpg", "rocket/rocket_color.jpg",
             "chelsea/chelsea_blur.tiff", "coffee/coffee_blur.jpg", "rocket/rocket_blur.jpg"]
    upload(at, [(f"q{i + 1}.jpg", gallery_bytes(n)) for i, n in enumerate(names)])
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith("q6.jpg:") and "at most 5" in warnings[0]
    rows = result_rows(at)
    assert len(rows) == 6  # the first five queries + combined
    assert [row[0][2] for row in rows[:5]] == names[:5]
    titles = [m.value for m in at.markdown if m.value.startswith("**Query")]
    assert [t.split(":")[1].strip(" *") for t in titles] == [f"q{i}.jpg" for i in range(1, 6)]


def test_corrupt_upload_is_named_and_the_rest_searched(make_app, tiny_index: Path,
                                                       gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("good.jpg", gallery_bytes("coffee/coffee_color.jpg")),
                ("bad.jpg", b"\xff\xd8\xff\xe0 truncated jpeg"),
                ("empty.png", b"")])
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 2
    assert warnings[0].startswith("bad.jpg:") and warnings[1] == "empty.png: empty file (0 bytes)"
    rows = result_rows(at)
    assert len(rows) == 1 and rows[0][0][2] == "coffee/coffee_color.jpg"


# ---- method, metric, k ---------------------------------------------------------------------


def test_method_metric_and_k_change_results_as_the_api_says(make_app, tiny_index: Path,
                                                            tiny_gallery: Path, app_embedder) -> None:
    at = make_app(tiny_index)
    at.run()
    query = tiny_gallery / "rocket/rocket_color.jpg"
    upload(at, [("rocket.jpg", query.read_bytes())])
    idx = Index.open(tiny_index, embedder=app_embedder)

    def expect(**kw) -> list[str]:
        return [h.path for h in idx.search([str(query)], **kw).per_query[0]]

    at.slider(key="k").set_value(3).run()
    assert_clean(at)
    assert paths_of(result_rows(at)[0]) == expect(k=3)

    seen = {}
    for metric in ("euclidean", "manhattan", "all"):
        at.selectbox(key="metric").set_value(metric).run()
        assert_clean(at)
        row = result_rows(at)[0]
        assert paths_of(row) == expect(k=3, metric=metric), metric
        seen[metric] = row[0][1]
    assert seen["euclidean"].startswith("euclidean 0.000")
    assert seen["manhattan"].startswith("manhattan 0.00")
    assert seen["all"].startswith("cos 1.000 · L2")
    heads = " ".join(m.value for m in at.main.markdown)
    assert "**Top 3 of each metric**, their union" in heads  # a union may hold more than k

    at.selectbox(key="method").set_value("color").run()
    assert_clean(at)
    row = result_rows(at)[0]
    assert paths_of(row) == expect(k=3, method="color")
    assert all(score.startswith("χ² ") for _, score, _ in row)
    assert at.selectbox(key="metric_color").disabled

    at.selectbox(key="method").set_value("pca").run()
    assert paths_of(result_rows(at)[0]) == expect(k=3, method="pca")
    at.slider(key="pca_components").set_value(2).run()
    assert_clean(at)
    assert paths_of(result_rows(at)[0]) == expect(k=3, method="pca", pca_components=2)

    at.slider(key="k").set_value(12).run()  # two pages of ranks
    assert_clean(at)
    assert [r for r, _, _ in result_rows(at)[0]] == list(range(1, 11))
    at.segmented_control(key="result_page").set_value(1).run()
    assert [r for r, _, _ in result_rows(at)[0]] == [11, 12]


def test_more_like_this_searches_with_the_stored_image(make_app, tiny_index: Path,
                                                       gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes("coffee/coffee_color.jpg"))])
    target = result_rows(at)[0][2][2]
    at.button(key="more-q0-3").click().run()
    assert_clean(at)
    assert f"`{target}`" in " ".join(m.value for m in at.markdown)
    expect = Index.open(tiny_index).search([Stored(target)], k=5).per_query[0]
    rows = result_rows(at)
    assert len(rows) == 1 and paths_of(rows[0]) == [h.path for h in expect]
    assert rows[0][0][2] == target  # a stored query finds itself first
    at.button(key="clear_queries").click().run()
    assert not result_rows(at) and "Drop one to five images" in at.info[0].value


def test_the_uploader_always_shows_what_is_searched(make_app, tiny_index: Path,
                                                    gallery_bytes) -> None:
    """After "More like this" or "Clear" the uploader holds no file the page ignores."""
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes("coffee/coffee_color.jpg"))])
    first = at.file_uploader[0].key
    assert [f.name for f in at.session_state[first]] == ["cup.jpg"]
    at.button(key="more-q0-2").click().run()
    assert_clean(at)
    assert at.file_uploader[0].key != first and not at.session_state[at.file_uploader[0].key]
    assert "Searching with gallery image" in " ".join(m.value for m in at.markdown)
    upload(at, [("rocket.jpg", gallery_bytes("rocket/rocket_color.jpg"))])  # uploads win again
    assert result_rows(at)[0][0][2] == "rocket/rocket_color.jpg"
    assert "Searching with gallery image" not in " ".join(m.value for m in at.markdown)
    at.button(key="clear_queries").click().run()
    assert not at.session_state[at.file_uploader[0].key]
    assert not result_rows(at) and "Drop one to five images" in at.info[0].value


def test_the_view_lives_in_the_url(make_app, tiny_index: Path, tmp_path: Path) -> None:
    """Index, method, metric, k, label text and gallery queries survive a reload (issue 14.11)."""
    at = make_app(tmp_path / "default-index")  # the link names another index folder
    target = "coffee/coffee_color.jpg"
    at.query_params = {"index": str(tiny_index), "method": "color", "k": "3", "q": [target],
                       "label": "cup"}
    at.run()
    assert_clean(at)
    assert "**12** images" in " ".join(m.value for m in at.sidebar.markdown)
    assert at.selectbox(key="method").value == "color" and at.slider(key="k").value == 3
    assert at.text_input(key="label_query").value == "cup"
    rows = result_rows(at)  # the image query, then the label query "cup"
    assert len(rows) == 2 and [r for r, _, _ in rows[0]] == [1, 2, 3] and rows[0][0][2] == target
    assert all(score.startswith("probability ") for _, score, _ in rows[1])
    assert all(score.startswith("χ² ") for _, score, _ in rows[0])
    assert at.query_params["k"] == "3" and at.query_params["q"] == target
    at.selectbox(key="method").set_value("embedding").run()
    at.selectbox(key="metric").set_value("euclidean").run()
    at.slider(key="k").set_value(4).run()
    assert {k: at.query_params.get(k) for k in ("method", "metric", "k", "label", "index")} == {
        "method": None, "metric": "euclidean", "k": "4", "label": "cup", "index": str(tiny_index)}
    reloaded = make_app(tmp_path / "default-index")  # a new session opening the bookmark
    reloaded.query_params = dict(at.query_params)
    reloaded.run()
    assert_clean(reloaded)
    again = result_rows(reloaded)
    assert paths_of(again[0]) == paths_of(result_rows(at)[0]) and len(again[0]) == 4
    assert paths_of(again[1]) == paths_of(result_rows(at)[1])
    assert again[0][0][1].startswith("euclidean 0.000")


def test_a_link_to_a_folder_outside_the_allowed_roots_is_not_opened(make_app, tiny_index: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch) -> None:
    at = make_app(tmp_path / "allowed" / "index")
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    at.query_params = {"index": str(tiny_index), "k": "many"}
    at.run()
    assert_clean(at)
    note = " ".join(w.value for w in at.sidebar.warning)
    assert "not opened" in note and "is outside the folders" in note and "not a number" in note
    assert "no index" in " ".join(c.value for c in at.sidebar.caption).lower()


def test_random_gallery_image_button(make_app, tiny_index: Path) -> None:
    at = make_app(tiny_index)
    at.run()
    at.button(key="random_query").click().run()
    assert_clean(at)
    rows = result_rows(at)
    assert len(rows) == 1 and len(rows[0]) == 5


# ---- explore -------------------------------------------------------------------------------


def test_explore_options_and_highlights(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    at.switch_page("imgrec/app/pages/explore.py").run()
    assert_clean(at)
    spec = plotly_spec(at)
    names = [t["name"] for t in spec["data"]]
    assert names[-2:] == ["search results", "queries"]
    clusters = [t for t in spec["data"] if t["name"].startswith("cluster")]
    assert 2 <= len(clusters) <= 8 and all(t["type"] == "scattergl" for t in clusters)
    assert sorted(r for t in clusters for r in t["customdata"]) == list(range(12))
    assert spec["data"][-1]["hovertext"] == ["cat.jpg"]

    at.selectbox(key="explore_colour").set_value("folder").run()
    assert_clean(at)
    assert sorted(t["name"] for t in plotly_spec(at)["data"][:-2]) == ["chelsea", "coffee", "rocket"]
    at.selectbox(key="explore_colour").set_value("cluster").run()
    at.slider(key="explore_k").set_value(3).run()
    assert 2 <= len([t for t in plotly_spec(at)["data"] if t["name"].startswith("cluster")]) <= 3

    at.segmented_control(key="explore_source").set_value("color").run()
    assert_clean(at)
    assert "colour histograms" in at.main.caption[0].value

    at.toggle(key="explore_3d").set_value(True).run()
    assert_clean(at)
    assert "PC3" in at.main.caption[0].value
    captions = " ".join(c.value for c in at.main.caption)
    assert "switch 3-D off" in captions and "Draw a lasso" not in captions  # no contradiction
    # once shown, the 3-D figure stays on the page beside the 2-D one and the other is
    # hidden, so the browser keeps its 3-D scene: toggling back and forth rebuilds nothing
    for three, hidden in ((True, 2), (False, 3), (True, 2)):
        at.toggle(key="explore_3d").set_value(three).run()
        assert_clean(at)
        charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
        assert {k: {t["type"] for t in c["data"]} for k, c in charts.items()} == {
            "explore_scatter": {"scattergl"}, "explore_scatter_3d": {"scatter3d"}}
        css = " ".join(h.proto.body for h in at.get("html"))
        # the hidden 3-D one keeps its width (its scene stays built at its size)
        rule = {2: "{ display: none; }", 3: "{ height: 0; overflow: hidden; visibility: hidden;"}
        assert f".st-key-explore-plot-{hidden} {rule[hidden]}" in css
        assert f".st-key-explore-plot-{5 - hidden} {{" not in css


def test_explore_samples_large_galleries_with_a_note(make_app, tiny_index: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from imgrec.app import projection

    monkeypatch.setattr(projection, "MAX_POINTS", 5)
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    assert_clean(at)
    assert "The gallery holds 12 images; the plot draws a fixed random sample of 5" in at.info[0].value
    spec = plotly_spec(at)
    assert sum(len(t["customdata"]) for t in spec["data"] if t["name"].startswith("cluster")) == 5


def test_explore_selection_grid_sends_a_query_to_search(make_app, tiny_index: Path) -> None:
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    assert "Draw a lasso" in at.main.caption[-1].value
    picked = ["coffee/coffee_color.jpg", "rocket/rocket_blur.jpg"]
    at.session_state["explore_selected"] = picked  # what a lasso selection leaves behind
    at.run()
    assert_clean(at)
    assert [c for c in cards(at) if c[0] == "pick"] == [("pick", "", "", p) for p in picked]
    at.button(key="use-1").click().run()
    assert_clean(at)
    assert at.title[0].value == "Search"
    rows = result_rows(at)
    assert len(rows) == 1 and rows[0][0][2] == "rocket/rocket_blur.jpg"

    at.switch_page("imgrec/app/pages/explore.py").run()
    at.session_state["explore_selected"] = picked
    at.run()
    at.button(key="search_selected").click().run()
    assert at.title[0].value == "Search"
    rows = result_rows(at)
    assert len(rows) == 3 and [r[0][2] for r in rows[:2]] == picked


# ---- dataset: builds -----------------------------------------------------------------------


@pytest.fixture
def own_index(tmp_path: Path, gallery_maker, app_embedder) -> tuple[Path, Path]:
    """A gallery and index this test may change (9 images: 3 per family)."""
    gallery = gallery_maker(tmp_path / "gallery", per_family=3)
    index_dir = tmp_path / "index"
    build_index(gallery, index_dir, embedder=app_embedder, workers=0)
    return gallery, index_dir


def test_rebuild_completes_and_count_updates(make_app, own_index, app_demo) -> None:
    gallery, index_dir = own_index
    at = make_app(index_dir)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    assert {m.label: m.value for m in at.metric}["Indexed images"] == "9"
    for rel in app_demo.families["coffee"][5:7]:
        shutil.copy2(app_demo.root / rel, gallery / rel)
    at.button(key="rebuild").click().run()
    assert_clean(at)
    wait_for_build(at, index_dir)
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Indexed images"] == "11"
    assert "Indexed 11 images" in " ".join(s.value for s in at.success)
    assert "**11** images" in " ".join(m.value for m in at.sidebar.markdown)
    other_tab = make_app(index_dir).run()
    assert "**11** images" in " ".join(m.value for m in other_tab.sidebar.markdown)
    assert len(Index.open(index_dir)) == 11


def test_failed_rebuild_shows_the_reason_and_keeps_the_index(make_app, own_index) -> None:
    gallery, index_dir = own_index
    at = make_app(index_dir)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    shutil.rmtree(gallery)
    at.button(key="rebuild").click().run()
    wait_for_build(at, index_dir)
    assert_clean(at)
    errors = " ".join(e.value for e in at.error)
    assert "The build failed: gallery folder not found" in errors
    assert "previous index" in errors
    assert {m.label: m.value for m in at.metric}["Indexed images"] == "9"


def test_a_running_build_blocks_a_second_one(make_app, own_index) -> None:
    _, index_dir = own_index
    at = make_app(index_dir)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    with BuildLock(index_dir):  # a build held by another tab's runner or the CLI
        at.run()
        assert_clean(at)
        assert at.button(key="rebuild").disabled
        assert at.button(key="demo").disabled
        assert "a build is running" in " ".join(i.value for i in at.info).lower()
        assert "a build is running" in " ".join(c.value for c in at.main.caption)
    at.run()
    assert not at.button(key="rebuild").disabled


def test_the_page_and_the_sidebar_show_the_same_live_progress(make_app, tmp_path: Path,
                                                               gallery_maker) -> None:
    """A real build of a new folder, held at its first progress report: the Dataset page and
    the sidebar both show the build's own count of finished images (features written), its
    rate and ETA, the same bar; when it ends the sidebar's bar is gone (14.9)."""
    import threading

    from imgrec import build_index
    from imgrec.app import builds, resources

    release, reported = threading.Event(), threading.Event()
    seen: list = []

    def held(gallery, index_dir, *, progress, **kw):
        def report(p) -> None:
            progress(p)
            if p.stage == "features" and 0 < p.done < p.total and not reported.is_set():
                seen.append(p)
                reported.set()
                assert release.wait(120)
        # batches of 4 images: the 13 files finish in several steps, not one
        return build_index(gallery, index_dir, progress=report, batch_size=4, **kw)

    index_dir = tmp_path / "new-index"
    gallery = gallery_maker(tmp_path / "photos", per_family=4)
    resources.get_runner.clear()
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(resources, "BuildRunner", lambda: builds.BuildRunner(build=held))
    try:
        at = make_app(index_dir)
        at.run()
        at.switch_page("imgrec/app/pages/dataset.py").run()
        at.text_input(key="gallery_text").input(str(gallery)).run()
        at.button(key="index_folder").click().run()
        assert reported.wait(120)
        at.run()
        assert_clean(at)
        p = seen[0]
        page, side = at.main.get("progress"), at.sidebar.get("progress")
        assert len(page) == 1 and len(side) == 1
        assert side[0].proto.text == page[0].proto.text, (side[0].proto.text, page[0].proto.text)
        assert side[0].proto.value == page[0].proto.value == int(100 * p.done / p.total)
        text = page[0].proto.text
        assert text.startswith(f"Indexing images: {p.done} / {p.total} · {p.rate:.1f} images/s")
        assert "left" in text and p.done < p.total == 13  # 12 photos and the broken file
    finally:
        release.set()
        resources.get_runner().wait(index_dir, 120)
        monkeypatch.undo()
    try:
        wait_for_build(at, index_dir)
        assert_clean(at)
        assert not at.sidebar.get("progress") and not at.main.get("progress")
        assert "**12** images" in " ".join(m.value for m in at.sidebar.markdown)
    finally:
        resources.get_runner.clear()


def test_index_another_folder(make_app, tmp_path: Path, gallery_maker) -> None:
    index_dir = tmp_path / "new-index"
    at = make_app(index_dir)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    assert "There is no index" in at.info[0].value
    captions = " ".join(c.value for c in at.main.caption)
    assert "Index a folder" in [h.value for h in at.subheader] and "replacing" not in captions
    at.text_input(key="gallery_text").input(str(tmp_path / "missing")).run()
    assert "does not exist" in at.error[0].value and at.button(key="index_folder").disabled
    at.text_input(key="gallery_text").input(str(tmp_path)).run()
    assert "lies inside" in at.error[0].value
    gallery = gallery_maker(tmp_path / "photos", per_family=2)
    at.text_input(key="gallery_text").input(str(gallery)).run()
    assert at.success[0].value.startswith("6 images found")  # the corrupt file is not one
    assert "1 file named like an image cannot be read (broken.jpg)" in at.success[0].value
    at.button(key="index_folder").click().run()
    wait_for_build(at, index_dir)
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Indexed images"] == "6" and metrics["Skipped files"] == "1"


def test_switch_index_folder_in_the_sidebar(make_app, tiny_index: Path, tmp_path: Path) -> None:
    at = make_app(tmp_path / "nothing-here")
    at.run()
    assert "no index" in at.info[0].value.lower()
    at.sidebar.text_input(key="index_dir_text").input(str(tiny_index))
    at.sidebar.button[0].click().run()
    assert_clean(at)
    assert "**12** images" in " ".join(m.value for m in at.sidebar.markdown)
    at.sidebar.text_input(key="index_dir_text").input(str(tmp_path / "elsewhere"))
    at.sidebar.button[0].click().run()
    assert "No index in" in " ".join(w.value for w in at.sidebar.warning)


def test_folders_outside_the_allowed_roots_are_refused(make_app, tiny_index: Path, tmp_path: Path,
                                                       gallery_maker, monkeypatch) -> None:
    """Whoever reaches the port may only index or open folders under IMGREC_ALLOWED_ROOTS."""
    allowed = tmp_path / "allowed"
    at = make_app(allowed / "index")
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(allowed))
    at.run()
    at.sidebar.text_input(key="index_dir_text").input(str(tiny_index))
    at.sidebar.button[0].click().run()
    refusal = " ".join(e.value for e in at.sidebar.error)
    assert f"{tiny_index} is outside the folders this dashboard may open" in refusal
    assert "IMGREC_ALLOWED_ROOTS" in refusal
    assert "no index" in " ".join(c.value for c in at.sidebar.caption).lower()  # not switched
    at.switch_page("imgrec/app/pages/dataset.py").run()
    outside = gallery_maker(tmp_path / "photos", per_family=1)
    at.text_input(key="gallery_text").input(str(outside)).run()
    assert "is outside the folders" in at.error[0].value and at.button(key="index_folder").disabled
    inside = gallery_maker(allowed / "photos", per_family=1)
    at.text_input(key="gallery_text").input(str(inside)).run()
    assert at.success[0].value.startswith("3 images found")


# ---- insights (issue 6) --------------------------------------------------------------------

INSIGHTS = "imgrec/app/pages/insights.py"


def open_insights(make_app, index_dir: Path, section: str | None = None):
    at = make_app(index_dir)
    at.run()
    at.switch_page(INSIGHTS).run()
    if section is not None:
        at.segmented_control(key="insights_section").set_value(section).run()
    assert_clean(at)
    return at


def test_insights_without_index(make_app, tmp_path: Path) -> None:
    at = open_insights(make_app, tmp_path / "no-index")
    assert at.title[0].value == "Insights"
    assert "no index" in " ".join(i.value for i in at.info).lower()
    assert any(b.label == "Build the demo gallery" for b in at.button)


def test_insights_label_chart(make_app, tiny_index: Path) -> None:
    from imgrec.insights.labels import label_counts

    at = open_insights(make_app, tiny_index)
    bars = plotly_spec(at)["data"]
    assert len(bars) == 1 and bars[0]["type"] == "bar"
    want = label_counts(Index.open(tiny_index), 50)
    assert bars[0]["y"] == [c.name for c in want][::-1] and sum(bars[0]["x"]) == 12


def test_insights_clusters_browse(make_app, tiny_index: Path) -> None:
    from imgrec.insights.clusters import clusters

    at = open_insights(make_app, tiny_index, "clusters")
    assert at.slider(key="insights_k").value == 3  # chosen from the data: three photos
    assert "k = 3 chosen from the data" in " ".join(c.value for c in at.main.caption)
    assert len([c for c in cards(at) if c[0] == "cluster"]) == 3
    at.slider(key="insights_k").set_value(4).run()
    assert "you chose k; the data's choice is 3" in " ".join(c.value for c in at.main.caption)
    at.slider(key="insights_k").set_value(3).run()
    assert_clean(at)
    idx = Index.open(tiny_index)
    res = clusters(idx, k=3)
    shown = [c for c in cards(at) if c[0] == "cluster"]
    assert [(h, d, p) for _, h, d, p in shown] == [
        (f"Cluster {c}", f"{int(res.sizes[c])} image{'s' if res.sizes[c] != 1 else ''}",
         idx.paths([int(res.representatives[c])])[0]) for c in range(3)]
    at.button(key="cluster-0").click().run()
    assert_clean(at)
    assert at.subheader[-1].value == f"Cluster 0: {int(res.sizes[0])} images"  # as the CLI numbers it
    assert not [c for c in cards(at) if c[0] == "pick"]  # not on the page, far below the click
    assert [p for kind, _, _, p in cards(at, at) if kind == "pick"] == idx.paths(res.members(0))
    at.button(key="member-0-use-0").click().run()  # a member becomes the query
    assert at.title[0].value == "Search" and result_rows(at)[0][0][2] == idx.paths(res.members(0))[0]


def test_insights_duplicates_slider_changes_the_groups(make_app, tiny_index: Path) -> None:
    from imgrec.insights.duplicates import find_duplicates

    at = open_insights(make_app, tiny_index, "duplicates")
    assert "never deletes" in " ".join(i.value for i in at.info)
    idx = Index.open(tiny_index)
    default = idx.recipe.duplicate_threshold  # the index's recipe's calibrated threshold
    assert idx.recipe.name == "v3" and default == pytest.approx(0.78)
    assert at.slider(key="dup_threshold").value == pytest.approx(default)
    assert at.slider(key="dup_threshold").min == pytest.approx(idx.recipe.duplicate_floor)

    def groups_shown() -> tuple[str, list[tuple[str, str]]]:
        metrics = {m.label: m.value for m in at.metric}
        keepers = [(h, p) for kind, h, _, p in cards(at) if kind == "keeper"]
        return metrics["Groups"], keepers

    counts = {}
    for t in (default, 0.99):
        at.slider(key="dup_threshold").set_value(t).run()
        assert_clean(at)
        rep = find_duplicates(idx, t)
        count, keepers = groups_shown()
        assert count == str(len(rep.groups))
        assert keepers == [("★ keeper", g.keeper.path) for g in rep.groups]
        counts[t] = sorted(len(g.members) for g in rep.groups)
    assert counts[default] == [4, 4, 4]  # three photos, four variants each
    # at 0.99 the embedding scan keeps no pair; the rotation-invariant hash lookup still
    # pairs each photo with its blurred copy (pHash 0/64), so the groups shrink
    assert counts[0.99] != counts[default] and all(n < 4 for n in counts[0.99])
    assert at.get("download_button")


def test_insights_graph_renders_and_selection_shows_images(make_app, tiny_index: Path) -> None:
    at = open_insights(make_app, tiny_index, "graph")
    spec = plotly_spec(at)
    edges, *nodes = spec["data"]
    assert edges["type"] == "scattergl" and edges["mode"] == "lines"
    assert nodes and all(t["type"] == "scattergl" and t["name"].startswith("community")
                         for t in nodes)
    assert all(re.fullmatch(r"community \d+: \S.*", t["name"]) for t in nodes)  # named by label
    # each community's representative thumbnail, captioned like its legend entry
    assert len(spec["layout"]["images"]) == len(nodes)
    captions = [f"community {im['name']}" for im in spec["layout"]["images"]]
    assert captions == [t["name"] for t in nodes]
    assert sorted(r for t in nodes for r in t["customdata"]) == list(range(12))
    assert "Louvain communities" in " ".join(c.value for c in at.main.caption)
    picked = [p for t in nodes for p in t["hovertext"] if p.startswith("coffee/")][:2]
    at.session_state["graph_selected"] = picked  # what a lasso selection leaves behind
    at.run()
    assert_clean(at)
    assert [p for kind, _, _, p in cards(at) if kind == "pick"] == picked


def test_insights_graph_selection_is_paged(make_app, tmp_path: Path, gallery_maker,
                                           app_embedder) -> None:
    """A lasso around more images than a page holds pages them, never "the first 30"."""
    gallery = gallery_maker(tmp_path / "gallery", per_family=12)
    build_index(gallery, tmp_path / "index", embedder=app_embedder, workers=0)
    paths = Index.open(tmp_path / "index").all_paths()
    assert len(paths) == 36
    at = open_insights(make_app, tmp_path / "index", "graph")
    at.session_state["graph_selected"] = paths  # what a lasso around everything leaves
    at.run()
    assert_clean(at)
    picked = lambda: [p for kind, _, _, p in cards(at) if kind == "pick"]  # noqa: E731
    assert picked() == paths[:30]
    pager = at.segmented_control(key="graph_page")
    assert pager.options == ["1–30", "31–36"]
    pager.set_value(1).run()
    assert_clean(at)
    assert picked() == paths[30:]


# ---- search additions (issue 6) ------------------------------------------------------------


def test_search_by_label_finds_the_cat(make_app, tiny_index: Path) -> None:
    """A label query is ranked in the one result area, with k, thumbs and Refine (14.4)."""
    from imgrec.insights.labels import search_by_label

    at = make_app(tiny_index)
    at.run()
    at.text_input(key="label_query").input("cat").run()
    assert_clean(at)
    want = search_by_label(Index.open(tiny_index), "cat", 5).combined
    rows = result_rows(at)
    assert len(rows) == 1 and [(r, p) for r, _, p in rows[0]] == [(h.rank, h.path) for h in want]
    assert rows[0] and all(p.startswith("chelsea/") for p in paths_of(rows[0]))
    assert all(score.startswith("probability ") for _, score, _ in rows[0])
    assert "Drop one to five images" not in " ".join(i.value for i in at.info)
    at.slider(key="k").set_value(2).run()  # the one k applies to label queries too
    assert [r for r, _, _ in result_rows(at)[0]] == [1, 2]
    at.button(key="pos-label-2").click().run()
    at.button(key="refine").click().run()
    assert_clean(at)
    assert "**Refined ranking: 1" in " ".join(m.value for m in at.markdown)
    at.button(key="more-label-1").click().run()
    rows = result_rows(at)
    assert len(rows) == 2  # the image query and the label query (a new query: not refined)
    assert rows[0][0][2] == want[0].path and paths_of(rows[1]) == [h.path for h in want[:2]]
    at.text_input(key="label_query").input("qwertyuiop").run()
    assert_clean(at)
    assert "no ImageNet class matches" in " ".join(w.value for w in at.warning)


def test_label_filter_keeps_matching_results(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    at.slider(key="k").set_value(12).run()
    assert len(result_rows(at)[0]) == 10  # first page of 12
    at.text_input(key="label_filter").input("cat").run()
    assert_clean(at)
    row = result_rows(at)[0]
    assert row and all(p.startswith("chelsea/") for p in paths_of(row))
    assert "Label filter" in " ".join(c.value for c in at.main.caption)
    assert len(row) <= 4 and not at.get("segmented_control")  # one page left: no pager


def test_a_label_filter_matching_no_class_says_so(make_app, tiny_index: Path,
                                                  gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    at.text_input(key="label_filter").input("zzz").run()
    assert_clean(at)
    warning = " ".join(w.value for w in at.warning)
    assert "Label filter: no ImageNet class matches 'zzz'; try a broader word" in warning
    assert len(result_rows(at)[0]) == 5  # shown unfiltered, as the warning says
    assert "0 of" not in " ".join(c.value for c in at.main.caption)


def test_refine_moves_a_negative_down(make_app, tiny_index: Path, tiny_gallery: Path,
                                      gallery_bytes, app_embedder) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"))])
    assert at.button(key="refine").disabled
    before = paths_of(result_rows(at)[0])
    negative = before[1]
    at.button(key="neg-q0-2").click().run()
    assert at.button(key="neg-q0-2").proto.type == "primary"
    at.slider(key="negative_weight").set_value(1.0).run()
    at.button(key="refine").click().run()
    assert_clean(at)
    assert len(result_rows(at)) == 1  # the refined ranking is not drawn far below the click…
    rows = result_rows(at, at)
    assert len(rows) == 2  # …but in a dialog over the page: the query row + the refined ranking
    refined = paths_of(rows[1])
    idx = Index.open(tiny_index, embedder=app_embedder)
    want = idx.search([tiny_gallery / "chelsea/chelsea_color.jpg"], k=5,
                      negatives=[Stored(negative)], negative_weight=1.0).combined
    assert refined == [h.path for h in want]
    scores = [score for _, score, _ in rows[1]]
    assert all(s.startswith("refined score ") for s in scores)  # not "cosine" (14.13)
    assert [float(s.split()[-1]) for s in scores] == pytest.approx([h.score for h in want], abs=5e-4)
    assert negative not in refined
    assert "negative example" in " ".join(c.value for c in at.caption)  # the dialog's note
    at.button(key="clear_feedback").click().run()
    assert len(result_rows(at, at)) == 1 and at.button(key="refine").disabled


def test_compare_methods_side_by_side(make_app, tiny_index: Path, tiny_gallery: Path,
                                      app_embedder) -> None:
    from imgrec.app import formatting as ui

    at = make_app(tiny_index)
    at.run()
    upload(at, [("rocket.jpg", (tiny_gallery / "rocket/rocket_color.jpg").read_bytes())])
    at.toggle(key="compare").set_value(True).run()
    assert_clean(at)
    heads = [m.value for m in at.main.markdown]
    for m in ui.COMPARE_METHODS:
        assert f"**{ui.METHOD_LABELS[m]}**" in heads
    shown = [p for kind, _, _, p in cards(at) if kind == "compare"]
    assert len(shown) == 15
    idx = Index.open(tiny_index, embedder=app_embedder)
    q = [tiny_gallery / "rocket/rocket_color.jpg"]
    lists = {m: [h.path for h in idx.search(q, method=m, k=5).combined] for m in ui.COMPARE_METHODS}
    assert shown == lists["embedding"] + lists["color"] + lists["pca"]
    assert f"in all three: **{ui.overlap(lists).all}**" in " ".join(heads)
    at.toggle(key="compare").set_value(False).run()
    assert len(result_rows(at)) == 1


def test_explore_colours_by_gallery_clusters_with_representatives(make_app, tiny_index: Path) -> None:
    from imgrec.insights.clusters import clusters

    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    at.selectbox(key="explore_colour").set_value("gallery").run()
    at.slider(key="explore_k").set_value(3).run()
    assert_clean(at)
    spec = plotly_spec(at)
    idx = Index.open(tiny_index)
    res = clusters(idx, k=3)
    groups = {t["name"]: sorted(t["customdata"]) for t in spec["data"]
              if t["name"].startswith("cluster ")}
    assert groups == {f"cluster {c}": sorted(res.members(c).tolist()) for c in range(3)}
    reps = [t for t in spec["data"] if t["name"] == "representatives"]
    assert len(reps) == 1 and reps[0]["customdata"] == res.representatives.tolist()
    assert reps[0]["hovertext"] == idx.paths(res.representatives)
    # each representative's thumbnail, captioned with its cluster (no file names over the points)
    assert "text" not in reps[0]
    assert len(spec["layout"]["images"]) == 3
    assert [im["name"] for im in spec["layout"]["images"]] == [f"cluster {c}" for c in range(3)]
    assert "representative" in at.main.caption[0].value


def test_explore_opens_the_detail_dialog_and_searches_from_it(make_app, tiny_index: Path) -> None:
    """A click on a point opens the detail dialog the result cards open (its path is what
    a one-point selection leaves); Search with this image goes to the Search page (#12)."""
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    assert "Click a point to open its image" in at.main.caption[-1].value
    at.session_state["detail_path"] = "rocket/rocket_blur.jpg"
    at.run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert "**Path:** `rocket/rocket_blur.jpg`" in text and "**Nearest images**" in text
    at.button(key="detail_search").click().run()
    assert_clean(at)
    assert at.title[0].value == "Search"
    rows = result_rows(at)
    assert len(rows) == 1 and rows[0][0][2] == "rocket/rocket_blur.jpg"


def test_one_k_chosen_from_the_data_for_explore_and_insights(make_app, tiny_index: Path) -> None:
    """Both pages start at the data's k and share one slider value (14.6)."""
    from imgrec.insights.clusters import auto_k

    chosen = auto_k(Index.open(tiny_index)).k
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    at.selectbox(key="explore_colour").set_value("cluster").run()
    names = lambda: sorted(t["name"] for t in plotly_spec(at)["data"] if t["name"].startswith("cluster "))  # noqa: E731
    assert at.slider(key="explore_k").value == chosen and names() == [f"cluster {c}" for c in range(chosen)]
    at.switch_page(INSIGHTS).run()
    at.segmented_control(key="insights_section").set_value("clusters").run()
    at.slider(key="insights_k").set_value(2).run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    assert_clean(at)
    assert at.slider(key="explore_k").value == 2 and names() == ["cluster 0", "cluster 1"]


def test_explore_and_insights_show_the_same_clusters(make_app, tiny_index: Path) -> None:
    """One K-means: the Explore colouring is the Insights page's clustering for the same k."""
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/explore.py").run()
    at.slider(key="explore_k").set_value(4).run()
    assert_clean(at)
    colours = {t["name"]: sorted(t["customdata"]) for t in plotly_spec(at)["data"]
               if t["name"].startswith("cluster ")}
    at.switch_page(INSIGHTS).run()
    at.segmented_control(key="insights_section").set_value("clusters").run()
    at.slider(key="insights_k").set_value(4).run()
    assert_clean(at)
    idx = Index.open(tiny_index)
    shown = [(d, p) for kind, _, d, p in cards(at) if kind == "cluster"]
    assert len(shown) == len(colours) == 4
    for c, (size, rep) in enumerate(shown):  # Insights' cluster c is Explore's "cluster c"
        members = colours[f"cluster {c}"]
        assert idx.row_of(rep) in members
        assert size == f"{len(members)} image{'s' if len(members) != 1 else ''}"
