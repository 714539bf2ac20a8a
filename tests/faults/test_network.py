"""Network and node faults, injected into real SSH nodes: the sweep and the actions go on, each
fault is classified on its own node, nothing waits beyond the configured timeouts, and a dropped
connection never makes a command run twice.

Already proven elsewhere (not repeated here):
- refused / TCP-without-banner / banner-then-silence / garbage / hang, classified, other nodes not
  stalled: tests/test_sweep.py::test_faulty_nodes_are_classified_and_do_not_stall_the_rest (sim),
  tests/test_sweep_sshd.py::test_sweep_reports_each_kind_of_trouble (real sshd: refused, silent)
- pooled connection replaced after a node went down: tests/test_sweep.py::
  test_connections_are_pooled_and_replaced_when_dead (sim)
- drop mid-upload: tests/test_rollout.py::test_drop_during_upload_is_unreachable_and_untouched
- drop mid-download: tests/test_logs.py::test_dropped_connection_mid_download_resumes_and_loses_nothing
- a command that never exits, stopped on the node: tests/test_exec.py::test_timeout_stops_the_remote_command,
  ::test_exec_on_real_sshd_with_a_down_node_and_a_timeout
- endless output capped: tests/test_exec.py::test_output_cap_and_node_locks (sim, in-process)
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui import probe as probe_mod
from pltui.actions.exec import ExecAction
from pltui.actions.repair import RepairAction
from pltui.model import NodeUpdated, SSHState
from pltui.ssh import Transport
from pltui.sweep import Engine

from .helpers import assert_terminal_safe, pltui, wait_gone

HERE = Path(__file__).resolve().parent
SERVICE = {"important": ["etc/"], "logs": ["logs/*.log"],
           "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}]}


def plant(root: Path, version: str = "1.0") -> None:
    (root / "etc").mkdir(exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "VERSION").write_text(version + "\n")
    (root / "etc" / "app.conf").write_text("port=80\n")
    (root / "logs" / "a.log").write_text("log\n")


# --------------------------------------------------------------------------------------------
# Every fault at once: the healthy nodes are answered before any fault's timeout could expire


async def test_no_fault_stalls_the_healthy_nodes(make_sim_fleet, tmp_path):
    faults = {"sim001": "refuse", "sim002": "silent", "sim003": "banner-silence", "sim004": "hang",
              "sim005": "garbage", "sim006": "slow"}
    connect, command = 3.0, 3.0
    sim = await make_sim_fleet(16, modes=faults, delay=30.0, fleet={"service": SERVICE, "ssh_overrides": {
        "connect_timeout": f"{connect:g}s", "command_timeout": f"{command:g}s"}})
    for node in sim.nodes.values():
        plant(node.root)
    engine = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
    queue = engine.subscribe()
    arrived: dict[str, float] = {}
    try:
        started, wall = time.monotonic(), time.time()
        await engine.sweep()
        elapsed = time.monotonic() - started
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, NodeUpdated):
                arrived[event.status.node] = event.status.observed
    finally:
        await engine.close()
    s = engine.statuses
    expected = {"sim001": SSHState.REFUSED, "sim002": SSHState.UNREACHABLE, "sim003": SSHState.UNREACHABLE,
                "sim004": SSHState.TIMEOUT, "sim005": SSHState.GARBLED, "sim006": SSHState.TIMEOUT}
    assert {n: s[n].ssh for n in faults} == expected, {n: (s[n].ssh, s[n].error) for n in faults}
    healthy = [n for n in sim.names if n not in faults]
    assert all(s[n].ssh == SSHState.OK for n in healthy), {n: s[n].error for n in healthy}
    # every healthy node was answered before the shortest timeout had run out...
    late = {n: round(arrived[n] - wall, 2) for n in healthy if arrived[n] - wall >= min(connect, command)}
    assert not late, f"healthy nodes waited behind faulty ones: {late}"
    # ...and the whole sweep took the longest fault's own bound (connect + command), not their sum
    assert elapsed < connect + command + 4, elapsed


# --------------------------------------------------------------------------------------------
# Slow nodes


async def test_slow_node_faster_and_slower_than_the_command_timeout(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, modes={"sim001": "slow", "sim002": "slow"}, fleet={
        "service": SERVICE, "ssh_overrides": {"connect_timeout": "2s", "command_timeout": "2s"}})
    for node in sim.nodes.values():
        plant(node.root)
    await sim.nodes["sim001"].set_mode("slow", delay=0.8)   # slower than usual, faster than the timeout
    await sim.nodes["sim002"].set_mode("slow", delay=20.0)  # slower than the timeout
    engine = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
    try:
        started = time.monotonic()
        await engine.sweep()
        elapsed = time.monotonic() - started
        s = engine.statuses
        assert s["sim001"].ssh == SSHState.OK and s["sim001"].latency_ms >= 800, s["sim001"]
        assert s["sim001"].version == "1.0"
        assert s["sim002"].ssh == SSHState.TIMEOUT and "within 2s" in s["sim002"].error
        assert s["sim003"].ssh == SSHState.OK
        assert elapsed < 2 + 4, elapsed
        # the node speeds up again: the timed-out channel was dropped, a new connection answers
        await sim.nodes["sim002"].set_mode("ok")
        await engine.sweep()
        assert engine.statuses["sim002"].ssh == SSHState.OK, engine.statuses["sim002"].error
    finally:
        await engine.close()


# --------------------------------------------------------------------------------------------
# Connections dropped in the middle of things


async def test_connection_dropped_mid_sweep(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet={"service": SERVICE, "ssh_overrides": {
        "connect_timeout": "2s", "command_timeout": "5s"}})
    for node in sim.nodes.values():
        plant(node.root)
    victim = sim.nodes["sim002"]
    engine = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
    try:
        await engine.sweep()  # connections pooled
        first_conn = engine.transport._conns["sim002"]
        await victim.set_mode("slow", delay=1.5)  # its probe is in flight when the connection drops

        async def drop_soon():
            await asyncio.sleep(0.5)
            victim.drop_connections()

        dropper = asyncio.ensure_future(drop_soon())
        started = time.monotonic()
        await engine.sweep()
        await dropper
        assert time.monotonic() - started < 5
        status = engine.statuses["sim002"]
        assert status.ssh == SSHState.ERROR and "connection lost" in status.error, status
        assert all(engine.statuses[n].ssh == SSHState.OK for n in ("sim001", "sim003", "sim004"))
        await victim.set_mode("ok")
        await engine.sweep()
        assert engine.statuses["sim002"].ssh == SSHState.OK
        assert engine.transport._conns["sim002"] is not first_conn and victim.connections == 1
    finally:
        await engine.close()


async def test_a_command_cut_by_a_dropped_connection_is_not_run_again(make_sim_fleet, tmp_path):
    """A pooled connection lost *while a command runs* is an error for that node: re-running the
    command on a new connection would run a non-idempotent command twice and report success."""
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": {"connect_timeout": "2s", "command_timeout": "10s"}})
    fleet = fleet_mod.load(sim.fleet_path)
    transport = Transport(fleet)
    try:
        warm = await ExecAction(fleet, transport, None, fleet.node_names, command="true").run()
        assert warm.ok  # both connections pooled now

        async def drop_soon():
            await asyncio.sleep(0.8)
            sim.nodes["sim001"].drop_connections()

        dropper = asyncio.ensure_future(drop_soon())
        action = ExecAction(fleet, transport, None, fleet.node_names, in_root=True,
                            command="echo ran >> count; sleep 2; echo finished")
        report = await action.run()
        await dropper
    finally:
        await transport.close()
    assert (sim.nodes["sim001"].root / "count").read_text() == "ran\n", "the command ran twice"
    rec = action.records["sim001"]
    assert rec.kind == "error" and "connection lost" in rec.message, rec
    assert report.results["sim001"].state == "failed" and not report.ok
    assert action.records["sim002"].ok and (sim.nodes["sim002"].root / "count").read_text() == "ran\n"


async def test_connection_dropped_mid_repair_upload_leaves_the_target_intact(make_sim_fleet, tmp_path):
    service = {"important": ["etc/"]}
    sim = await make_sim_fleet(3, fleet={"service": service, "ssh_overrides": {
        "connect_timeout": "2s", "command_timeout": "20s"}})
    good = os.urandom(12 << 20)  # a large file: the upload takes a while
    for node in sim.nodes.values():
        (node.root / "etc").mkdir()
        (node.root / "etc" / "blob.bin").write_bytes(good)
    target = sim.nodes["sim003"]
    (target.root / "etc" / "blob.bin").write_bytes(b"drifted\n")
    fleet = fleet_mod.load(sim.fleet_path)
    transport = Transport(fleet)
    dropped = []

    def emit(event):
        if getattr(event, "node", None) == "sim003" and getattr(event, "state", "") == "uploading" and not dropped:
            async def drop_soon():  # once the upload has written its first bytes
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not any(
                        p.stat().st_size for p in (target.root / "etc").glob(".pltui-repair-*")):
                    await asyncio.sleep(0.002)
                target.drop_connections()
                await target.set_mode("refuse")
            dropped.append(asyncio.ensure_future(drop_soon()))

    try:
        report = await RepairAction(fleet, transport, None, ["sim003"], state_dir=tmp_path / "state",
                                    emit=emit).run()
        await asyncio.gather(*dropped)
    finally:
        await transport.close()
    assert dropped and report.results["sim003"].state in ("failed", "unreachable"), report.to_json()
    assert (target.root / "etc" / "blob.bin").read_bytes() == b"drifted\n"  # untouched, not half-written
    await target.set_mode("ok")
    transport = Transport(fleet)
    try:
        again = await RepairAction(fleet, transport, None, ["sim003"], state_dir=tmp_path / "state").run()
    finally:
        await transport.close()
    assert again.ok, again.to_json()
    assert (target.root / "etc" / "blob.bin").read_bytes() == good
    # the interrupted upload's temporary file is not left behind to be reported as drift forever
    leftovers = [p.name for p in (target.root / "etc").iterdir() if p.name != "blob.bin"]
    assert not leftovers, leftovers
    assert not again.results["sim003"].data.get("still_drifted")


# --------------------------------------------------------------------------------------------
# Real OpenSSH: a node going down and back, commands that never exit, output that never ends


async def test_node_down_and_back_between_sweeps_real_sshd(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 3, solo=["sshd002"], fleet={
        "service": {"important": ["etc/"]}, "ssh_overrides": {"connect_timeout": "3s", "command_timeout": "10s"}})
    engine = Engine(fleet_mod.load(sshd.fleet_path), state_dir=tmp_path / "state")
    try:
        await engine.sweep()
        assert all(s.ssh == SSHState.OK for s in engine.statuses.values()), engine.statuses
        before = engine.transport._conns["sshd002"]
        await asyncio.to_thread(sshd.down, "sshd002")
        await engine.sweep()
        assert engine.statuses["sshd002"].ssh in (SSHState.REFUSED, SSHState.ERROR), engine.statuses["sshd002"]
        assert engine.statuses["sshd001"].ssh == SSHState.OK
        await asyncio.to_thread(sshd.up, "sshd002")
        await engine.sweep()
        assert engine.statuses["sshd002"].ssh == SSHState.OK, engine.statuses["sshd002"].error
        after = engine.transport._conns["sshd002"]
        assert after is not before and before.is_closed() and not after.is_closed()
    finally:
        await engine.close()


ENDLESS_NEEDLE = "pltui-endless-7f3a"
HANG_NEEDLE = "sleep 1731.25"


async def test_hanging_and_endless_probe_commands_real_sshd(make_sshd_fleet, tmp_path):
    """protocol_command that never exits, and one that prints forever without a newline: the
    node times out within the command timeout, the other nodes are answered, and nothing is left
    running on the node."""
    command = (f"if [ -f HANG ]; then exec {HANG_NEEDLE}; fi; "
               f"if [ -f ENDLESS ]; then exec cat /dev/zero {ENDLESS_NEEDLE}; fi; "
               f"if [ -f FLOOD ]; then exec yes {ENDLESS_NEEDLE}; fi; cat PROTOCOL")
    sshd = await asyncio.to_thread(make_sshd_fleet, 4, fleet={
        "service": {"protocol_command": command}, "ssh_overrides": {"connect_timeout": "3s", "command_timeout": "3s"}})
    for _name, node in sshd.nodes.items():
        Path(node.root, "PROTOCOL").write_text("7\n")
    Path(sshd.nodes["sshd001"].root, "HANG").write_text("")
    Path(sshd.nodes["sshd002"].root, "ENDLESS").write_text("")
    Path(sshd.nodes["sshd003"].root, "FLOOD").write_text("")
    engine = Engine(fleet_mod.load(sshd.fleet_path), state_dir=tmp_path / "state")
    try:
        for installed in (False, True):  # the body sent, then the installed probe (liveness sweeps)
            if installed:
                for node in engine.fleet.nodes.values():
                    await probe_mod.install(engine.transport, node)
            started = time.monotonic()
            await engine.sweep()
            elapsed = time.monotonic() - started
            s = engine.statuses
            assert s["sshd001"].ssh == SSHState.TIMEOUT and s["sshd002"].ssh == SSHState.TIMEOUT, (s["sshd001"], s["sshd002"])
            assert s["sshd003"].ssh == SSHState.OK and s["sshd003"].protocol == ENDLESS_NEEDLE  # only the first line
            assert s["sshd004"].ssh == SSHState.OK and s["sshd004"].protocol == "7"
            assert elapsed < 3 + 5, elapsed
            assert not await wait_gone(ENDLESS_NEEDLE), f"a probe's endless command lives on ({installed=})"
            assert not await wait_gone(HANG_NEEDLE), f"a probe's hanging command lives on ({installed=})"
    finally:
        await engine.close()


async def test_exec_output_that_never_ends_real_sshd(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 2, fleet={"ssh_overrides": {"connect_timeout": "3s",
                                                                                 "command_timeout": "20s"}})
    started = time.monotonic()
    code, out, err = await pltui("exec", str(sshd.fleet_path), "--state", str(tmp_path / "state"),
                                 "--", f"yes {ENDLESS_NEEDLE}-0123456789abcdef", timeout=60)
    elapsed = time.monotonic() - started
    text = assert_terminal_safe(out, "stdout")
    assert_terminal_safe(err, "stderr")
    assert code == 1, err
    assert "[output truncated: over the capture limit, command closed]" in text
    assert "2 truncated" in text
    assert len(out) < 3 << 20  # capped: 1 MiB per distinct output, identical outputs shown once
    assert elapsed < 20, elapsed  # never waited for the command timeout
    assert not await wait_gone(ENDLESS_NEEDLE), "`yes` lives on after its channel was closed"


# --------------------------------------------------------------------------------------------
# 1,000 nodes at once, fanout 64


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """1,000 simulated nodes served by a child process (its own CPU and file descriptors)."""
    base = tmp_path_factory.mktemp("thousand")
    kwargs = {"ssh_overrides": {"fanout": 64, "handshakes": 32, "connect_timeout": "30s", "command_timeout": "60s"}}
    proc = subprocess.Popen([sys.executable, str(HERE / "simserve.py"), "1000", str(base), json.dumps(kwargs)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("READY "), line
        yield Path(line.split(" ", 1)[1].strip())
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_thousand_nodes_fanout_64(thousand, tmp_path):
    """One sweep of 1,000 nodes at fanout 64 in this process (file descriptors sampled), then the
    CLI under a hard RLIMIT_NOFILE of 300, which cannot hold 1,000 connections: pltui says so,
    keeps fewer connections open, and still answers every node (no "Too many open files").
    (One test, so that one 1,000-node server serves both, whichever xdist worker runs it.)"""
    fleet = fleet_mod.load(thousand)
    assert len(fleet.nodes) == 1000 and fleet.ssh.fanout == 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    peak = baseline = open_fds()

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, open_fds())
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    try:
        started = time.monotonic()
        summary = await engine.sweep()
        elapsed = time.monotonic() - started
    finally:
        sampler.cancel()
        await engine.close()
    bad = {n: s.error for n, s in engine.statuses.items() if s.ssh != SSHState.OK}
    assert not bad, f"{len(bad)} nodes not answered, e.g. {list(bad.items())[:3]}"
    assert summary["health"]["up"] == 1000
    print(f"1000 nodes, fanout 64: sweep {elapsed:.1f}s, open files peak {peak} (baseline {baseline}), "
          f"RLIMIT_NOFILE {engine.transport.nofile} (was {soft}, hard {hard})")
    assert engine.transport.nofile_warning is None or hard < 1384
    assert peak - baseline <= 1000 + 64 + 64, (peak, baseline)  # one socket per pooled node, nothing else grows
    assert elapsed < 90, elapsed

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    started = time.monotonic()
    code, out, err = await pltui("sweep", str(thousand), "--state", str(tmp_path / "state"), "--json",
                                 timeout=150, preexec_fn=low_limit)
    elapsed = time.monotonic() - started
    errtext = assert_terminal_safe(err, "stderr")
    assert "open-file limit is 300" in errtext, errtext
    doc = json.loads(out)  # warnings go to stderr: stdout stays one JSON document
    bad = {n["node"]: n["error"] for n in doc["nodes"] if n["ssh"] != "ok"}
    assert not bad, f"{len(bad)} nodes not answered, e.g. {list(bad.items())[:3]}"
    assert code == 0
    print(f"1000 nodes under RLIMIT_NOFILE 300: {elapsed:.1f}s; {errtext.strip()}")
