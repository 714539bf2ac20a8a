"""The probe over real SSH (in-process asyncssh nodes running the real probe.sh under /bin/sh):
what a sweep makes of odd bytes, special files, skewed clocks and spec/fleet mismatches."""

from __future__ import annotations

import os
import time

from pltui import fleet as fleet_mod
from pltui.model import Health, SSHState
from pltui.sweep import Engine

SERVICE = {
    "important": ["bin/*"],
    "logs": ["logs/*.log"],
    "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}],
}


def plant(root):
    (root / "bin").mkdir(exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "VERSION").write_text("1.0\n")
    (root / "bin" / "app").write_bytes(b"app-v1")
    (root / "logs" / "a.log").write_bytes(b"x" * 100)


async def start_process(transport, node, name="web"):
    result = await transport.run(node, f"cd {node.root} && mkdir -p run && "
                                       f"(nohup sleep 1000 >/dev/null 2>&1 & echo $! > run/{name}.pid)")
    assert result.exit_status == 0, result.stderr


async def _engine(make_sim_fleet, tmp_path, n=2, service=SERVICE):
    sim = await make_sim_fleet(n, fleet={"service": service, "ssh_overrides": {"connect_timeout": "5s",
                                                                               "command_timeout": "20s"}})
    for node in sim.nodes.values():
        plant(node.root)
    fleet = fleet_mod.load(sim.fleet_path)
    return sim, fleet, Engine(fleet, state_dir=tmp_path / "state")


async def test_bytes_that_are_not_utf8_do_not_take_the_node_down(make_sim_fleet, tmp_path):
    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path)
    try:
        odd = sim.nodes["sim001"].root
        (odd / "VERSION").write_bytes(b"1.0\x9b-odd\n")
        (odd / "bin" / os.fsdecode(b"caf\xe9")).write_bytes(b"x")  # a Latin-1 name: bytes c a f 0xe9
        for name in sim.names:
            await start_process(engine.transport, fleet.nodes[name])
        await engine.sweep(checksums=True)
        status = engine.statuses["sim001"]
        assert status.ssh == SSHState.OK, status.error
        assert status.processes[0].alive and status.monitor == "absent"
        assert status.version == "1.0\\x9b-odd"
        assert "bin/app" in status.digests and "bin/caf\\xe9" in status.digests
        assert any("version" in w and "UTF-8" in w for w in status.warnings)
        assert any("caf\\xe9" in w for w in status.warnings)
        assert engine.statuses["sim002"].warnings == []
    finally:
        await engine.close()
