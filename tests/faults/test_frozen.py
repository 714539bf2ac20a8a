"""A node frozen mid-step costs at most the step's timeout plus a stated grace, and says so.

A frozen node (its sshd SIGSTOPped, a hung kernel) keeps its TCP connection open: nothing is
refused or reset, the node just never answers again. asyncssh then waits without limit for a
channel's open, its close and `wait_closed()`, so a rollout's stop step held its batch ~120 s (the
keepalive's verdict) while the message said "did not finish within 30s". Here real OpenSSH nodes
are frozen for real: SIGSTOP of the sshd process tree serving the node (its own listener and the
per-connection children, found by PID under /proc), SIGCONT in a finally. Each test bounds the
freeze itself (`FREEZE_FOR`), so the old behaviour fails the elapsed-time bound instead of hanging
the suite; each asserts the healthy node was served, and the frozen node's message names the
cause: "node stopped answering during STEP (no reply in Ns)".

GRACE is the stated bound on top of a step's timeout: pltui.ssh.ANSWER_GRACE (the node gets 3 s to
answer a keepalive once the time is up) plus room for a loaded 2-core machine. It is a behaviour
bound, not a speed figure: the old behaviour took the keepalive's 4 x 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.base import Control
from pltui.actions.bundle import Bundle
from pltui.actions.capture import CaptureState
from pltui.actions.exec import LOCAL_GRACE, ExecAction
from pltui.actions.logs import CollectLogs
from pltui.actions.repair import RepairAction
from pltui.actions.rollout import Rollout, build_stages
from pltui.model import ActionProgress, SSHState
from pltui.ssh import Transport
from rigs.sshd_fleet import listening_sockets
from pltui.store import Store
from pltui.sweep import Engine

COMMAND = 3.0                 # the fleet's command timeout in these tests (seconds)
GRACE = 10.0                  # stated bound past a step's own timeout (ANSWER_GRACE 3 s + room)
FREEZE_FOR = 40.0             # a freeze ends by itself after this: the old code then finishes, too late
SSH = {"connect_timeout": "3s", "command_timeout": f"{COMMAND:g}s"}
FROZEN = "sshd002"


# --------------------------------------------------------------------------------------------
# Freezing a node for real


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
                if int(data[data.rfind(b")") + 2:].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Freezer:
    """SIGSTOP the sshd tree serving one node of an SshdFleet (the node must have its own sshd:
    `solo=[name]`); `thaw` (idempotent) SIGCONTs exactly those PIDs. A freeze ends by itself
    after FREEZE_FOR seconds."""

    def __init__(self, sshd, name: str):
        node = sshd.nodes[name]
        listeners = [pid for pid in sshd.pids if (node.host, node.port) in listening_sockets(pid)]
        assert len(listeners) == 1, f"{name} is served by {listeners}: give it its own sshd (solo=)"
        self.listener = listeners[0]
        self.stopped: list[int] = []
        self.frozen_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def freeze(self) -> None:
        if self.frozen_at is not None:
            return
        self.frozen_at = time.monotonic()
        os.kill(self.listener, signal.SIGSTOP)  # first: it forks no new session meanwhile
        self.stopped.append(self.listener)
        todo = [self.listener]
        while todo:  # the per-connection sshd processes (privileged monitor and session child)
            for child in _children(todo.pop()):
                if _comm(child).startswith("sshd"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGSTOP)
                        self.stopped.append(child)
                    todo.append(child)
        assert len(self.stopped) >= 2, "no per-connection sshd to freeze: the node has no session open"
        with contextlib.suppress(RuntimeError):
            self._timer = asyncio.get_running_loop().call_later(FREEZE_FOR, self.thaw)

    def thaw(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for pid in reversed(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped = []


@contextlib.contextmanager
def freezer(sshd, name: str = FROZEN):
    frost = Freezer(sshd, name)
    try:
        yield frost
    finally:
        frost.thaw()


def freeze_on(frost: Freezer, node: str, states: tuple[str, ...], *, with_bytes: bool = False):
    """An `emit` callback freezing the node when it reports one of `states` (with bytes moved)."""
    def emit(event) -> None:
        if (isinstance(event, ActionProgress) and event.node == node and event.state in states
                and (not with_bytes or (event.bytes_done or 0) > 0)):
            frost.freeze()
    return emit


def assert_bounded(elapsed: float, timeout: float, what: str) -> None:
    print(f"{what}: frozen node held it {elapsed:.1f}s (timeout {timeout:g}s, bound +{GRACE:g}s)")
    assert elapsed < timeout + GRACE, (f"{what}: a frozen node held it {elapsed:.1f}s, more than its timeout "
                                       f"{timeout:g}s + {GRACE:g}s")


def random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))


@pytest.fixture
def nodes(make_sshd_fleet):
    """Two real-sshd nodes, sshd002 with its own sshd (to be frozen)."""
    def make(**service):
        sshd = make_sshd_fleet(2, solo=[FROZEN], fleet={"service": service, "ssh_overrides": SSH})
        return sshd, fleet_mod.load(sshd.fleet_path)
    return make


# --------------------------------------------------------------------------------------------
# One test per kind of step


async def test_sweep_of_a_frozen_node_costs_its_command_timeout(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        await engine.sweep()  # warm: a pooled connection to each node
        assert all(s.ssh == SSHState.OK for s in engine.statuses.values()), engine.statuses
        with freezer(sshd) as frost:
            frost.freeze()
            started = time.monotonic()
            await engine.sweep()
            elapsed = time.monotonic() - started
        s = engine.statuses
        assert_bounded(elapsed, COMMAND, "sweep")
        assert s["sshd001"].ssh == SSHState.OK, s["sshd001"].error
        assert s[FROZEN].ssh == SSHState.UNREACHABLE, (s[FROZEN].ssh, s[FROZEN].error)
        assert f"node stopped answering during the probe (no reply in {COMMAND:g}s)" in s[FROZEN].error
        await engine.sweep()  # thawed: the node is back on a new connection
        assert engine.statuses[FROZEN].ssh == SSHState.OK, engine.statuses[FROZEN].error
    finally:
        await engine.close()


async def test_exec_frozen_mid_command(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes)
    (sshd.nodes[FROZEN].root / "slow").write_text("")
    transport = Transport(fleet)
    try:
        with freezer(sshd) as frost:
            loop = asyncio.get_running_loop()

            def emit(event) -> None:  # frozen a second into the command (it printed by then)
                if isinstance(event, ActionProgress) and event.node == FROZEN and event.state == "running":
                    loop.call_later(1.0, frost.freeze)

            action = ExecAction(fleet, transport, None, fleet.node_names, in_root=True, timeout=COMMAND + 2,
                                command="echo started; if [ -e slow ]; then sleep 2; fi; echo done", emit=emit)
            started = time.monotonic()
            report = await action.run()
            elapsed = time.monotonic() - started
        assert frost.frozen_at is not None
        assert_bounded(elapsed, COMMAND + 2 + LOCAL_GRACE, "exec")
        assert report.results["sshd001"].state == "done", report.to_json()
        frozen = report.results[FROZEN]
        assert frozen.state == "unreachable", report.to_json()
        assert "node stopped answering during the command" in frozen.message, frozen.message
    finally:
        await transport.close()


async def test_rollout_frozen_during_its_stop_step(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes, process=[{"name": "svc", "start": "exec sleep 1000",
                                                           "stop_timeout": "1s"}])
    bundle_dir = tmp_path / "bundle"
    (bundle_dir / "bin").mkdir(parents=True)
    (bundle_dir / "VERSION").write_text("2.0\n")
    store = Store(tmp_path / "state.db")
    transport = Transport(fleet)
    try:
        bundle = Bundle.open(bundle_dir, tmp_path / "bundles", version_file=fleet.service.version_file)
        with freezer(sshd) as frost:
            action = Rollout.new(fleet, transport, store, bundle, build_stages(fleet, None),
                                 state_dir=tmp_path / "state", control=Control(auto_continue=True),
                                 emit=freeze_on(frost, FROZEN, ("stopping",)), health_timeout=20)
            stop_timeout = action._timeout("stop")
            started = time.monotonic()
            report = await action.run()
            elapsed = time.monotonic() - (frost.frozen_at or started)
        assert frost.frozen_at is not None
        assert_bounded(elapsed, stop_timeout, "rollout stop step")
        assert report.results["sshd001"].state == "done", report.to_json()
        frozen = report.results[FROZEN]
        assert frozen.state == "unreachable" and frozen.data.get("at") == "stopping", report.to_json()
        assert f"node stopped answering during stop (no reply in {stop_timeout:g}s)" in frozen.message, frozen.message
    finally:
        await transport.close()
        store.close()


async def test_rollout_frozen_during_the_upload(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes, process=[{"name": "svc", "start": "exec sleep 1000"}])
    bundle_dir = tmp_path / "bundle"
    random_file(bundle_dir / "blob.bin", 24 << 20)  # a tarball that takes a while to send
    (bundle_dir / "VERSION").write_text("2.0\n")
    store = Store(tmp_path / "state.db")
    transport = Transport(fleet)
    try:
        bundle = Bundle.open(bundle_dir, tmp_path / "bundles", version_file=fleet.service.version_file)
        with freezer(sshd) as frost:
            action = Rollout.new(fleet, transport, store, bundle, build_stages(fleet, None, parallel=1),
                                 state_dir=tmp_path / "state", control=Control(auto_continue=True),
                                 emit=freeze_on(frost, FROZEN, ("uploading",), with_bytes=True), health_timeout=20)
            report = await action.run()
            elapsed = time.monotonic() - (frost.frozen_at or 0)
        assert frost.frozen_at is not None, "the upload ended before the node could be frozen"
        frozen = report.results[FROZEN]
        assert frozen.state == "unreachable" and frozen.data.get("at") == "uploading", report.to_json()
        assert "node stopped answering during the upload" in frozen.message, frozen.message
        # the upload's timeout is a throughput floor (MIN_UPLOAD_RATE): a frozen node is found by
        # its silence, within the command timeout, not after the whole budget
        assert_bounded(elapsed, COMMAND, "rollout upload")
    finally:
        await transport.close()
        store.close()


async def test_logs_frozen_mid_transfer(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes, logs=["logs/*.log"])
    for name in fleet.node_names:
        random_file(sshd.nodes[name].root / "logs" / "big.log", 48 << 20)
    transport = Transport(fleet)
    try:
        with freezer(sshd) as frost:
            action = CollectLogs(fleet, transport, None, fleet.node_names, dest=tmp_path / "dest", compress="gzip",
                                 emit=freeze_on(frost, FROZEN, ("collecting",), with_bytes=True))
            report = await action.run()
            elapsed = time.monotonic() - (frost.frozen_at or 0)
        assert frost.frozen_at is not None, "the transfer ended before the node could be frozen"
        assert_bounded(elapsed, COMMAND, "log collection")
        assert report.results["sshd001"].state == "done", report.to_json()
        frozen = report.results[FROZEN]
        assert frozen.state == "failed", report.to_json()
        assert "node stopped answering during the transfer of logs/big.log" in frozen.message, frozen.message
    finally:
        await transport.close()


async def test_capture_frozen_mid_stream(nodes, tmp_path):
    sshd, fleet = await asyncio.to_thread(nodes, state=["data"])
    for name in fleet.node_names:
        random_file(sshd.nodes[name].root / "data" / "blob", 48 << 20)
    transport = Transport(fleet)
    try:
        with freezer(sshd) as frost:
            action = CaptureState(fleet, transport, None, fleet.node_names, dest=tmp_path / "dest",
                                  emit=freeze_on(frost, FROZEN, ("capturing",), with_bytes=True))
            report = await action.run()
            elapsed = time.monotonic() - (frost.frozen_at or 0)
        assert frost.frozen_at is not None, "the capture ended before the node could be frozen"
        assert_bounded(elapsed, COMMAND, "capture")
        assert report.results["sshd001"].state == "done", report.to_json()
        frozen = report.results[FROZEN]
        assert frozen.state == "unreachable", report.to_json()
        assert "node stopped answering during the capture" in frozen.message, frozen.message
        assert not list((tmp_path / "dest").glob(f"*/{FROZEN}.tar.gz*")), "a frozen node's partial archive was kept"
    finally:
        await transport.close()


async def test_repair_frozen_while_installing(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 3, solo=[FROZEN],
                                   fleet={"service": {"important": ["etc/"]}, "ssh_overrides": SSH})
    for name, node in sshd.nodes.items():
        (node.root / "etc").mkdir(exist_ok=True)
        (node.root / "etc" / "app.conf").write_text("drifted\n" if name == FROZEN else "port=80\n")
        for path in (node.root / "etc", node.root / "etc" / "app.conf"):
            os.chown(path, sshd.pw.pw_uid, sshd.pw.pw_gid)  # the login user repairs it
    fleet = fleet_mod.load(sshd.fleet_path)
    transport = Transport(fleet)
    try:
        with freezer(sshd) as frost:
            action = RepairAction(fleet, transport, None, fleet.node_names, state_dir=tmp_path / "state",
                                  emit=freeze_on(frost, FROZEN, ("installing",)))
            report = await action.run()
            elapsed = time.monotonic() - (frost.frozen_at or 0)
        assert frost.frozen_at is not None, report.to_json()["nodes"][FROZEN]
        assert_bounded(elapsed, COMMAND, "repair")
        frozen = report.results[FROZEN]
        assert frozen.state == "failed", report.to_json()
        errors = frozen.data["errors"]
        assert "node stopped answering during installing" in errors.get("etc/app.conf", ""), report.to_json()
    finally:
        await transport.close()


async def test_repair_source_frozen_during_the_download(make_sshd_fleet, tmp_path):
    """The majority copy is fetched from a node that freezes mid-download: that source is given
    up after the command timeout without progress, and the next one provides the copy."""
    names = ["sshd001", "sshd002", "sshd003"]
    sshd = await asyncio.to_thread(make_sshd_fleet, 3, solo=names,
                                   fleet={"service": {"important": ["etc/"]}, "ssh_overrides": SSH})
    blob = os.urandom(4 << 20)
    for name, node in sshd.nodes.items():
        (node.root / "etc").mkdir(exist_ok=True)
        (node.root / "etc" / "blob").write_bytes(b"drifted" if name == "sshd001" else blob)
        for path in (node.root / "etc", node.root / "etc" / "blob"):
            os.chown(path, sshd.pw.pw_uid, sshd.pw.pw_gid)
    fleet = fleet_mod.load(sshd.fleet_path)
    transport = Transport(fleet)
    frosts: list[Freezer] = []

    def emit(event) -> None:  # freeze whichever source is asked first, as its download starts
        if isinstance(event, ActionProgress) and event.state == "sending" and not frosts:
            frosts.append(Freezer(sshd, event.node))
            frosts[0].freeze()

    try:
        action = RepairAction(fleet, transport, None, fleet.node_names, state_dir=tmp_path / "state", emit=emit)
        report = await action.run()
        assert frosts and frosts[0].frozen_at is not None, report.to_json()
        elapsed = time.monotonic() - frosts[0].frozen_at
    finally:
        for frost in frosts:
            frost.thaw()
        await transport.close()
    assert_bounded(elapsed, COMMAND, "repair download")
    assert report.results["sshd001"].state == "done", report.to_json()
    assert (sshd.nodes["sshd001"].root / "etc" / "blob").read_bytes() == blob
