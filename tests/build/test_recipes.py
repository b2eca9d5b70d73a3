"""Builds under every embedding recipe: the query path agrees with the index path,
an index of the old recipe keeps working, and the next build says why it recomputes."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec import Index, images
from imgrec.build.builder import build_index
from imgrec.cli.main import main as cli_main
from imgrec.errors import ImgrecError
from imgrec.features.recipe import RECIPES, describe, frame, with_recipe


def _finds_itself_first(idx: Index, files: list[str]) -> None:
    """Each file, decoded again as a query (not its stored row), ranks itself first."""
    names = _names(idx)
    feats = idx.query_features([idx.root / f for f in files], need_embedding=True)
    q = np.stack([f.embedding for f in feats]).astype(np.float64)
    scores = q @ np.asarray(idx.embeddings, np.float64).T
    for f, row in zip(files, scores, strict=True):
        best = names[int(np.argmax(row))]
        assert _same(idx, best, f) and row.max() > 1 - 1e-5, (f, best)
    hit = idx.search(idx.root / files[0], k=1).combined[0]  # and the search users run
    assert _same(idx, hit.path, files[0]) and hit.score > 1 - 1e-5


def _names(idx: Index) -> list[str]:
    return idx.paths(range(len(idx)))


def _same(idx: Index, a: str, b: str) -> bool:
    """The same file, or a byte-identical copy of it."""
    ea, eb = idx.entry(a), idx.entry(b)
    return a == b or (ea is not None and eb is not None and ea.sha256 == eb.sha256)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_gallery_image_used_as_a_query_finds_itself_first_with_every_recipe(
        tmp_path, demo_cli, real_embedder, recipe):
    if recipe == "v3":  # the session's demo index, built by `imgrec index` as it ships
        idx = Index.open(demo_cli.index, embedder=real_embedder)
    else:
        build_index(demo_cli.gallery, tmp_path / "index", embedder=real_embedder, workers=0,
                    recipe=recipe)
        idx = Index.open(tmp_path / "index", embedder=real_embedder)
    assert idx.manifest.recipe == recipe and idx.recipe is RECIPES[recipe]
    _finds_itself_first(idx, _names(idx)[::3])


def test_an_old_recipe_index_keeps_working_and_a_rebuild_says_why(tmp_path, write_gallery,
                                                                  real_embedder, capsys):
    root = write_gallery(tmp_path / "g", variants=2)
    old = build_index(root, tmp_path / "i", embedder=real_embedder, workers=0, recipe="v1")
    idx = Index.open(tmp_path / "i", embedder=real_embedder)
    assert idx.manifest.recipe == "v1" and idx.recipe.framing == "crop"
    f = _names(idx)[0]
    crop = images.center_crop(images.prepare(images.load_image(root / f)[0]), 224)
    np.testing.assert_allclose(idx.embeddings[idx.row_of(f)], real_embedder.embed(crop[None])[0], atol=1e-6)
    _finds_itself_first(idx, _names(idx))  # queries of a v1 index are cut as it was built
    words, hint = describe(idx.model, idx.manifest.recipe)
    assert words.startswith("v1 (centre crop)") and "rebuild uses v3" in hint
    assert cli_main(["info", "--index", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    assert "recipe     v1 (centre crop)" in out and "rebuild    built with embedding recipe v1" in out

    new = build_index(root, tmp_path / "i", embedder=real_embedder, workers=0)
    assert "embedding recipe changed from v1 to v3: all features are recomputed" in new.notes
    assert new.computed == old.computed == len(idx)
    idx = Index.open(tmp_path / "i", embedder=real_embedder)
    assert idx.manifest.recipe == "v3" and describe(idx.model, "v3")[1] is None
    assert idx.manifest.embedding_dim == 1584 == idx.embeddings.shape[1]
    assert cli_main(["info", "--index", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    assert "recipe     v3 (whole image at its own aspect ratio" in out and "rebuild " not in out
    x = frame(images.prepare(images.load_image(root / f)[0]), 224, "aspect")
    want = with_recipe(real_embedder, RECIPES["v3"]).embed([x])[0]  # by hand: test_recipe.py
    np.testing.assert_allclose(idx.embeddings[idx.row_of(f)], want, atol=1e-6)
    _finds_itself_first(idx, _names(idx))
    again = build_index(root, tmp_path / "i", embedder=real_embedder, workers=0)
    assert again.computed == 0 and not any("recipe" in n for n in again.notes)


def test_a_v2_index_keeps_working_and_syncs_as_v2_until_rebuilt(tmp_path, write_gallery,
                                                                real_embedder):
    root = write_gallery(tmp_path / "g", variants=2)
    build_index(root, tmp_path / "i", embedder=real_embedder, workers=0, recipe="v2")
    idx = Index.open(tmp_path / "i", embedder=real_embedder)
    assert idx.manifest.embedding_dim == 1280 and idx.recipe is RECIPES["v2"]
    _finds_itself_first(idx, _names(idx))
    assert "rebuild uses v3" in describe(idx.model, "v2")[1]
    new = build_index(root, tmp_path / "i", embedder=real_embedder, workers=0)
    assert "embedding recipe changed from v2 to v3: all features are recomputed" in new.notes
    assert not any("model changed" in n for n in new.notes)


def test_a_tiny_backbone_builds_with_the_default_recipe(tmp_path, write_gallery, tiny_embedder):
    root = write_gallery(tmp_path / "g", variants=3)
    build_index(root, tmp_path / "i", embedder=tiny_embedder, workers=0)
    idx = Index.open(tmp_path / "i", embedder=tiny_embedder)
    assert idx.manifest.recipe == "v2"
    _finds_itself_first(idx, _names(idx))
    with pytest.raises(ImgrecError, match="recipe 'v7'"):
        build_index(root, tmp_path / "i", embedder=tiny_embedder, workers=0, recipe="v7")
