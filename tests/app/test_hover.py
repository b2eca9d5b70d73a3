"""The hover component of the dashboard's plots, seen by AppTest: the thumbnails it carries
(each the image of its own point), which charts report clicks, thumbnails sent when asked,
the 3-D scatter built ahead, and the detail dialog on the Insights page.

What the browser does with them (the thumbnail beside the cursor, a click opening the
dialog) is tested in ``test_browser.py``.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index

pytestmark = pytest.mark.slow

EXPLORE = "imgrec/app/pages/explore.py"
INSIGHTS = "imgrec/app/pages/insights.py"


def hover_data(at, key: str) -> dict:
    """The data the hover component keyed ``key`` carries to the browser."""
    found = [e for e in at.get("bidi_component") if e.key == key]
    assert len(found) == 1, [e.key for e in at.get("bidi_component")]
    assert found[0].proto.component_name == "imgrec_plot_hover"
    return json.loads(found[0].proto.json)


def pixels(uri: str) -> np.ndarray:
    from PIL import Image

    head, b64 = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def assert_own_thumbnails(thumbs: dict[str, str], idx: Index) -> None:
    """Each thumbnail is the picture of its own row: nearer to a fresh thumbnail of that
    row's file than to any other file's."""
    from imgrec.thumbcache import render

    paths = idx.paths(list(range(len(idx))))
    fresh = [pixels("data:image/jpeg;base64," + base64.b64encode(
        render(idx.resolve(p), 128)).decode()) for p in paths]
    for row, uri in thumbs.items():
        got = pixels(uri)
        assert got.shape == (128, 128, 3)
        diffs = [float(np.abs(got - f).mean()) for f in fresh]
        assert int(np.argmin(diffs)) == int(row) and diffs[int(row)] < 3, (row, paths[int(row)])


def test_explore_points_carry_their_thumbnails_and_3d_clicks_open(make_app, tiny_index: Path,
                                                                 gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    at.file_uploader[0].set_value([("cat.jpg", gallery_bytes("chelsea/chelsea_color.jpg"),
                                    "image/jpeg")])
    at.run()
    at.switch_page(EXPLORE).run()
    assert not at.exception
    got = hover_data(at, "explore-hover")
    # the 2-D chart's own selection opens a clicked point; the 3-D chart reports none itself
    assert got["plots"] == {"explore-plot-2": False, "explore-plot-3": True}
    assert sorted(got["thumbs"], key=int) == [str(r) for r in range(12)]  # the upload has none
    assert got["lazy"] is False and got["size"] == 128
    assert_own_thumbnails(got["thumbs"], Index.open(tiny_index))
    # the 3-D scatter is not built yet: the page asks the browser to say when it is idle
    assert got["idle"] is True and len(at.get("plotly_chart")) == 1


def test_explore_builds_the_3d_scatter_ahead_hidden(make_app, tiny_index: Path) -> None:
    """What the idle signal does (the page's callback), then: both charts, the 3-D one
    hidden at its size, and no further signal."""
    from imgrec.app.pages import explore

    at = make_app(tiny_index)
    at.run()
    at.switch_page(EXPLORE).run()
    at.session_state["explore_3d_seen"] = True  # what explore._build_3d_ahead leaves
    at.run()
    assert not at.exception and explore._build_3d_ahead.__doc__
    charts = {c.key: {t["type"] for t in json.loads(c.proto.spec)["data"]}
              for c in at.get("plotly_chart")}
    assert charts == {"explore_scatter": {"scattergl"}, "explore_scatter_3d": {"scatter3d"}}
    css = " ".join(h.proto.body for h in at.get("html"))
    assert ".st-key-explore-plot-3 { height: 0; overflow: hidden; visibility: hidden;" in css
    assert "display: none" not in css  # the 2-D one shows
    assert hover_data(at, "explore-hover")["idle"] is False
    at.toggle(key="explore_3d").set_value(True).run()
    assert ".st-key-explore-plot-2 { display: none; }" in " ".join(h.proto.body
                                                                 for h in at.get("html"))


def test_explore_sends_other_thumbnails_when_hovered(make_app, tiny_index: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the first few, a thumbnail travels when the browser asks for it (the rows
    hovered, kept in the session)."""
    from imgrec.app import hover

    monkeypatch.setattr(hover, "EAGER", 4)
    at = make_app(tiny_index)
    at.run()
    at.switch_page(EXPLORE).run()
    got = hover_data(at, "explore-hover")
    assert sorted(got["thumbs"], key=int) == ["0", "1", "2", "3"] and got["lazy"] is True
    at.session_state["explore-hover-wanted"] = [9, 7]  # what two hovers leave behind
    at.run()
    got = hover_data(at, "explore-hover")
    assert sorted(got["thumbs"], key=int) == ["0", "1", "2", "3", "7", "9"]
    assert_own_thumbnails(got["thumbs"], Index.open(tiny_index))


def test_graph_nodes_carry_thumbnails_and_open_the_detail_dialog(make_app, tiny_index: Path
                                                                 ) -> None:
    at = make_app(tiny_index)
    at.run()
    at.switch_page(INSIGHTS).run()
    at.segmented_control(key="insights_section").set_value("graph").run()
    assert not at.exception
    got = hover_data(at, "graph-hover")
    assert got["plots"] == {"graph-plot": True}  # a click on a node opens it
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    nodes = sorted(r for t in spec["data"][1:] for r in t["customdata"])
    assert sorted(int(r) for r in got["thumbs"]) == nodes == list(range(12))
    assert_own_thumbnails(got["thumbs"], Index.open(tiny_index))
    assert "click it to open it" in at.main.caption[0].value
    at.session_state["detail_path"] = "rocket/rocket_blur.jpg"  # what a click leaves
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "**Path:** `rocket/rocket_blur.jpg`" in text and "**Nearest images**" in text
