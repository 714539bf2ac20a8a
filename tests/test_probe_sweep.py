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


def _kill_started(sim):
    """End the sleeps the tests started on the nodes (by the pids they wrote)."""
    for node in sim.nodes.values():
        for pidfile in ("run/web.pid", ".pltui/monitor.pid"):
            try:
                os.kill(int((node.root / pidfile).read_text()), 9)
            except (OSError, ValueError):
                pass


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
        _kill_started(sim)


def _many(directory, count, *, name_len=12, data=b"x"):
    """`count` small files in `directory` (names padded to `name_len` characters)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        fd = os.open(directory / f"{i:0{name_len}d}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.close(fd)


async def test_thirty_thousand_log_files_do_not_time_the_node_out(make_sim_fleet, tmp_path):
    """The old probe appended each match to "$@" (quadratic): 20,000 log files timed out."""
    service = dict(SERVICE, logs=["logs/*.log", "many/*"])
    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path, n=1, service=service)
    try:
        _many(sim.nodes["sim001"].root / "many", 30000, data=b"ab")
        await engine.sweep()
        status = engine.statuses["sim001"]
        assert status.ssh == SSHState.OK, status.error
        assert status.log_bytes == 100 + 2 * 30000
    finally:
        await engine.close()


async def test_twenty_thousand_important_files_with_long_names_are_all_digested(make_sim_fleet, tmp_path):
    service = dict(SERVICE, important=["bin/*", "data/*"])
    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path, n=1, service=service)
    try:
        _many(sim.nodes["sim001"].root / "data", 20000, name_len=150)
        await engine.sweep(checksums=True)
        status = engine.statuses["sim001"]
        assert status.ssh == SSHState.OK, status.error
        assert len(status.digests) == 20001 and status.warnings == []
        assert status.digests["data/" + "0" * 150] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    finally:
        await engine.close()


async def test_clock_skew_is_measured_against_the_probe_start(make_sim_fleet, tmp_path):
    """A probe that runs 3 s (here: a slow protocol command) is no 3 s clock skew."""
    service = dict(SERVICE, protocol_command="sleep 3; echo 7")
    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path, n=1, service=service)
    try:
        await engine.sweep()
        status = engine.statuses["sim001"]
        assert status.ssh == SSHState.OK and status.protocol == "7"
        assert status.latency_ms >= 3000
        assert abs(status.clock_skew) < 1.5
    finally:
        await engine.close()


async def test_monitor_spec_naming_other_processes_than_the_fleet_is_flagged(make_sim_fleet, tmp_path, capsys):
    """The heartbeat lists the processes of the spec the monitor runs; the fleet has only `web`."""
    from pltui.commands.sweep import print_table

    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path)
    try:
        for name in sim.names:
            node = fleet.nodes[name]
            await start_process(engine.transport, node)
            cmd = (f"cd {node.root} && mkdir -p .pltui && (nohup sleep 1000 >/dev/null 2>&1 & "
                   "echo $! > .pltui/monitor.pid)")
            assert (await engine.transport.run(node, cmd)).exit_status == 0
        procs = {"sim001": ["web", "cache"], "sim002": ["web"]}
        for name, names in procs.items():
            lines = [f"heartbeat {int(time.time())}", "monitor 1 5"]
            lines += [f"proc {p} running 1 0 - -" for p in names]
            (sim.nodes[name].root / ".pltui" / "state").write_text("\n".join(lines) + "\n")
        summary = await engine.sweep()
        odd, good = engine.statuses["sim001"], engine.statuses["sim002"]
        assert odd.monitor == "alive" and odd.procs_alive == 1
        assert odd.health == Health.DEGRADED
        assert any("monitor spec" in w and "cache" in w for w in odd.warnings)
        assert good.warnings == [] and good.health == Health.UP
        print_table(engine, sim.names, summary)
        printed = capsys.readouterr().out
        assert "monitor spec differs from the fleet file: processes not in the fleet file: cache" in printed
    finally:
        await engine.close()
        _kill_started(sim)


async def test_special_important_paths_are_flagged_and_never_block_the_probe(make_sim_fleet, tmp_path):
    sim, fleet, engine = await _engine(make_sim_fleet, tmp_path)
    try:
        odd = sim.nodes["sim001"].root
        os.mkfifo(odd / "bin" / "fifo")        # opening it would block the probe until the timeout
        os.symlink("/dev/zero", odd / "bin" / "zero")  # reading it would never end
        for name in sim.names:
            await start_process(engine.transport, fleet.nodes[name])
        await engine.sweep(checksums=True)
        status = engine.statuses["sim001"]
        assert status.ssh == SSHState.OK, status.error
        assert status.special_files == {"bin/fifo": "fifo", "bin/zero": "link to device"}
        assert status.health == Health.DEGRADED and list(status.digests) == ["bin/app"]
        assert sorted(w.split(" not read")[0] for w in status.warnings) == [
            "important path bin/fifo", "important path bin/zero"]
        await engine.sweep()  # a liveness sweep keeps what the checksum sweep found
        assert engine.statuses["sim001"].special_files and len(engine.statuses["sim001"].warnings) == 2
        assert engine.statuses["sim002"].health == Health.UP
    finally:
        await engine.close()
        _kill_started(sim)
