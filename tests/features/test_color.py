"""imgrec.features.color: the 3 x 256-bin RGB histogram, each channel summing to 1."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgrec.features.color import BINS, DIM, histogram
from imgrec.images import load_image, prepare


def _reference(img: Image.Image) -> np.ndarray:
    a = np.asarray(img).reshape(-1, 3)
    out = np.concatenate([np.bincount(a[:, c], minlength=256) for c in range(3)]).astype(np.float64)
    return out / len(a)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "flower", "grace_hopper"])
def test_matches_numpy_bincount_on_real_photos(photos, name):
    img = photos[name]
    h = histogram(img)
    assert h.dtype == np.float32 and h.shape == (DIM,) == (3 * BINS,)
    np.testing.assert_allclose(h, _reference(img), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(h.reshape(3, BINS).sum(1), 1.0, rtol=1e-6)
    assert np.all(h >= 0)


def test_channel_order_r_then_g_then_b():
    h = histogram(Image.new("RGB", (3, 5), (255, 7, 100)))
    assert set(np.flatnonzero(h)) == {255, 256 + 7, 512 + 100}
    assert h[255] == h[263] == h[612] == 1.0


def test_depends_on_colours_not_layout(photos):
    img = photos["china"]
    flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    np.testing.assert_array_equal(histogram(img), histogram(flipped))
    assert not np.array_equal(histogram(img), histogram(photos["flower"]))


def test_same_for_any_resolution_after_prepare(full_photos):
    # prepare() brings every image to the same working size, so the histogram of a file
    # does not depend on how large it is stored (within resampling noise)
    big = full_photos["coffee"]
    small = big.resize((big.width // 2, big.height // 2), Image.Resampling.LANCZOS)
    a, b = histogram(prepare(big)), histogram(prepare(small))
    chi2 = 0.5 * np.sum((a - b) ** 2 / np.maximum(a + b, 1e-12))
    other = histogram(prepare(full_photos["rocket"]))
    chi2_other = 0.5 * np.sum((a - other) ** 2 / np.maximum(a + other, 1e-12))
    assert chi2 < 0.1 < chi2_other


def test_grey_image_has_equal_channels(photos, tmp_path):
    path = tmp_path / "g.png"
    photos["grace_hopper"].convert("L").save(path)
    h = histogram(prepare(load_image(path)[0])).reshape(3, BINS)
    np.testing.assert_array_equal(h[0], h[1])
    np.testing.assert_array_equal(h[1], h[2])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_refuses_non_rgb(mode):
    with pytest.raises(ValueError, match="RGB"):
        histogram(Image.new(mode, (4, 4)))
