"""A second producer of features plugs into the same Build: scan, work store and publish."""

from __future__ import annotations

import numpy as np
from support import TinyEmbedder

from imgrec import Index
from imgrec.build.builder import Build, build_index
from imgrec.build.decode import decode_all
from imgrec.build.local import LocalFeatures


class AllAtTheEnd:
    """Decodes everything first, then embeds all new contents in one batch at the end
    (the shape of a producer whose features arrive from elsewhere, after the results)."""

    def __init__(self, embedder) -> None:
        self.local = LocalFeatures(embedder, workers=0, batch_size=10**6)
        self.files = 0

    def __call__(self, todo, known):
        new = {}
        for res in decode_all(todo, 0, known):
            self.files += 1
            if not res.error and not res.known:
                new.setdefault(res.sha256, res)
            yield res
        if new:
            yield self.local.embed(list(new.values()))


def test_another_producer_gives_the_same_index(write_gallery, tmp_path):
    gallery = write_gallery(tmp_path / "g", names=("chelsea", "coffee"), variants=3)
    (gallery / "copy.jpg").write_bytes((gallery / "coffee/coffee_flip.jpg").read_bytes())
    (gallery / "bad.png").write_bytes(b"not a png")
    ref = build_index(gallery, tmp_path / "ref", embedder=TinyEmbedder(), workers=0)
    producer = AllAtTheEnd(TinyEmbedder())
    progress = []
    other = Build(gallery, tmp_path / "other", embedder=TinyEmbedder(), producer=producer,
                  progress=progress.append).run()
    assert producer.files == 8
    assert (other.indexed, other.added, other.computed, other.skipped) == (
        ref.indexed, ref.added, ref.computed, ref.skipped)
    a, b = Index.open(tmp_path / "ref"), Index.open(tmp_path / "other")
    assert a.all_paths() == b.all_paths()
    assert [(e.path, e.sha256, e.width, e.height) for e in a.entries()] == [
        (e.path, e.sha256, e.width, e.height) for e in b.entries()]
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    np.testing.assert_array_equal(np.asarray(a.histograms), np.asarray(b.histograms))
    feats = [p.done for p in progress if p.stage == "features"]
    assert feats[-1] == 8 and set(feats) <= {0, 1, 8}  # nothing counted while waiting for the batch

    # a sync through the other producer reuses everything and decodes nothing new
    again = Build(gallery, tmp_path / "other", embedder=TinyEmbedder(),
                  producer=AllAtTheEnd(TinyEmbedder())).run()
    assert (again.unchanged, again.computed) == (7, 0)
