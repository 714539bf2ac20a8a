"""The installed probe over real SSH (in-process asyncssh nodes and real OpenSSH sshd): after
bootstrap a sweep sends a short command, not the probe's body; a node whose installed probe was
changed, or that has none, gets the body over the same channel and reports correctly."""

from __future__ import annotations

import os

from pltui import fleet as fleet_mod
from pltui import probe
from pltui.actions import control as control_mod
from pltui.model import SSHState
from pltui.probe import shell_path
from pltui.ssh import Transport
from pltui.sweep import Engine

SERVICE = {
    "important": ["bin/*"],
    "logs": ["logs/*.log"],
    "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}],
}
FLEET = {"service": SERVICE, "ssh_overrides": {"connect_timeout": "10s", "command_timeout": "20s"}}


class CountingTransport(Transport):
    """The real transport, noting the bytes each command sent to each node."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent: dict[str, int] = {}

    async def run(self, node, command, **kwargs):
        result = await super().run(node, command, **kwargs)
        self.sent[node.name] = result.sent
        return result


def plant(root, version="1.0"):
    for d in ("bin", "logs"):
        (root / d).mkdir(exist_ok=True)
    (root / "VERSION").write_text(f"{version}\n")
    (root / "bin" / "app").write_bytes(b"app-v1")
    (root / "logs" / "a.log").write_bytes(b"x" * 100)


async def start_web(engine, name):
    """A live process owned by the node's login user (kill -0 must be allowed), as the service."""
    node = engine.fleet.nodes[name]
    result = await engine.transport.run(node, f"cd {shell_path(node.root)} && mkdir -p run && (nohup sleep 600 >/dev/null 2>&1 & "
                                              "echo $! > run/web.pid)")
    assert result.exit_status == 0, result.stderr


def kill_web(nodes):
    for name in nodes.names:
        try:
            os.kill(int((nodes.nodes[name].root / "run" / "web.pid").read_text()), 9)
        except (OSError, ValueError):
            pass


def engine_for(nodes) -> Engine:
    fleet = fleet_mod.load(nodes.fleet_path)
    engine = Engine(fleet, state_dir=nodes.fleet_path.parent / "state")
    engine.transport = CountingTransport(fleet)
    return engine


def short(engine, names) -> dict[str, int]:
    """Bytes each node was sent, counted as if its root were `/srv/svc`: the rigs' roots are long
    temporary paths, and a sweep's command holds the root once."""
    return {n: engine.transport.sent[n] - len(engine.fleet.nodes[n].root) + len("/srv/svc") for n in names}


def assert_correct(engine, names, checksums=False):
    for name in names:
        status = engine.statuses[name]
        assert status.ssh == SSHState.OK, (name, status.error)
        assert status.version == "1.0", (name, status.version)
        assert status.log_bytes == 100 and status.processes[0].alive, name
        if checksums:
            assert set(status.digests) == {"bin/app"}, status.digests


async def check_installed_probe(nodes):
    names = nodes.names
    for name in names:
        plant(nodes.nodes[name].root)
    engine = engine_for(nodes)
    try:
        for name in names:
            await start_web(engine, name)
        await engine.sweep()  # nothing installed: the body goes over on request
        assert_correct(engine, names)
        assert all(engine.transport.sent[n] > len(probe.probe_body()) for n in names), engine.transport.sent
        for name in names:
            await probe.install(engine.transport, engine.fleet.nodes[name])
        path = probe.installed_path()
        assert all((nodes.nodes[n].root / path).is_file() for n in names)
        await engine.sweep()
        assert_correct(engine, names)
        assert all(v < 300 for v in short(engine, names).values()), short(engine, names)
        await engine.sweep(checksums=True)
        assert_correct(engine, names, checksums=True)
        assert all(v < 300 for v in short(engine, names).values()), short(engine, names)

        # A changed or missing file: a checksum sweep verifies the installed probe's sha256 and
        # sends the body instead (a liveness sweep trusts the file by its digest-derived name).
        tampered, missing = names[0], names[1]
        installed = nodes.nodes[tampered].root / path
        good = installed.read_bytes()
        installed.write_bytes(b'echo "pltui-probe 1"; echo "clock 1"; echo "version 6.6.6"; echo end; exit 0\n' + good)
        (nodes.nodes[missing].root / path).unlink()
        await engine.sweep(checksums=True)
        assert_correct(engine, names, checksums=True)  # the tampered node's version is still 1.0
        for name in (tampered, missing):
            assert engine.transport.sent[name] > len(probe.probe_body()), engine.transport.sent
        assert all(v < 300 for v in short(engine, names[2:]).values()), short(engine, names)
        installed.write_bytes(good)

        # A liveness sweep: a missing or empty file gets the body; a truncated one is sourced and
        # its report, with no end record, is garbled: never an unremarked healthy status.
        damaged = nodes.nodes[names[2]].root / path
        for cut in (len(good) // 4, len(good) // 2, len(good) - 12):
            damaged.write_bytes(good[:cut])
            await engine.sweep()
            status = engine.statuses[names[2]]
            assert status.ssh == SSHState.GARBLED, (cut, status.ssh, status.error)
            assert status.error.startswith("garbled probe output: probe report truncated"), status.error
            assert_correct(engine, names[:2])
        damaged.write_bytes(b"")
        await engine.sweep()
        assert_correct(engine, names)
        for name in (missing, names[2]):
            assert engine.transport.sent[name] > len(probe.probe_body()), engine.transport.sent
        assert short(engine, [tampered])[tampered] < 300, short(engine, names)
    finally:
        await engine.close()
        kill_web(nodes)


async def test_installed_probe_over_asyncssh_nodes(make_sim_fleet):
    await check_installed_probe(await make_sim_fleet(3, fleet=FLEET))


async def test_installed_probe_over_real_sshd(make_sshd_fleet):
    await check_installed_probe(make_sshd_fleet(3, fleet=FLEET))


async def test_bootstrap_installs_the_probe_and_removes_older_versions(make_sim_fleet):
    sim = await make_sim_fleet(2, fleet=FLEET)
    for name in sim.names:
        plant(sim.nodes[name].root)
        (sim.nodes[name].root / ".pltui").mkdir(exist_ok=True)
        (sim.nodes[name].root / ".pltui" / "probe-0000000000000000.sh").write_text("old\n")
    fleet = fleet_mod.load(sim.fleet_path)
    transport = Transport(fleet)
    try:
        boot = await control_mod.Bootstrap(fleet, transport, None, fleet.node_names).run()
        assert all(r.state == "done" for r in boot.results.values()), boot.results
        for name in sim.names:
            found = sorted(p.name for p in (sim.nodes[name].root / ".pltui").glob("probe-*"))
            assert found == [probe.installed_path().split("/")[1]], found
            assert (sim.nodes[name].root / probe.installed_path()).read_bytes() == probe.probe_body()
    finally:
        await transport.close()
        control_mod_stop = [sim.nodes[n].root / ".pltui" / "monitor.pid" for n in sim.names]
        for pidfile in control_mod_stop:
            try:
                os.kill(int(pidfile.read_text()), 9)
            except (OSError, ValueError):
                pass
