"""The Search page's filter panel: the grid is the exact top-k among the images that pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app import assert_clean, paths_of, result_rows, upload

from imgrec import Index

pytestmark = pytest.mark.slow


def test_folder_and_orientation_filters(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes("coffee/coffee_color.jpg"))])
    assert any(p.startswith("coffee/") for p in paths_of(result_rows(at)[0]))
    at.multiselect(key="filter_folders").set_value(["chelsea"]).run()
    assert_clean(at)
    rows = result_rows(at)
    idx = Index.open(tiny_index)
    want = idx.search([gallery_bytes("coffee/coffee_color.jpg")], k=5,
                      where={"folders": ["chelsea"]}).per_query[0]
    assert paths_of(rows[0]) == [h.path for h in want]
    assert all(p.startswith("chelsea/") for p in paths_of(rows[0]))
    at.selectbox(key="filter_orientation").set_value("portrait").run()
    assert_clean(at)
    portrait = {e.path for e in idx.entries() if e.orientation == "portrait"}
    assert set(paths_of(result_rows(at)[0])) <= portrait
    at.text_input(key="filter_after").set_value("last year").run()
    assert "Filter not applied" in " ".join(e.value for e in at.error)


def test_detail_view_from_a_result(make_app, tiny_index: Path, gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes("coffee/coffee_color.jpg"))])
    first = paths_of(result_rows(at)[0])[0]
    at.button(key="detail-q0-1").click().run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"**Path:** `{first}`" in text and "**Dimensions:**" in text
    assert "**Date taken:**" in text and "**Nearest images**" in text
    nb = [b for b in at.button if b.key and b.key.startswith("detail_nb_")]
    assert len(nb) == min(10, len(Index.open(tiny_index)) - 1)
    at.button(key="detail_search").click().run()
    assert_clean(at)
    assert f"`{first}`" in " ".join(m.value for m in at.markdown)  # now the query
