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
