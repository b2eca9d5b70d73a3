"""The Ray paths as a user starts them: ``imgrec index --ray ADDRESS`` and ``imgrec shard split``."""

from __future__ import annotations

import shutil

from support import run_cli
from test_ray_build import assert_same_index

from imgrec import Index


def test_index_with_ray_joins_the_cluster_and_equals_the_local_build(ray_cluster, demo_cli,
                                                                      cli_env, tmp_path):
    gallery = tmp_path / "g"
    for fam in ("chelsea", "coffee"):
        shutil.copytree(demo_cli.gallery / fam, gallery / fam)
    env = {**cli_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray = run_cli("index", gallery, "--index", tmp_path / "ray", "--ray", ray_cluster.address,
                  env=env)
    assert ray.returncode == 0, ray.stderr[-2000:]
    assert "indexed 24 images" in ray.stdout
    local = run_cli("index", gallery, "--index", tmp_path / "local", env=env)
    assert local.returncode == 0, local.stderr
    assert_same_index(Index.open(tmp_path / "ray"), Index.open(tmp_path / "local"))


def test_shard_split_from_the_command_line(demo_cli, cli_env, tmp_path):
    out = run_cli("shard", "split", demo_cli.index, tmp_path / "sharded", "--shards", "2",
                  env=cli_env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "sharded" / "sharded.json").is_file()
    again = run_cli("shard", "split", demo_cli.index, tmp_path / "sharded", "--shards", "2",
                    env=cli_env)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr


def test_what_rays_threads_print_goes_to_stderr_so_json_output_stays_parseable(
        capsys, demo_cli, monkeypatch):
    """A Ray driver prints the raylet's messages to sys.stdout from its background threads
    (one ``print`` per line); a command's stdout must hold only its results, and the
    raylet's hint about how many worker processes a node started (one actor per shard is
    intended) is not shown at all. Ray's printer looks sys.stdout up when it prints, as
    this thread does."""
    import json
    import sys
    import threading

    from imgrec.cli.main import main
    from imgrec.shard.cluster import ray_prints_to_stderr

    def raylet_warning() -> None:
        print("(raylet) WARNING: 6 PYTHON worker processes have been started on node: ab12 "
              "with address: 127.0.0.1, which is 6x the maximum expected startup concurrency",
              file=sys.stdout)
        print("(raylet) A worker died or was killed while executing a task", file=sys.stdout)

    before = sys.stdout
    with ray_prints_to_stderr():
        t = threading.Thread(target=raylet_warning, name="ray_listen_error_messages")
        t.start()
        t.join()
        print('{"ok": 1}')
    assert sys.stdout is before
    out = capsys.readouterr()
    assert json.loads(out.out) == {"ok": 1}
    assert out.err == "(raylet) A worker died or was killed while executing a task\n"

    from imgrec import Index

    real = Index.facts

    def facts_and_a_warning(self):  # a warning printed while `imgrec info --json` runs
        t = threading.Thread(target=raylet_warning, name="ray_listen_error_messages")
        t.start()
        t.join()
        return real(self)

    monkeypatch.setattr(Index, "facts", facts_and_a_warning)
    code = main(["info", "--index", str(demo_cli.index), "--json"])
    out = capsys.readouterr()
    assert code == 0 and "raylet" in out.err
    assert json.loads(out.out)["count"] == len(Index.open(demo_cli.index))


def test_a_ray_the_command_started_stops_while_its_prints_are_still_routed(
        capsys, demo_cli, monkeypatch, ray_cluster):
    """Ray's threads print what they still hold when the driver shuts down. Left to the
    interpreter's exit that lands on stdout after a command's --json output (seen: the
    raylet's worker-count hint after `imgrec check --ray --json`); a Ray the command
    started (:func:`start`, not one its caller opened) is stopped inside the routing
    block, so those lines still go to stderr. A Ray the caller opened stays up."""
    import json
    import sys
    import threading

    import ray

    from imgrec import Index
    from imgrec.cli.main import main
    from imgrec.shard import cluster

    stopped: list[bool] = []

    def shutdown() -> None:  # the real one's last prints come from Ray's own thread
        t = threading.Thread(name="ray_listen_error_messages", target=lambda: print(
            "(raylet) A worker died or was killed while executing a task", file=sys.stdout))
        t.start()
        t.join()
        stopped.append(True)

    monkeypatch.setattr(ray, "shutdown", shutdown)
    real = Index.facts

    def facts_after_starting_ray(self):  # as ShardedIndex.open does through start()
        cluster._STARTED.set()
        return real(self)

    monkeypatch.setattr(Index, "facts", facts_after_starting_ray)
    assert main(["info", "--index", str(demo_cli.index), "--json"]) == 0
    out = capsys.readouterr()
    assert stopped == [True] and not cluster._STARTED.is_set()
    assert json.loads(out.out)["count"] == len(Index.open(demo_cli.index))
    assert out.err == "(raylet) A worker died or was killed while executing a task\n"

    monkeypatch.setattr(Index, "facts", real)  # the session's own Ray: left running
    assert main(["info", "--index", str(demo_cli.index), "--json"]) == 0
    assert stopped == [True] and ray.is_initialized()
