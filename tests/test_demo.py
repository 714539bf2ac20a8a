"""`pltui demo`: the demo fleet (real SSH on loopback, real processes, the real node monitor) and
its planted trouble, seen by a real sweep; `pltui demo --serve` as a subprocess driven by the CLI;
chaos; and that nothing is left running afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pltui import demo as demo_mod
from pltui import fleet as fleet_mod
from pltui.demo import (ALPHA, CRASHLOOP, DRIFT, GARBAGE, HEALTHY, MONITOR_DEAD, REFUSE, SILENT, DemoError,
                        DemoThread, build_demo, claim_dir, prune_old)
from pltui.model import Health, SSHState
from pltui.demo.nodesim import marked_pids, pid_alive
from pltui.sweep import Engine

PLTUI = [sys.executable, "-m", "pltui"]


@pytest.fixture(scope="module")
def demo12(tmp_path_factory):
    """A 12-node demo on its own loop in a thread (as the console uses it), shared by the module."""
    runner = DemoThread(12, tmp_path_factory.mktemp("demo12"))
    demo = runner.start()
    try:
        yield demo
    finally:
        left = runner.stop()
        assert left == []
        assert marked_pids(demo.token) == []


def processes_under(path: Path) -> list[int]:
    """Live processes whose working directory is under `path` (what node processes have)."""
    found = []
    prefix = str(path.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if (cwd == prefix or cwd.startswith(prefix + "/")) and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def pidfile_pids(base: Path) -> list[int]:
    pids = []
    for path in list(base.glob("nodes/*/.pltui/monitor.pid")) + list(base.glob("nodes/*/run/*.pid")):
        text = path.read_text().strip()
        if text.isdigit():
            pids.append(int(text))
    return pids


# --------------------------------------------------------------------------------------------
# The planted trouble, as a real sweep sees it


async def test_every_planted_problem_shows_in_a_sweep(demo12, tmp_path):
    assert demo12.startup_seconds < 10
    roles = demo12.roles
    assert [roles[n] for n in demo12.names[:9]] == [ALPHA] * 3 + [DRIFT, CRASHLOOP, MONITOR_DEAD, REFUSE, SILENT,
                                                                  GARBAGE]
    assert demo12.node(DRIFT) == "demo004" and demo12.with_role(HEALTHY) == ["demo010", "demo011", "demo012"]
    fleet = fleet_mod.load(demo12.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state", heal="off")
    try:
        summary = await engine.sweep(checksums=True)
        st = engine.statuses
        for name in demo12.with_role(HEALTHY) + demo12.with_role(DRIFT):
            s = st[name]
            assert s.ssh == SSHState.OK and s.health == Health.UP, (name, s)
            assert s.monitor == "alive" and s.procs_alive == 2 == len(s.processes)
            assert (s.version, s.protocol) == ("1.4.2", "7") and s.log_bytes > 0
        # alpha: a release ahead on a newer protocol, an isolated cohort, its own track not drifted
        for name in demo12.with_role(ALPHA):
            assert (st[name].version, st[name].protocol, st[name].health) == ("1.5.0", "8", Health.UP)
        assert summary["largest_cohort"] == "7" and summary["isolated"] == demo12.with_role(ALPHA)
        assert {n: fleet.nodes[n].track for n in demo12.with_role(ALPHA)} == dict.fromkeys(demo12.with_role(ALPHA), "alpha")
        # the drifted important file, and only that
        assert engine.consensus.drift == {demo12.node(DRIFT): ["etc/proxy.conf"]}
        assert summary["no_quorum"] == {}
        # the crash loop: proxy up, cache dead (and, once the monitor has seen it exit, in backoff)
        crash = st[demo12.node(CRASHLOOP)]
        assert crash.monitor == "alive" and crash.health == Health.DEGRADED
        assert crash.processes[0].alive and not crash.processes[1].alive
        deadline = time.monotonic() + 10
        while crash.processes[1].state != "backoff" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await engine.sweep(nodes=[demo12.node(CRASHLOOP)])
            crash = engine.statuses[demo12.node(CRASHLOOP)]
        proxy, cache = crash.processes
        assert proxy.alive and not cache.alive and cache.state == "backoff" and cache.last_exit == 3
        # the dead monitor: its processes still run
        dead = st[demo12.node(MONITOR_DEAD)]
        assert dead.monitor == "dead" and dead.procs_alive == 2 and dead.health == Health.DEGRADED
        # and the three unreachable kinds, each classified
        assert st[demo12.node(REFUSE)].ssh == SSHState.REFUSED
        assert st[demo12.node(SILENT)].ssh == SSHState.UNREACHABLE
        assert st[demo12.node(GARBAGE)].ssh == SSHState.GARBLED
        assert summary["health"] == {"up": 7, "degraded": 2, "down": 3, "unknown": 0}

        # heal = monitor revives the dead monitor, which adopts the running processes
        healed = await engine.heal([demo12.node(MONITOR_DEAD)])
        assert healed[0].ok, healed
        await engine.sweep(nodes=[demo12.node(MONITOR_DEAD)])
        revived = engine.statuses[demo12.node(MONITOR_DEAD)]
        assert revived.monitor == "alive" and revived.health == Health.UP
    finally:
        await engine.close()


async def test_crash_loop_restarts_keep_growing(demo12, tmp_path):
    fleet = fleet_mod.load(demo12.fleet_path)
    name = demo12.node(CRASHLOOP)
    engine = Engine(fleet, state_dir=tmp_path / "state", nodes=[name], heal="off")
    try:
        await engine.sweep()
        first = engine.statuses[name].processes[1].restarts
        assert first is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            await engine.sweep()
            cache = engine.statuses[name].processes[1]
            if cache.restarts > first:
                break
        assert cache.restarts > first and not cache.alive
        assert "FATAL: cache index" in (demo12.root(name) / "logs" / "cache.log").read_text()
    finally:
        await engine.close()


def test_fleet_file_bundle_and_legend(demo12):
    fleet = fleet_mod.load(demo12.fleet_path)
    assert fleet.name == "demo" and len(fleet.nodes) == 12
    assert fleet.ssh.host_key_policy == "strict" and Path(fleet.ssh.known_hosts).is_file()
    assert fleet.members("alpha") == ("demo001", "demo002", "demo003")
    assert set(fleet.members("production")) == set(demo12.names[3:])
    assert set(fleet.members("trouble")) == {f"demo00{i}" for i in range(4, 10)}
    assert [s.name for s in fleet.rollout.stages] == ["alpha", "production"]
    assert not fleet.rollout.stages[0].pause and fleet.sweep.heal == "monitor"
    assert [p.name for p in fleet.service.processes] == ["proxy", "cache"]
    assert (demo12.bundle_dir / "VERSION").read_text() == "1.5.1\n" and demo12.bundle_tarball.is_file()
    from pltui.actions.bundle import Bundle

    for source in (demo12.bundle_dir, demo12.bundle_tarball):
        bundle = Bundle.open(source, demo12.base_dir / "work")
        assert bundle.version == "1.5.1" and {"VERSION", "PROTOCOL", "bin", "etc"} <= set(bundle.entries)
    legend = (demo12.base_dir / "LEGEND.txt").read_text()
    assert "demo007" in legend and "refuses connections" in legend and str(demo12.fleet_path) in legend


# --------------------------------------------------------------------------------------------
# pltui demo --serve, driven by the CLI as a user would


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "pltui demo --serve printed no fleet path in time"
    return proc.stdout.readline().decode().strip()


def test_serve_cli_and_nothing_left(tmp_path):
    base = tmp_path / "demo"
    state = tmp_path / "state"
    proc = subprocess.Popen(PLTUI + ["demo", "--serve", "--nodes", "10", "--dir", str(base), "--state", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fleet_path = _read_line(proc, 60)
        assert fleet_path == str(base.resolve() / "fleet.toml")
        started = pidfile_pids(base)
        monitor = int((base / "nodes" / "demo010" / ".pltui" / "monitor.pid").read_text())
        env = Path(f"/proc/{monitor}/environ").read_bytes().split(b"\0")
        token = next(e for e in env if e.startswith(b"PLTUI_TESTFLEET=")).split(b"=", 1)[1].decode()
        assert len(started) >= 20 and marked_pids(token)

        sweep = subprocess.run(PLTUI + ["sweep", fleet_path, "--json", "--state", str(state)],
                               capture_output=True, timeout=60)
        assert sweep.returncode == 1, sweep.stderr  # some nodes are not healthy, on purpose
        doc = json.loads(sweep.stdout)
        text = json.dumps(doc)
        for expected in ('"refused"', '"unreachable"', '"garbled"', '"1.5.0"', '"1.4.2"'):
            assert expected in text
        execd = subprocess.run(PLTUI + ["exec", fleet_path, "--state", str(state), "-g", "alpha", "--", "cat", "VERSION"],
                               capture_output=True, timeout=60)
        assert execd.returncode == 0, execd.stderr
        assert b"demo[001-003]" in execd.stdout and b"1.5.0" in execd.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert b"stopped" in err
    assert marked_pids(token) == []
    assert [p for p in started if pid_alive(p)] == []
    assert processes_under(base) == []


def test_sigterm_during_startup_leaves_nothing(tmp_path):
    base = tmp_path / "demo"
    proc = subprocess.Popen(PLTUI + ["demo", "--serve", "--nodes", "30", "--dir", str(base),
                                     "--state", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not list(base.glob("nodes/*/.pltui/monitor.pid")) and time.monotonic() < deadline:
        time.sleep(0.02)  # bootstrap has begun: monitors are starting
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    deadline = time.monotonic() + 5
    while processes_under(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(base) == []


def test_console_on_the_demo_then_quit_leaves_nothing(tmp_path):
    """`pltui demo` in a terminal: the console opens on the live demo fleet; quitting stops it all."""
    import fcntl
    import pty
    import struct
    import termios

    base = tmp_path / "demo"
    pid, fd = pty.fork()
    if pid == 0:  # the child: pltui demo in a 140x40 terminal
        os.environ.update(TERM="xterm-256color", COLUMNS="140", LINES="40")
        os.execv(sys.executable, PLTUI + ["demo", "--nodes", "10", "--dir", str(base), "--state", str(tmp_path / "s")])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    screen = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in screen):
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    return

    try:
        read_for(60, until=b"swept")  # the header after the first sweep: "demo swept 1s ago"
        assert b"swept" in screen, screen[-2000:]
        started = pidfile_pids(base)
        assert started
        os.write(fd, b"q")
        read_for(30, until=b"pltui demo: stopped")
    finally:
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, screen[-2000:]
    assert b"pltui demo: stopped" in screen
    assert [p for p in started if pid_alive(p)] == [] and processes_under(base) == []


def test_killed_demo_process_leaves_nothing(tmp_path):
    """Even SIGKILL of `pltui demo` (no cleanup possible) leaves no node process: its reaper acts."""
    base = tmp_path / "demo"
    proc = subprocess.Popen(PLTUI + ["demo", "--serve", "--nodes", "10", "--dir", str(base),
                                     "--state", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _read_line(proc, 60)
        started = pidfile_pids(base)
        assert processes_under(base)
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while processes_under(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(base) == [] and [p for p in started if pid_alive(p)] == []


def test_bad_node_counts_are_usage_errors(tmp_path, capsys):
    from pltui.cli import main

    assert main(["demo", "--serve", "--nodes", "3", "--dir", str(tmp_path / "d")]) == 2
    assert "--nodes" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Chaos, directories, the service programs


async def test_chaos_keeps_things_moving_and_stops_cleanly(tmp_path):
    from pltui.ssh import Transport

    demo = await build_demo(10, tmp_path / "chaos", chaos=True, chaos_period=0.2, seed=7)
    try:
        await asyncio.sleep(3)
        lines = demo.chaos_log.read_text().splitlines()
        assert len(lines) >= 4 and any("killed" in line for line in lines)
        fleet = fleet_mod.load(demo.fleet_path)
        engine = Engine(fleet, state_dir=tmp_path / "state", heal="monitor",
                        transport=Transport(fleet, connect_timeout=1))
        try:
            summary = await engine.sweep()
            assert summary["nodes"] == 10 and summary["health"]["up"] >= 1
        finally:
            await engine.close()
    finally:
        left = await demo.stop()
    assert left == [] and marked_pids(demo.token) == []
    assert processes_under(demo.base_dir) == []


def test_demo_directories(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("mine")
    with pytest.raises(DemoError, match="not a demo directory"):
        claim_dir(busy)
    assert (busy / "precious.txt").read_text() == "mine"
    old = tmp_path / "old"
    fd = claim_dir(old)
    (old / "leftover").write_text("x")
    with pytest.raises(DemoError, match="in use"):
        claim_dir(old)
    os.close(fd)
    fd = claim_dir(old)  # an old demo directory, not in use: emptied and reused
    assert [p.name for p in old.iterdir()] == [demo_mod.MARKER]
    os.close(fd)
    parent = tmp_path / "many"
    for i in range(6):
        os.close(claim_dir(parent / f"2026010{i}"))
    held = claim_dir(parent / "20250101")  # the oldest, but running: kept
    from pltui.paths import fleet_dir

    history = fleet_dir(tmp_path / "state", "demo", (parent / "20260100" / "fleet.toml").resolve())
    prune_old(parent, keep=2, state_root=tmp_path / "state")
    assert sorted(p.name for p in parent.iterdir()) == ["20250101", "20260104", "20260105"]
    assert not history.exists()
    os.close(held)


def test_service_programs_log_and_rotate(tmp_path):
    pace = demo_mod.Pace(monitor=1, proxy=0.05, cache=0.05, sweep="15s", checksums="2m", log_max=400)
    demo_mod.lay_out_node(tmp_path, HEALTHY, pace)
    procs = [subprocess.Popen(argv, cwd=tmp_path, start_new_session=True, stderr=subprocess.DEVNULL)
             for argv in (["bin/proxy", "--config", "etc/proxy.conf"], ["bin/cache", "--dir", "var/cache"])]
    rotated = [tmp_path / "logs" / "proxy.log.1", tmp_path / "logs" / "cache.log.1"]
    try:
        current = [tmp_path / "logs" / "proxy.log", tmp_path / "logs" / "cache.log"]
        deadline = time.monotonic() + 30
        # Rotated at least once, and written again since (right after a rotation the live log
        # does not exist until the program's next line, which a loaded machine may delay).
        while not all(p.is_file() for p in rotated + current) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
    for name in ("proxy", "cache"):
        log = tmp_path / "logs" / f"{name}.log"
        assert log.stat().st_size <= 400 + 200 and (tmp_path / "logs" / f"{name}.log.1").is_file()
    assert "stats objects=" in (tmp_path / "logs" / "cache.log.1").read_text()
    assert (tmp_path / "var" / "cache" / "stats").is_file()
    crash = tmp_path / "crash"
    demo_mod.lay_out_node(crash, CRASHLOOP, pace)
    result = subprocess.run(["bin/cache", "--dir", "var/cache"], cwd=crash, capture_output=True, timeout=10)
    assert result.returncode == 3 and b"corrupt" in result.stderr
