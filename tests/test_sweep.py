"""The sweep engine against real SSH nodes (in-process asyncssh nodes running real shell commands)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pltui import fleet as fleet_mod
from pltui.model import Health, NodeUpdated, SSHState, SweepFinished, SweepStarted
from pltui.ssh import Transport
from pltui.sweep import Engine

SERVICE = {
    "important": ["bin/*", "etc/"],
    "logs": ["logs/*.log"],
    "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}],
}


def plant(root, *, version="1.0", protocol="7", app=b"app-v1", conf=b"port=80\n", log=b"x" * 1000):
    (root / "bin").mkdir(exist_ok=True)
    (root / "etc" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "VERSION").write_text(version + "\n")
    (root / "PROTOCOL").write_text(protocol + "\n")
    (root / "bin" / "app").write_bytes(app)
    (root / "etc" / "sub" / "app.conf").write_bytes(conf)
    (root / "logs" / "a.log").write_bytes(log)


async def start_process(transport, node, name="web"):
    """Start a real long-running process on the node and record its pid, as a monitor would."""
    result = await transport.run(node, f"cd {node.root} && mkdir -p run && "
                                       f"(nohup sleep 1000 >/dev/null 2>&1 & echo $! > run/{name}.pid)")
    assert result.exit_status == 0, result.stderr


@pytest.fixture
async def fleet5(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet={"service": SERVICE, "ssh_overrides": {"connect_timeout": "2s",
                                                                               "command_timeout": "3s"}})
    for node in sim.nodes.values():
        plant(node.root)
    return sim


async def test_healthy_and_degraded_nodes(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        for name in fleet5.names[:4]:
            await start_process(engine.transport, fleet.nodes[name])
        summary = await engine.sweep()
        healthy = engine.statuses["sim001"]
        assert healthy.ssh == SSHState.OK and healthy.health == Health.UP
        assert healthy.version == "1.0" and healthy.protocol == "7"
        assert healthy.processes[0].alive and healthy.processes[0].pid
        assert healthy.log_bytes == 1000 and healthy.disk_free > 0 and healthy.clock
        dead = engine.statuses["sim005"]
        assert dead.health == Health.DEGRADED and not dead.processes[0].alive
        assert summary["health"] == {"up": 4, "degraded": 1, "down": 0, "unknown": 0}
    finally:
        await engine.close()


async def test_checksums_drift_and_cohorts(fleet5, tmp_path):
    plant(fleet5.nodes["sim002"].root, app=b"tampered")
    (fleet5.nodes["sim003"].root / "etc" / "sub" / "app.conf").unlink()
    plant(fleet5.nodes["sim005"].root, protocol="8")
    fleet = fleet_mod.load(fleet5.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        summary = await engine.sweep(checksums=True)
        assert engine.consensus.drift == {"sim002": ["bin/app"], "sim003": ["etc/sub/app.conf"]}
        assert engine.statuses["sim001"].digests.keys() == {"bin/app", "etc/sub/app.conf"}
        assert summary["largest_cohort"] == "7" and summary["isolated"] == ["sim005"]
        # A liveness sweep keeps the last checksums (and so the drift verdicts).
        await engine.sweep()
        assert engine.consensus.drift["sim002"] == ["bin/app"]
        assert engine.statuses["sim001"].digest_tool == "sha256sum"
    finally:
        await engine.close()


async def test_faulty_nodes_are_classified_and_do_not_stall_the_rest(make_sim_fleet, tmp_path):
    modes = {"sim002": "refuse", "sim003": "silent", "sim004": "garbage", "sim005": "hang",
             "sim006": "banner-silence"}
    sim = await make_sim_fleet(7, modes=modes, fleet={"service": SERVICE, "ssh_overrides": {
        "connect_timeout": "1s", "command_timeout": "2s"}})
    for node in sim.nodes.values():
        plant(node.root)
    fleet = fleet_mod.load(sim.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        started = time.monotonic()
        await engine.sweep()
        elapsed = time.monotonic() - started
        s = engine.statuses
        assert s["sim001"].ssh == SSHState.OK and s["sim007"].ssh == SSHState.OK
        assert s["sim002"].ssh == SSHState.REFUSED and "refused" in s["sim002"].error
        assert s["sim003"].ssh == SSHState.UNREACHABLE and "handshake" in s["sim003"].error
        assert s["sim006"].ssh == SSHState.UNREACHABLE
        assert s["sim004"].ssh == SSHState.GARBLED and "garbled" in s["sim004"].error
        assert s["sim005"].ssh == SSHState.TIMEOUT and "2s" in s["sim005"].error
        for status in s.values():
            assert status.error is None or "\x1b" not in status.error
        # Bounded by the timeouts (connect 1s + command 2s), with generous slack for a loaded CI box.
        assert elapsed < 12, elapsed
    finally:
        await engine.close()


async def test_connections_are_pooled_and_replaced_when_dead(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    node = fleet5.nodes["sim001"]
    try:
        await engine.sweep()
        await engine.sweep()
        assert node.connections == 1 and engine.transport.open_connections == 5
        await node.set_mode("refuse")
        await engine.sweep()
        assert engine.statuses["sim001"].ssh in (SSHState.REFUSED, SSHState.ERROR)
        await node.set_mode("ok")
        await engine.sweep()
        assert engine.statuses["sim001"].ssh == SSHState.OK
        assert node.connections == 1
    finally:
        await engine.close()


async def test_changed_host_key_is_refused_under_every_policy(fleet5, tmp_path):
    fleet5.nodes["sim003"].set_host_key()
    for policy in ("strict", "accept-new"):
        fleet5.write_fleet(tmp_path / f"{policy}.toml", service=SERVICE,
                           ssh_overrides={"host_key_policy": policy})
        fleet = fleet_mod.load(tmp_path / f"{policy}.toml")
        engine = Engine(fleet, state_dir=tmp_path / "state")
        try:
            await engine.sweep()
            status = engine.statuses["sim003"]
            assert status.ssh == SSHState.HOSTKEY, policy
            assert "CHANGED" in status.error
            assert engine.statuses["sim001"].ssh == SSHState.OK
        finally:
            await engine.close()
    # known_hosts was never touched
    assert fleet5.known_hosts_path.read_text().count("\n") == 5


async def test_accept_new_records_first_seen_keys_only(fleet5, tmp_path):
    known = tmp_path / "known_hosts_new"
    lines = fleet5.known_hosts_path.read_text().splitlines(keepends=True)
    known.write_text("".join(lines[1:]))  # sim001 unknown
    for policy, expect in (("strict", SSHState.HOSTKEY), ("accept-new", SSHState.OK)):
        fleet5.write_fleet(tmp_path / "f.toml", service=SERVICE,
                           ssh_overrides={"host_key_policy": policy, "known_hosts": str(known)})
        engine = Engine(fleet_mod.load(tmp_path / "f.toml"), state_dir=tmp_path / "state")
        try:
            await engine.sweep()
            assert engine.statuses["sim001"].ssh == expect, policy
        finally:
            await engine.close()
    assert known.read_text().count("\n") == 5
    assert f"[127.0.0.1]:{fleet5.nodes['sim001'].port} ssh-ed25519" in known.read_text()


async def test_events_stream_and_history(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    queue = engine.subscribe()
    try:
        await engine.sweep()
        await fleet5.nodes["sim002"].set_mode("refuse")
        await engine.sweep()
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        kinds = [type(e) for e in events]
        assert kinds[0] is SweepStarted and kinds[-1] is SweepFinished
        assert sum(1 for e in events if isinstance(e, NodeUpdated)) == 10
        history = engine.store.history(["sim002"])
        assert [h["changes"].get("ssh") for h in history] == ["ok", "refused"]
        assert engine.store.history(["sim001"])[0]["changes"]["ssh"] == "ok"
        assert len(engine.store.history(["sim001"])) == 1  # no change, no new row
    finally:
        await engine.close()


async def test_one_sweep_loop_per_fleet_others_follow(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    owner = Engine(fleet, state_dir=tmp_path / "state")
    follower = Engine(fleet_mod.load(fleet5.fleet_path), state_dir=tmp_path / "state")
    queue = follower.subscribe()
    try:
        owner.start()
        await asyncio.sleep(0.2)
        follower.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and follower.statuses["sim005"].ssh != SSHState.OK:
            await asyncio.sleep(0.2)
        assert owner.lock.owned and not follower.lock.owned
        assert follower.statuses["sim005"].ssh == SSHState.OK
        execs_before = sum(n.execs for n in fleet5.nodes.values())
        # The owner exits: the follower takes the loop over and sweeps itself.
        await owner.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not follower.lock.owned:
            await asyncio.sleep(0.2)
        assert follower.lock.owned
        while time.monotonic() < deadline and sum(n.execs for n in fleet5.nodes.values()) < execs_before + 5:
            await asyncio.sleep(0.2)
        assert sum(n.execs for n in fleet5.nodes.values()) >= execs_before + 5
        assert not queue.empty()
    finally:
        await owner.close()
        await follower.close()


async def test_requests_during_a_sweep_are_coalesced(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    queue = engine.subscribe()
    try:
        engine.start()
        first = await asyncio.wait_for(queue.get(), 20)
        assert isinstance(first, SweepStarted)
        for _ in range(5):  # while the first sweep runs
            engine.request_sweep()
        engine.request_sweep(checksums=True)
        events = [first]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(isinstance(e, SweepFinished) for e in events) < 2:
            events.append(await asyncio.wait_for(queue.get(), 20))
        await asyncio.sleep(1.0)
        while not queue.empty():
            events.append(queue.get_nowait())
        sweeps = [e for e in events if isinstance(e, SweepStarted)]
        assert len(sweeps) == 2  # the due sweep, then one sweep for all six requests
        assert sweeps[1].checksums
    finally:
        await engine.close()


async def test_unreadable_known_hosts_is_a_clear_error(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    transport = Transport(fleet)
    transport.host_keys.path = tmp_path / "missing_known_hosts"
    engine = Engine(fleet, state_dir=tmp_path / "state", transport=transport)
    try:
        await engine.sweep(nodes=["sim001"])
        assert engine.statuses["sim001"].ssh == SSHState.HOSTKEY
        assert "unknown" in engine.statuses["sim001"].error
    finally:
        await engine.close()


async def test_ssh_config_supplies_hostname_port_and_user(fleet5, tmp_path):
    """A node without host/port in the fleet file gets them from its ssh_config Host block."""
    node = fleet5.nodes["sim001"]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host edge-one\n    HostName 127.0.0.1\n    Port {node.port}\n    User {fleet5.user}\n")
    doc = (
        '[fleet]\nname = "cfg"\nnodes = ["edge-one"]\n'
        f'[ssh]\nconfig = "{config}"\nknown_hosts = "{fleet5.known_hosts_path}"\n'
        f'identity_file = "{fleet5.client_key_path}"\n'
        f'[service]\nroot = "{node.root}"\n'
    )
    (tmp_path / "cfg.toml").write_text(doc)
    fleet = fleet_mod.load(tmp_path / "cfg.toml")
    assert fleet.nodes["edge-one"].port is None and fleet.nodes["edge-one"].user is None
    engine = Engine(fleet, state_dir=tmp_path / "state")
    try:
        await engine.sweep()
        status = engine.statuses["edge-one"]
        assert status.ssh == SSHState.OK, status.error
        assert status.version == "1.0"
    finally:
        await engine.close()


async def test_a_new_engine_starts_from_the_stored_state(fleet5, tmp_path):
    fleet = fleet_mod.load(fleet5.fleet_path)
    first = Engine(fleet, state_dir=tmp_path / "state")
    try:
        await first.sweep(checksums=True)
    finally:
        await first.close()
    second = Engine(fleet_mod.load(fleet5.fleet_path), state_dir=tmp_path / "state")
    try:
        # No sweep yet: statuses, checksums and the last summary come from the store.
        assert second.statuses["sim001"].ssh == SSHState.OK
        assert second.statuses["sim001"].digests
        assert second.summary and second.summary["nodes"] == 5 and second.last_sweep_end
    finally:
        await second.close()
