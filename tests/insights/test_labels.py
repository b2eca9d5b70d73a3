"""ImageNet labels: stored at index time (real backbone on the demo gallery), carried through
sync and resume, checked by verify, searched by text, counted, and reached from the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from support import TinyEmbedder, run_cli

from imgrec import Index, Stored, build_index
from imgrec.errors import IndexFormatError, QueryError
from imgrec.index.verify import verify
from imgrec.index.writer import LABEL_FILES, current_version
from imgrec.insights.labels import (
    GROUPS,
    class_names,
    label_counts,
    label_scores,
    labels_of,
    match_classes,
    name_of,
    search_by_label,
    top_classes,
)

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


class LabellingTinyEmbedder(TinyEmbedder):
    """The tiny embedder plus a ``forward`` giving 1000-class probabilities (a softmax of a
    fixed projection of the embedding), like :class:`imgrec.CNNEmbedder.forward`."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.w = np.random.default_rng(0).normal(size=(self.dim, 1000)) * 20

    def forward(self, crops):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("killed")
        v = self.embed(crops)
        z = v.astype(np.float64) @ self.w
        p = np.exp(z - z.max(1, keepdims=True))
        return v, (p / p.sum(1, keepdims=True)).astype(np.float32)


# ---- the demo index, real EfficientNet-Lite0 ----------------------------------------------

def test_demo_index_stores_top5_labels(demo_index):
    assert demo_index.has_labels
    top5, prob5 = demo_index.labels_top5, demo_index.labels_prob5
    assert top5.shape == prob5.shape == (len(demo_index), 5)
    assert top5.dtype == np.int16 and prob5.dtype == np.float32
    assert (top5 >= 0).all() and (top5 < 1000).all()  # every image labelled
    assert (np.diff(prob5, axis=1) <= 0).all() and (prob5.sum(1) <= 1 + 1e-5).all()
    assert verify(demo_index.index_dir) == []
    assert len(class_names()) == 1000 and name_of(281) == "tabby" and name_of(-1) == ""


def test_known_photos_get_their_classes(demo_index):
    chelsea = labels_of(demo_index, demo_index.row_of("chelsea/chelsea_orig.jpg"))
    assert len(chelsea) == 5 and CATS & {lb.class_id for lb in chelsea}
    assert [lb.probability for lb in chelsea] == sorted((lb.probability for lb in chelsea),
                                                        reverse=True)
    coffee = labels_of(demo_index, demo_index.row_of("coffee/coffee_orig.jpg"))
    assert coffee[0].name == "espresso" and coffee[0].probability > 0.5
    with pytest.raises(QueryError):
        labels_of(demo_index, len(demo_index))


def test_search_by_label_ranks_the_cat_photos_first(demo_index):
    res = search_by_label(demo_index, "cat", k=20)  # only the 12 chelsea images match
    assert [h.path.split("/")[0] for h in res.combined] == ["chelsea"] * 12
    assert res.per_query == [res.combined] and res.method == "label"
    scores = [h.score for h in res.combined]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    assert "tabby" in res.notes[0]
    # the scores are the summed top-5 probability of the cat classes
    row = res.combined[0].row
    want = sum(lb.probability for lb in labels_of(demo_index, row) if lb.class_id in CATS)
    assert res.combined[0].score == pytest.approx(want, abs=1e-6)
    np.testing.assert_allclose(label_scores(demo_index, sorted(CATS))[row], want, atol=1e-6)
    espresso = search_by_label(demo_index, "Espresso", k=5).combined
    assert [h.path.split("/")[0] for h in espresso] == ["coffee"] * 5


def test_search_by_label_errors(demo_index):
    with pytest.raises(QueryError, match="no ImageNet class matches"):
        search_by_label(demo_index, "qwertyuiop")
    with pytest.raises(QueryError, match="give a label"):
        search_by_label(demo_index, "  ")
    with pytest.raises(QueryError, match="k must be"):
        search_by_label(demo_index, "cat", k=0)
    res = search_by_label(demo_index, "golden retriever")  # no dog in the demo gallery
    assert res.combined == [] and any("no indexed image" in n for n in res.notes)


def test_label_counts(demo_index):
    counts = label_counts(demo_index)
    assert 1 <= len(counts) <= 50
    assert [c.count for c in counts] == sorted((c.count for c in counts), reverse=True)
    assert sum(c.count for c in counts) <= len(demo_index)
    assert {c.name for c in counts} >= {"espresso"}
    assert len(label_counts(demo_index, top=3)) == 3


# ---- text matching -----------------------------------------------------------------------

def test_match_classes_words_groups_plurals_and_alternatives():
    names = class_names()
    dog = set(match_classes("dog"))
    assert set(GROUPS["dog"]) <= dog and names.index("beagle") in dog
    assert set(match_classes("Dogs")) == dog and set(match_classes("puppy")) >= set(GROUPS["dog"])
    cat = set(match_classes("cat"))
    assert cat >= CATS and names.index("catamaran") not in cat
    assert names.index("lion") not in cat and names.index("lion") in match_classes("big cat")
    assert match_classes("lakeside") == [names.index("lakeside")]
    assert {names.index("golden retriever"), names.index("Labrador retriever")} <= set(
        match_classes("retrievers"))
    assert set(match_classes("cat, lakeside")) == cat | {names.index("lakeside")}
    assert match_classes("zzzz") == []


def test_class_names_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    assert class_names() == tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_top_classes_orders_ties_and_unknown_rows():
    p = np.array([[0.1, 0.4, 0.1, 0.4, 0.0, 0.0],
                  [np.nan, 1, 0, 0, 0, 0],
                  [0, 0, 0, 0, 0, 1]], np.float32)
    ids, probs = top_classes(p)
    assert ids[0].tolist() == [1, 3, 0, 2, 4] and probs[0].tolist() == pytest.approx(
        [0.4, 0.4, 0.1, 0.1, 0.0])
    assert ids[1].tolist() == [-1] * 5 and probs[1].tolist() == [0.0] * 5
    assert ids[2, 0] == 5
    small_ids, small_p = top_classes(np.array([[0.3, 0.7]], np.float32))
    assert small_ids.tolist() == [[1, 0, -1, -1, -1]] and small_p[0, 2:].tolist() == [0, 0, 0]


# ---- build: labels through sync, resume, and embedders without a classifier ---------------

def _labels_by_path(idx: Index) -> dict[str, tuple[list[int], list[float]]]:
    return {p: (idx.labels_top5[r].tolist(), idx.labels_prob5[r].tolist())
            for r, p in enumerate(idx.all_paths())}


def test_labels_survive_sync_and_resume(write_gallery, tmp_path, monkeypatch):
    gallery = write_gallery(tmp_path / "g")  # 9 images
    ref = build_index(gallery, tmp_path / "ref", embedder=LabellingTinyEmbedder(), workers=0)
    assert ref.indexed == 9
    want = _labels_by_path(Index.open(tmp_path / "ref"))
    assert all(ids[0] >= 0 for ids, _ in want.values())

    # a build killed after two saved chunks resumes with the chunks' labels
    monkeypatch.setenv("IMGREC_FLUSH_EVERY", "2")
    with pytest.raises(RuntimeError, match="killed"):
        build_index(gallery, tmp_path / "ix", embedder=LabellingTinyEmbedder(fail_after=2),
                    workers=0, batch_size=2)
    assert len(list((tmp_path / "ix" / "work").rglob("chunk-*.npz"))) == 2
    resumed = build_index(gallery, tmp_path / "ix", embedder=LabellingTinyEmbedder(),
                          workers=0, batch_size=2)
    assert resumed.resumed == 4 and resumed.computed == 5
    idx = Index.open(tmp_path / "ix")
    assert _labels_by_path(idx) == want

    # a sync copies unchanged rows with their labels and labels the new file
    shutil.copy(gallery / "coffee" / "coffee_orig.jpg", gallery / "coffee" / "coffee_copy.jpg")
    (gallery / "chelsea" / "chelsea_crop.jpg").unlink()
    emb = LabellingTinyEmbedder()
    sync = build_index(gallery, tmp_path / "ix", embedder=emb, workers=0)
    assert (sync.added, sync.removed, emb.images) == (1, 1, 0)  # a copy: nothing embedded
    got = _labels_by_path(Index.open(tmp_path / "ix"))
    want.pop("chelsea/chelsea_crop.jpg")
    want["coffee/coffee_copy.jpg"] = want["coffee/coffee_orig.jpg"]
    assert got == want
    assert verify(tmp_path / "ix") == []


def test_embedder_without_forward_gives_no_labels_and_later_labels_are_partial(
        write_gallery, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee"), variants=2)
    build_index(gallery, tmp_path / "ix", embedder=TinyEmbedder(), workers=0)
    idx = Index.open(tmp_path / "ix")
    assert not idx.has_labels and idx.labels_top5 is None
    assert not any((idx.dir / f).exists() for f in LABEL_FILES)
    assert labels_of(idx, 0) == []
    with pytest.raises(QueryError, match="holds no ImageNet labels"):
        search_by_label(idx, "cat")
    with pytest.raises(QueryError, match="holds no ImageNet labels"):
        label_counts(idx)

    # the same model now with a classifier: new images get labels, old ones stay unknown
    write_gallery(tmp_path / "g", names=("astronaut",), variants=1)
    rep = build_index(gallery, tmp_path / "ix", embedder=LabellingTinyEmbedder(), workers=0)
    assert any("4 of 5 images have no ImageNet labels" in n for n in rep.notes)
    idx = Index.open(tmp_path / "ix")
    top5 = idx.labels_top5
    new = idx.row_of("astronaut/astronaut_orig.jpg")
    assert top5[new, 0] >= 0 and (np.delete(np.asarray(top5), new, 0) == -1).all()
    assert labels_of(idx, idx.row_of("chelsea/chelsea_orig.jpg")) == []
    assert verify(tmp_path / "ix") == []


def test_damaged_label_files_are_refused_and_reported(write_gallery, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea",), variants=2)
    build_index(gallery, tmp_path / "ix", embedder=LabellingTinyEmbedder(), workers=0)
    v = current_version(tmp_path / "ix")
    prob = np.load(v / LABEL_FILES[1])
    prob[1, 0] = 1.5
    np.save(v / LABEL_FILES[1], prob)
    problems = verify(tmp_path / "ix")
    assert len(problems) == 1 and "invalid labels" in problems[0] and "row 1" in problems[0]
    with pytest.raises(IndexFormatError, match=r"labels_prob5\.npy is damaged"):
        Index.open(tmp_path / "ix")  # small files are checked against their checksums
    (v / LABEL_FILES[1]).unlink()
    with pytest.raises(IndexFormatError, match=r"labels_prob5\.npy is missing"):
        Index.open(tmp_path / "ix")
    assert any("labels_prob5.npy is missing" in p for p in verify(tmp_path / "ix"))


def test_from_arrays_stores_labels(tmp_path):
    rng = np.random.default_rng(0)
    top5 = np.tile(np.arange(5, dtype=np.int16), (4, 1))
    prob5 = np.tile(np.array([0.5, 0.2, 0.1, 0.05, 0.0], np.float32), (4, 1))
    idx = Index.from_arrays(tmp_path / "ix", list("abcd"), rng.normal(size=(4, 8)),
                            rng.random((4, 768)), model="m", labels_top5=top5,
                            labels_prob5=prob5)
    assert idx.has_labels and [lb.name for lb in labels_of(idx, 2)][:2] == [name_of(0), name_of(1)]
    assert search_by_label(idx, "goldfish").combined[0].path == "a"
    with pytest.raises(ValueError, match="both"):
        Index.from_arrays(tmp_path / "ix2", ["a"], rng.normal(size=(1, 8)), rng.random((1, 768)),
                          model="m", labels_top5=top5[:1])


# ---- CLI --------------------------------------------------------------------------------------

def test_cli_labels_and_label_search(demo_cli, cli_env):
    i = demo_cli.index
    counts = run_cli("labels", "--index", i, "--top", "5", "--json", env=cli_env)
    assert counts.returncode == 0, counts.stderr
    got = json.loads(counts.stdout)
    assert got["images"] == 170 and len(got["labels"]) == 5
    table = run_cli("labels", "--index", i, "--image", "@chelsea/chelsea_orig.jpg", env=cli_env)
    assert table.returncode == 0 and "cat" in table.stdout
    search = run_cli("search", "--label", "cat", "--index", i, "-k", "3", "--json", env=cli_env)
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)["combined"]
    assert [h["path"].split("/")[0] for h in hits] == ["chelsea"] * 3
    both = run_cli("search", "x.jpg", "--label", "cat", "--index", i, env=cli_env)
    assert both.returncode == 2 and "not both" in both.stderr
    none = run_cli("search", "--index", i, env=cli_env)
    assert none.returncode == 2 and "--label" in none.stderr
    nomatch = run_cli("search", "--label", "qwertyuiop", "--index", i, env=cli_env)
    assert nomatch.returncode == 2 and "no ImageNet class" in nomatch.stderr


def test_stored_label_rows_match_a_fresh_forward_pass(demo_index, real_embedder):
    """The stored labels are the backbone's own: recompute one image's probabilities with
    the network's own forward pass and classifier (of the index recipe's input: the whole
    image at its own aspect ratio)."""
    import torch

    from imgrec.images import load_image, prepare

    path = "chelsea/chelsea_orig.jpg"
    x = demo_index.recipe.frame(prepare(load_image(demo_index.resolve(path))[0]), 224)
    assert x.shape[0] != x.shape[1]  # chelsea is landscape: not a square input
    real_embedder.load()
    t = torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float().sub(127.0).div(128.0)
    with torch.inference_mode():
        probs = real_embedder._head(real_embedder._net(t)).softmax(1).numpy()
    ids, p = top_classes(probs)
    row = demo_index.row_of(path)
    assert ids[0].tolist() == demo_index.labels_top5[row].tolist()
    np.testing.assert_allclose(p[0], demo_index.labels_prob5[row], atol=1e-4)
    assert demo_index.search(Stored(path), k=1).combined[0].path == path
