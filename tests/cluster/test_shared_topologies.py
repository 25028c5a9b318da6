"""Topologies shared by a run's test processes: one start, attached elsewhere, stopped by PID.

What the sharing of ``redis_cluster`` and the other shared fixtures rests on
(:mod:`pevensie_test_support.shared` and :mod:`pevensie_test_support.leases`):
a second process attaches to the recorded topology instead of starting one,
shared nodes refuse to be killed, leases exclude each other across processes,
and the controller's stop leaves no recorded process running.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pevensie_redis.testing import ServerNotControllable
from pevensie_test_support import LocalCluster, TopologyError, start_cluster
from pevensie_test_support.leases import hold
from pevensie_test_support.shared import SharedRun, stop_recorded


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.shares_topology  # it changes nothing: other tests may use the cluster meanwhile
def test_a_shared_node_cannot_be_killed_paused_or_restarted(redis_cluster: LocalCluster) -> None:
    node = redis_cluster.nodes[0]
    for control in (node.kill, node.pause, node.restart):
        with pytest.raises(ServerNotControllable):
            control()
    assert node.is_running()
    assert redis_cluster.is_ok()


def test_a_second_process_attaches_to_the_topology_and_the_stop_kills_every_process(
    tmp_path: Path,
) -> None:
    run = SharedRun(tmp_path / "run")
    run.directory.mkdir()
    try:
        mine = run.topology("small", lambda: start_cluster(3, 0))
        pids = [node.pid for node in mine.nodes]
        assert all(node.is_running() for node in mine.nodes)
        # Another process asks for the same name: it attaches, it never starts one.
        attached = run_python(
            f"""
            from pathlib import Path
            from pevensie_test_support.shared import SharedRun

            def refuse():
                raise SystemExit("started a second topology")

            cluster = SharedRun(Path({str(run.directory)!r})).topology("small", refuse)
            assert cluster.is_ok()
            with cluster.primaries()[0].client() as raw:
                raw.set("from-the-other-process", "1")
            print(sorted(node.port for node in cluster.nodes))
            """
        )
        assert attached.returncode == 0, attached.stderr
        assert attached.stdout.split("\n")[0] == str(sorted(node.port for node in mine.nodes))
        # The process that started it has let go: it outlives this process's handles.
        assert "from-the-other-process" in mine.stored_keys()
    finally:
        stop_recorded(run.directory)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids if pid is not None)
    assert not run.directory.exists()
    assert not Path(mine.directory).exists()


def test_an_exclusive_lease_keeps_every_other_holder_out(tmp_path: Path) -> None:
    lock = tmp_path / "topology.lease"
    other = f"""
        from pathlib import Path
        from pevensie_test_support.leases import hold
        from pevensie_test_support.nodes import TopologyError
        try:
            with hold(Path({str(lock)!r}), exclusive={{exclusive}}, timeout=0.3, what="the lease"):
                print("held")
        except TopologyError as exc:
            print(exc)
        """
    with hold(lock, exclusive=True, timeout=5, what="the lease"):
        for exclusive in (True, False):
            refused = run_python(other.replace("{exclusive}", str(exclusive)))
            assert refused.stdout.startswith("waited 0.3 s for the lease"), refused.stderr
    with hold(lock, exclusive=False, timeout=5, what="the lease"):
        assert run_python(other.replace("{exclusive}", "False")).stdout == "held\n"
        refused = run_python(other.replace("{exclusive}", "True"))
        assert refused.stdout.startswith("waited 0.3 s for the lease"), refused.stderr
    assert run_python(other.replace("{exclusive}", "True")).stdout == "held\n"


def test_a_lease_is_dropped_when_its_holder_dies(tmp_path: Path) -> None:
    lock = tmp_path / "topology.lease"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from pevensie_test_support.leases import hold
                with hold(Path({str(lock)!r}), timeout=5, what="the lease"):
                    print("held", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TopologyError), hold(lock, timeout=0.2, what="the lease"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with hold(lock, timeout=5, what="the lease"):  # the kernel dropped the dead holder's lock
        pass


def test_a_test_alone_takes_a_free_copy_and_a_copy_starts_only_when_every_one_is_busy(
    tmp_path: Path,
) -> None:
    run = SharedRun(tmp_path / "run")
    run.directory.mkdir()
    starts: list[LocalCluster] = []

    def start() -> LocalCluster:
        starts.append(start_cluster(3, 0))
        return starts[-1]

    try:
        with run.alone_on("small", start, copies=2, timeout=5) as first:
            with run.alone_on("small", start, copies=2, timeout=5) as second:
                assert {node.port for node in first.nodes}.isdisjoint(
                    node.port for node in second.nodes
                )
                # Both copies busy, no third allowed: the wait ends in a typed error.
                with (
                    pytest.raises(TopologyError, match="one of the 2 copies of the shared small"),
                    run.alone_on("small", start, copies=2, timeout=0.3),
                ):
                    pass
            # The second copy is free again: taken as it is, not started anew.
            with run.alone_on("small", start, copies=2, timeout=5) as again:
                assert again.port == second.port
        assert len(starts) == 2
        # Tests sharing the first copy hold it: a test alone gets the other one...
        with hold(run.directory / "small.lease", exclusive=False, timeout=5, what="a turn"):
            with run.alone_on("small", start, copies=2, timeout=5) as alone:
                assert alone.port == second.port
            # ...and the first copy is preferred by nobody alone while it is shared.
            with run.alone_on("small", start, copies=2, timeout=5) as alone:
                assert alone.port != first.port
        assert len(starts) == 2
    finally:
        stop_recorded(run.directory)
    assert not any(Path(f"/proc/{node.pid}").exists() for c in starts for node in c.nodes)
