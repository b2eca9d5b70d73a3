"""The rotation-invariant hash candidate source against brute force: every pair within the
radius under some rotation/mirroring is found, none beyond it, on random hashes and on
the hashes of real pictures with rotated, mirrored, re-encoded and resized copies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgrec.insights.duplicates import dihedral as D
from imgrec.insights.duplicates import hashlookup as H
from imgrec.insights.duplicates import signals as S


def brute(dcts: np.ndarray, radius: int) -> dict[tuple[int, int], int]:
    """Every pair within ``radius`` as signals.hash_distance measures it (the pHash bits of
    one image against those of the other's eight variants), either way round."""
    b = np.stack([D.bits(D.variants(d)) for d in dcts])  # (n, 8, 64)
    assert D.hash_distance(dcts[0], dcts[1])[0] == (b[0, 0] != b[1]).sum(-1).min()
    dist = (b[:, None, 0, None, :] != b[None, :, :, :]).sum(-1).min(-1)  # [a, b]: a vs b's
    dist = np.minimum(dist, dist.T)
    return {(a, c): int(dist[a, c]) for a in range(len(b)) for c in range(a + 1, len(b))
            if dist[a, c] <= radius}


def found(dcts: np.ndarray, radius: int) -> dict[tuple[int, int], int]:
    i, j, d = H.dihedral_pairs(H.packed(dcts), radius)
    assert np.all(i < j)
    return dict(zip(zip(i.tolist(), j.tolist(), strict=True), d.tolist(), strict=True))


def test_band_radii_satisfy_the_pigeonhole_bound():
    for radius in range(0, 20):
        r = H.band_radii(radius)
        assert len(r) == len(H.BANDS) and sum(x + 1 for x in r) > radius
        assert sum(x + 1 for x in r) == max(radius + 1, len(r))  # no probe wasted


@pytest.mark.parametrize("radius", [0, 3, 5, 8, 10])
def test_random_hashes_with_planted_turned_copies_equal_brute_force(radius):
    rng = np.random.default_rng(radius)
    base = rng.standard_normal((160, 8, 8)).astype(np.float32)
    turned = D.variants(base[:80])[np.arange(80), rng.integers(0, 8, 80)]
    noisy = turned + rng.standard_normal(turned.shape).astype(np.float32) * rng.uniform(
        0, 0.6, (80, 1, 1)).astype(np.float32)
    dcts = np.concatenate([base, noisy])
    want = brute(dcts, radius)
    assert len(want) >= (20 if radius >= 5 else 1)  # the planted copies are there to find
    assert found(dcts, radius) == want


def test_real_pictures_and_their_copies_equal_brute_force(photos):
    pics = []
    for name in sorted(photos)[:6]:
        im = photos[name].convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=15)
        pics += [im, im.transpose(Image.Transpose.ROTATE_90),
                 im.transpose(Image.Transpose.ROTATE_270), im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
                 Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
                 im.resize((im.width // 3, im.height // 3))]
    dcts = np.stack([S.compute(p).dct for p in pics])
    want = brute(dcts, H.RADIUS)
    got = found(dcts, H.RADIUS)
    assert got == want
    for k in range(0, len(pics), 6):  # every copy found with its original
        assert all((k, k + c) in got for c in range(1, 6)), (k, got)


def test_max_per_row_keeps_the_nearest():
    rng = np.random.default_rng(7)
    d = rng.standard_normal((1, 8, 8)).astype(np.float32)
    dcts = np.concatenate([d, d + rng.standard_normal((9, 8, 8)).astype(np.float32) * 0.2])
    full = found(dcts, 12)
    i, j, dist = H.dihedral_pairs(H.packed(dcts), 12, max_per_row=2)
    for row in range(len(dcts)):
        mine = sorted(full[p] for p in full if row in p)
        kept = sorted(int(x) for a, b, x in zip(i, j, dist, strict=True) if row in (a, b))
        assert kept[:2] == mine[:2]  # the two nearest of every row survive
