"""Calibrated scores: where a score falls among the gallery's own nearest-neighbour similarities."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrec import Index, Stored
from imgrec.search import calibration
from imgrec.search.calibration import Calibration, calibrate, strength

pytestmark = pytest.mark.slow


def photo(name: str) -> io.BytesIO:
    """A real photograph from scikit-image, as an uploaded JPEG."""
    from skimage import data as skdata

    buf = io.BytesIO()
    Image.fromarray(getattr(skdata, name)()).convert("RGB").save(buf, "JPEG", quality=90)
    buf.seek(0)
    buf.name = f"{name}.jpg"
    return buf


@pytest.fixture
def index(tiny_index: Path, tmp_path: Path, app_embedder) -> Index:
    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    for old in copy.glob("calibration-*.json"):
        old.unlink()
    return Index.open(copy, embedder=app_embedder)


def test_calibration_measures_the_gallery_and_is_stored_beside_the_index(index: Index) -> None:
    cal = calibrate(index)
    assert (cal.method, cal.metric, cal.sample, len(cal.quantiles)) == ("embedding", "cosine", 12, 101)
    # each image's best non-self neighbour, by the exact search
    best = []
    for p in index.all_paths():
        hits = index.search([Stored(p)], k=2).per_query[0]
        best.append(next(h.score for h in hits if h.path != p))
    assert cal.quantiles[0] == pytest.approx(min(best)) and cal.quantiles[-1] == pytest.approx(max(best))
    assert cal.quantiles[50] == pytest.approx(float(np.median(best)))
    path = index.index_dir / f"calibration-{index.version}.json"
    assert cal_path_is_beside(index, path)
    stored = json.loads(path.read_text())
    stored["methods"]["embedding/cosine"]["quantiles"] = [0.5] * 101  # read back, not re-measured
    path.write_text(json.dumps(stored))
    assert calibrate(index).quantiles == (0.5,) * 101
    assert calibrate(index, "embedding", "all").metric == "cosine"  # "all" ranks by cosine
    colour = calibrate(index, "color", "cosine")
    assert colour.metric == "chi2" and sorted(json.loads(path.read_text())["methods"]) == [
        "color/chi2", "embedding/cosine"]


def cal_path_is_beside(index: Index, path: Path) -> bool:
    return path.is_file() and path.parent == index.index_dir and not (index.dir / path.name).exists()


def test_a_stale_version_file_is_removed(index: Index) -> None:
    stale = index.index_dir / "calibration-v-gone.json"
    stale.write_text("{}")
    calibrate(index)
    assert not stale.exists()


def test_strength_tells_a_match_from_an_unrelated_photo(index: Index) -> None:
    cal = calibrate(index)
    cat = index.search([photo("chelsea")], k=1).per_query[0][0]
    astronaut = index.search([photo("astronaut")], k=1).per_query[0][0]
    assert cat.path.startswith("chelsea/") and strength(cat.score, cal)[0] == "strong"
    label, pct = strength(astronaut.score, cal)
    assert label == "weak" and pct < calibration.WEAK_PERCENTILE
    assert Calibration("embedding", "cosine", (), 0).strength(0.9)[0] == "unrated"
