"""imgrec.features.recipe: framing, the fitted post-processing, and index/query agreement."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgrec import images
from imgrec.features.embedding import l2_normalise
from imgrec.features.recipe import RECIPES, PostProcess, Recipe, embed_images, frame
from imgrec.search.rank import rank


def test_letterbox_keeps_the_whole_image_and_crop_is_todays_path():
    im = Image.new("RGB", (512, 256), (200, 10, 10))
    box = frame(im, 224, "letterbox", (255, 255, 255))
    assert box.shape == (224, 224, 3)
    assert (box[0, 0] == 255).all() and (box[112, 0] == (200, 10, 10)).all()  # pad, then image
    assert (frame(im, 224, "crop") == images.center_crop(im, 224)).all()
    with pytest.raises(ValueError, match="framing"):
        frame(im, 224, "stretch")


@pytest.mark.parametrize("kw", [{"center": True}, {"power": 0.5, "center": True},
                                {"whiten": True, "shrink": 0.5},
                                {"power": 0.5, "whiten": True, "shrink": 0.8}])
def test_post_process_round_trips_through_npz(tmp_path, kw):
    x = l2_normalise(np.random.default_rng(0).random((40, 12)))
    pp = PostProcess(**{"center": False, **kw}).fit(x)
    pp.save(tmp_path / "post.npz")
    back = PostProcess.load(tmp_path / "post.npz")
    np.testing.assert_array_equal(back.transform(x), pp.transform(x))
    y = pp.transform(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-6)
    if kw.get("center") and not kw.get("whiten"):
        assert abs(PostProcess(kw.get("power"), False).fit(x)._pre(x).mean(0)
                   - pp.mean_).max() < 1e-12


def _self_first(root, files, embedder, recipe: Recipe) -> None:
    rgbs = [images.load_image(root / f)[0] for f in files]
    post = recipe.post()
    raw = embed_images(rgbs, embedder, Recipe("raw", recipe.framing, recipe.fill))
    if post is not None:
        post.fit(raw)
    stored = l2_normalise(embed_images(rgbs, embedder, recipe, post))  # the index path
    norms = np.linalg.norm(stored, axis=1).astype(np.float32)
    for i, f in enumerate(files):  # the query path: decode the file again
        q = embed_images([images.load_image(root / f)[0]], embedder, recipe, post)
        per, _ = rank("cosine", stored, q, 3, norms)
        rows, values = per[0]
        assert rows[0] == i and values[0] > 1 - 1e-5, (recipe.name, f)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_gallery_image_as_query_finds_itself_first_tiny(tmp_path, write_gallery, tiny_embedder,
                                                         name):
    root = write_gallery(tmp_path / "g", variants=3)
    files = sorted(p.relative_to(root) for p in images.scan(root))
    _self_first(root, files, tiny_embedder, RECIPES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_gallery_image_as_query_finds_itself_first_real_cnn(tmp_path, write_gallery,
                                                            real_embedder, name):
    root = write_gallery(tmp_path / "g", names=("chelsea", "coffee", "astronaut", "rocket"),
                         variants=4)
    files = sorted(p.relative_to(root) for p in images.scan(root))
    _self_first(root, files, real_embedder, RECIPES[name])


def test_a_recipe_with_post_processing_needs_it_fitted(photos, tiny_embedder):
    with pytest.raises(ValueError, match="fitted"):
        embed_images([photos["chelsea"]], tiny_embedder, RECIPES["v2"])
