"""imgrec.features.recipe: framing, the fitted post-processing, and index/query agreement."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from imgrec import images
from imgrec.errors import ImgrecError
from imgrec.features.embedding import l2_normalise
from imgrec.features.recipe import (
    RECIPES,
    PostProcess,
    Recipe,
    embed_images,
    frame,
    recipe_for,
    recipe_named,
    with_recipe,
)
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
    raw = embed_images(rgbs, embedder, replace(recipe, name="raw", center=False, whiten=False))
    if post is not None:
        post.fit(raw)
    stored = l2_normalise(embed_images(rgbs, embedder, recipe, post))  # the index path
    norms = np.linalg.norm(stored, axis=1).astype(np.float32)
    for i, f in enumerate(files):  # the query path: decode the file again
        q = embed_images([images.load_image(root / f)[0]], embedder, recipe, post)
        per, _ = rank("cosine", stored, q, 3, norms)
        rows, values = per[0]
        assert rows[0] == i and values[0] > 1 - 1e-5, (recipe.name, f)


#: the product recipes and a gallery-learned variant the quality bench measures
CASES = {**RECIPES, "v2 + centre": replace(RECIPES["v2"], name="v2 + centre", center=True)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gallery_image_as_query_finds_itself_first_tiny(tmp_path, write_gallery, tiny_embedder,
                                                         name):
    root = write_gallery(tmp_path / "g", variants=3)
    files = sorted(p.relative_to(root) for p in images.scan(root))
    _self_first(root, files, tiny_embedder, CASES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_gallery_image_as_query_finds_itself_first_real_cnn(tmp_path, write_gallery,
                                                            real_embedder, name):
    root = write_gallery(tmp_path / "g", names=("chelsea", "coffee", "astronaut", "rocket"),
                         variants=4)
    files = sorted(p.relative_to(root) for p in images.scan(root))
    _self_first(root, files, real_embedder, CASES[name])


def test_a_recipe_with_post_processing_needs_it_fitted(photos, tiny_embedder):
    with pytest.raises(ValueError, match="fitted"):
        embed_images([photos["chelsea"]], tiny_embedder, CASES["v2 + centre"])


def test_v2_finish_is_the_signed_square_root_and_v1_changes_nothing(photos, real_embedder):
    crops = np.stack([frame(images.prepare(photos[n]), 224, "letterbox")
                      for n in ("chelsea", "coffee")])
    raw = real_embedder.embed(crops)
    v2 = with_recipe(real_embedder, RECIPES["v2"]).embed(crops)
    want = np.sqrt(np.abs(raw)) * np.sign(raw)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(v2, want, atol=1e-6)
    assert not np.allclose(v2, raw, atol=1e-3)  # the finish does change the vectors
    np.testing.assert_array_equal(with_recipe(real_embedder, RECIPES["v1"]).embed(crops), raw)
    twice = with_recipe(with_recipe(real_embedder, RECIPES["v2"]), RECIPES["v2"])
    np.testing.assert_array_equal(twice.embed(crops), v2)  # re-wrapping never finishes twice


def test_recipe_follows_the_backbone_and_unknown_names_are_one_clear_error():
    assert recipe_for("efficientnet-lite0").name == "v2"
    assert recipe_for("efficientnet-lite2").name == "v2"
    assert recipe_for("resnet50").name == "v1"
    assert recipe_named(None).name == "v1"  # indexes built before recipes
    with pytest.raises(ImgrecError, match=r"recipe 'v9'.*does not know"):
        recipe_named("v9")
