"""imgrec.build.workstore: batches in, chunk files on disk, read back, resumed, discarded."""

from __future__ import annotations

import numpy as np

from imgrec.build.workstore import FeatureBatch, WorkStore


def _batch(shas: list[str], dim: int = 4, labelled: bool = False, seed: int = 0) -> FeatureBatch:
    rng = np.random.default_rng(seed)
    n = len(shas)
    return FeatureBatch(shas, [{"format": "PNG", "mode": "RGB", "width": i + 1, "height": 2,
                                "exif": "{}"} for i in range(n)],
                        rng.standard_normal((n, dim)).astype(np.float32),
                        rng.random((n, 768)).astype(np.float32),
                        np.tile(np.arange(5, dtype=np.int16), (n, 1)) if labelled else None,
                        np.full((n, 5), 0.2, np.float32) if labelled else None)


def test_add_flush_read_back_and_resume(tmp_path):
    folder = tmp_path / "work" / "m-p2"
    ws = WorkStore(folder, dim=4, flush_every=3)
    a, b = _batch(["a", "b"], seed=1), _batch(["c", "d"], labelled=True, seed=2)
    ws.add(a)
    assert not folder.exists() and "a" in ws  # held in memory, known to the store
    ws.add(b)  # 4 rows >= 3: one chunk holding both batches
    assert [f.name for f in folder.iterdir()] == ["chunk-000001.npz"]
    ws.add(_batch(["e"], seed=3))
    ws.flush()
    chunks = list(ws.chunks())
    assert [c.shas for c in chunks] == [["a", "b", "c", "d"], ["e"]]
    np.testing.assert_array_equal(chunks[0].embeddings, np.concatenate([a.embeddings, b.embeddings]))
    np.testing.assert_array_equal(chunks[0].histograms[2:], b.histograms)
    assert chunks[0].top5[:2].tolist() == [[-1] * 5] * 2  # unlabelled rows beside labelled ones
    assert chunks[0].top5[2:].tolist() == [list(range(5))] * 2 and chunks[1].top5 is None
    assert chunks[0].meta[1]["width"] == 2

    # a crash leaves a temporary and a damaged chunk: a new store drops both, keeps the rest
    (folder / ".tmp-chunk-000003.npz").write_bytes(b"partial")
    (folder / "chunk-000004.npz").write_bytes(b"PK\x03\x04 cut short")
    again = WorkStore(folder, dim=4, flush_every=3)
    assert again.resumable == frozenset("abcde") and again.has_labels
    assert sorted(f.name for f in folder.iterdir()) == ["chunk-000001.npz", "chunk-000002.npz"]
    again.add(_batch(["f"], seed=4))
    again.flush()  # numbered after the highest chunk kept, never over one
    assert sorted(f.name for f in folder.iterdir())[-1] == "chunk-000003.npz"
    assert [c.shas for c in again.chunks()] == [["a", "b", "c", "d"], ["e"], ["f"]]
    assert WorkStore(folder, dim=8).resumable == frozenset()  # another dimension: recomputed

    again.discard()
    assert not folder.exists() and not (tmp_path / "work").exists()
