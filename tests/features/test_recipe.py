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


@pytest.mark.parametrize("name", sorted(k for k, r in CASES.items() if not r.pooling))
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
    assert recipe_for("efficientnet-lite0").name == "v3"
    assert recipe_for("efficientnet-lite2").name == "v3"
    assert recipe_for("resnet50").name == "v1"
    assert recipe_for("tiny-test").name == "v2"  # no stage pools: the stateless whole image
    assert recipe_named(None).name == "v1"  # indexes built before recipes
    with pytest.raises(ImgrecError, match=r"recipe 'v9'.*does not know"):
        recipe_named("v9")


def test_aspect_framing_keeps_the_whole_image_at_its_own_shape():
    im = Image.new("RGB", (512, 256), (200, 10, 10))
    im.paste((0, 0, 255), (0, 0, 8, 256))  # a blue left edge, which a centre crop loses
    x = frame(im, 224, "aspect")
    assert x.shape == (160, 320, 3)  # 2:1, about 224 x 224 pixels, sides multiples of 32
    assert x[80, 0, 2] > 200 and x[80, 0, 0] < 50 and (x[80, 200] == (200, 10, 10)).all()
    assert frame(Image.new("RGB", (300, 300)), 224, "aspect").shape == (224, 224, 3)
    assert frame(Image.new("RGB", (1000, 200)), 224, "aspect").shape == (128, 384, 3)  # 3:1 at most
    assert frame(Image.new("RGB", (200, 1000)), 224, "aspect").shape == (384, 128, 3)


def _hand_v3(net, x: np.ndarray) -> np.ndarray:
    """v3 of one (h, w, 3) input, computed apart from the product: forward hooks on the
    network's own forward pass, the pools done here."""
    import torch

    blocks = net._blocks
    widths = [b._block_args.output_filters for b in blocks]
    ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or widths[i + 1] != widths[i]]
    got: dict = {}
    hooks = [blocks[ends[-2]].register_forward_hook(lambda m, i, o: got.__setitem__("s2", o)),
             blocks[ends[-3]].register_forward_hook(lambda m, i, o: got.__setitem__("s3", o)),
             net._bn1.register_forward_hook(lambda m, i, o: got.__setitem__("head", o))]
    try:
        t = (torch.from_numpy(x.copy()).permute(2, 0, 1)[None].float() - 127.0) / 128.0
        with torch.inference_mode():
            net.extract_features(t)
    finally:
        for h in hooks:
            h.remove()
    with torch.inference_mode():
        head = net._swish(got["head"]).double()  # the head's activation, after its BN
    gem = head.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)[0].numpy()
    s2 = got["s2"].double().mean((2, 3))[0].numpy()
    s3 = got["s3"].double().mean((2, 3))[0].numpy()
    v = np.concatenate([gem / np.linalg.norm(gem), 0.5 * s2 / np.linalg.norm(s2),
                        s3 / np.linalg.norm(s3)])
    v = np.sign(v) * np.sqrt(np.abs(v))
    return v / np.linalg.norm(v)


def test_v3_is_the_gem_head_and_two_stages_of_the_image_at_its_own_shape(photos, real_embedder):
    r = RECIPES["v3"]
    works = [images.prepare(photos[n]) for n in ("chelsea", "coffee", "astronaut")]
    inputs = [r.frame(w, 224) for w in works]
    assert len({x.shape for x in inputs}) == 2 and inputs[2].shape == (224, 224, 3)
    emb = with_recipe(real_embedder, r)
    assert emb.dim == 1280 + 192 + 112 == r.dim(real_embedder)
    got = emb.embed(inputs)  # several shapes in one call: grouped, rows in input order
    real_embedder.load()
    for x, v in zip(inputs, got, strict=True):
        np.testing.assert_allclose(v, _hand_v3(real_embedder._net, x), atol=2e-5)
    one = emb.embed([inputs[1]])
    np.testing.assert_allclose(one[0], got[1], atol=1e-6)
    assert embed_images([photos["coffee"]], real_embedder, r).shape == (1, 1584)


def test_v3_needs_a_backbone_with_stage_pools(photos, tiny_embedder, write_gallery, tmp_path):
    from imgrec.build.builder import build_index

    with pytest.raises(ImgrecError, match="recipe v3 pools the stages"):
        with_recipe(tiny_embedder, RECIPES["v3"])
    root = write_gallery(tmp_path / "g", variants=1)
    with pytest.raises(ImgrecError, match="use recipe v2"):
        build_index(root, tmp_path / "i", embedder=tiny_embedder, workers=0, recipe="v3")
    assert not (tmp_path / "i" / "CURRENT").exists()
