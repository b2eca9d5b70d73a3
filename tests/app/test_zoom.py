"""The detail view's zoom: a window of the full-resolution original, cut on the server."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_app import assert_clean, paths_of, result_rows, upload

from imgrec import Index
from imgrec.app.zoom import window, zoomed
from imgrec.images import load_image

PHOTO = "coffee/coffee_color.jpg"


def test_the_window_stays_inside_the_image() -> None:
    assert window(1000, 800, 1, 0.5, 0.5) == (0, 0, 1000, 800)
    assert window(1000, 800, 4, 0.5, 0.5) == (375, 300, 625, 500)
    assert window(1000, 800, 4, 0.0, 1.0) == (0, 600, 250, 800)
    assert window(10, 10, 16, 0.5, 0.5) == (4, 4, 5, 5)  # never less than a pixel


def test_a_zoomed_view_is_the_originals_own_pixels(tiny_gallery: Path) -> None:
    full, _ = load_image(tiny_gallery / PHOTO, draft=False)
    data, win = zoomed(tiny_gallery / PHOTO, 4, 0.3, 0.6, view_width=800)
    assert (win.right - win.left, win.bottom - win.top) == (round(full.width / 4),
                                                            round(full.height / 4))
    assert win.full == full.size and win.scale == pytest.approx(800 / (win.right - win.left),
                                                                abs=0.01)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.width == 800
        shown = np.asarray(im.convert("RGB").resize((win.right - win.left,
                                                     win.bottom - win.top), Image.BOX), float)
    crop = np.asarray(full.crop((win.left, win.top, win.right, win.bottom)), float)
    elsewhere = np.asarray(full.crop((0, 0, win.right - win.left, win.bottom - win.top)), float)
    assert np.abs(shown - crop).mean() < 4  # JPEG noise only
    assert np.abs(shown - elsewhere).mean() > 4 * np.abs(shown - crop).mean()


@pytest.mark.slow
def test_the_detail_dialog_zooms_into_the_original(make_app, tiny_index: Path,
                                                  gallery_bytes) -> None:
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes(PHOTO))])
    first = paths_of(result_rows(at)[0])[0]
    at.button(key="detail-q0-1").click().run()
    assert_clean(at)
    zoom = at.select_slider(key=f"detail_zoom:{first}")
    assert zoom.value == 1.0 and not any("Zoom" in c.value for c in at.caption)
    zoom.set_value(4.0).run()
    assert_clean(at)
    at.slider(key=f"detail_x:{first}").set_value(0).run()
    caption = " ".join(c.value for c in at.caption if c.value.startswith("Zoom"))
    full, _ = load_image(Index.open(tiny_index).root / first, draft=False)
    left, top, right, bottom = window(full.width, full.height, 4, 0.0, 0.5)
    assert caption.startswith(f"Zoom 4× · pixels {left:,}–{right:,} × {top:,}–{bottom:,} "
                              f"of {full.width:,} × {full.height:,}"), caption

