"""One real two-node Ray cluster on the loopback interface, shared by the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Read by Ray when it is imported: every node binds 127.0.0.1 (test traffic stays on loopback).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """Two raylets (one CPU each) started by Ray's own test utility, this process its driver.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before Ray starts, so every node binds
    127.0.0.1 and no test traffic leaves the loopback interface.
    """
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, include_dashboard=False)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2
        assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
        assert cluster.address.startswith("127.0.0.1:")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


#: families of the demo gallery in :func:`varied_gallery`: square (a PNG), square (a WEBP),
#: landscape (a TIFF; cats), landscape, portrait
VARIED_FAMILIES = ("astronaut", "camera", "chelsea", "coffee", "grace_hopper")
VARIED_PER_FAMILY = 8


@pytest.fixture(scope="session")
def varied_demo(tmp_path_factory) -> object:
    """The demo gallery's files (written here: no index of it is needed)."""
    from imgrec.demo import build_demo_gallery

    return build_demo_gallery(tmp_path_factory.mktemp("varied-demo") / "demo").root


@pytest.fixture(scope="session")
def varied_gallery(varied_demo, tmp_path_factory) -> object:
    """40 real demo photos of five folders with every kind of fact a search filter reads:
    formats (JPEG, PNG, WEBP, TIFF), sizes, orientations, labels, and dates taken (their
    file times, 2012 to 2021, interleaved over the rows so every date range spans shards)."""
    import shutil
    import time

    root = tmp_path_factory.mktemp("varied") / "gallery"
    files = [p for fam in VARIED_FAMILIES
             for p in sorted((varied_demo / fam).iterdir())[:VARIED_PER_FAMILY]]
    for i, src in enumerate(files):
        dest = root / src.parent.name / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        year, month = 2012 + (i * 7 % 40) // 4, 1 + (i * 5) % 12
        t = time.mktime((year, month, 15, 12, 0, 0, 0, 0, -1))
        os.utime(dest, (t, t))
    return root


@pytest.fixture(scope="session")
def varied_index(varied_gallery, real_embedder, tmp_path_factory) -> object:
    """The index of :func:`varied_gallery` (the real EfficientNet-Lite0)."""
    from imgrec import build_index

    index_dir = tmp_path_factory.mktemp("varied-index") / "index"
    build_index(varied_gallery, index_dir, embedder=real_embedder, workers=0)
    return index_dir


@pytest.fixture(scope="session")
def varied_sharded(varied_index, tmp_path_factory) -> object:
    """:func:`varied_index` split into 3 shards (rows 0-12, 13-25, 26-39)."""
    from imgrec.shard.split import split

    return split(varied_index, tmp_path_factory.mktemp("varied-sharded") / "s", shards=3)
