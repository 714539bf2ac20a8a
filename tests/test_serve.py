"""`pltui serve`: the headless sweeper, run as a real process against in-process asyncssh nodes.

It sweeps and writes the store, refuses a second sweeper (serve or sweep --watch) naming the
holder, is followed live by an Engine in another process, sweeps when a follower asks, and on
SIGTERM (even in the middle of a sweep stuck on a hung node) exits 0 and frees lock and pid file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import time

from pltui import fleet as fleet_mod
from pltui.model import NodeUpdated
from pltui.paths import fleet_dir
from pltui.store import Store
from pltui.sweep import Engine
from rigs.sshd_fleet import free_port

SSH = {"connect_timeout": "2s", "command_timeout": "30s"}
QUIET = {"interval": "1h", "checksum_interval": "24h"}  # sweeps after the first only on request


async def pltui(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"pltui {' '.join(argv)} did not finish within {timeout}s") from None
    return proc.returncode, out.decode(), err.decode()


async def start_server(fleet_path, state, log, *extra):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "serve", str(fleet_path), "--state", str(state), "--log", str(log), *extra,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


async def wait_for_log(log, needle: str, count: int = 1, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if text.count(needle) >= count:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} x{count} not in the server log within {timeout}s:\n{text}")


async def stop(proc, timeout: float = 30) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"pltui serve did not exit within {timeout}s of SIGTERM") from None
    return proc.returncode, err.decode()


def lock_is_free(path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


async def test_serve_sweeps_refuses_a_second_sweeper_is_followed_and_stops(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    state, log, pidfile = tmp_path / "state", tmp_path / "serve.log", tmp_path / "serve.pid"
    fleet = fleet_mod.load(sim.fleet_path)
    server = await start_server(sim.fleet_path, state, log, "--pidfile", str(pidfile))
    try:
        text = await wait_for_log(log, "finished: 3 up")
        assert "serving fleet" in text and pidfile.read_text().strip() == str(server.pid)
        # a second sweeper is refused in one line naming the holder; the pid file stays the first's
        for argv in (["serve", "--pidfile", str(pidfile)], ["sweep", "--watch"]):
            code, _out, err = await pltui(argv[0], str(sim.fleet_path), "--state", str(state), *argv[1:])
            assert code == 2 and len(err.strip().splitlines()) == 1, (argv, code, err)
            assert f"pid {server.pid}" in err and "Traceback" not in err, err
        assert pidfile.read_text().strip() == str(server.pid)
        # a follower (this process) sees the server's statuses through the store, live
        follower = Engine(fleet, state_dir=state)
        queue = follower.subscribe()
        follower.start()
        try:
            seen = {}
            while len(seen) < 3:
                event = await asyncio.wait_for(queue.get(), 30)
                if isinstance(event, NodeUpdated):
                    seen[event.status.node] = event.status.health.value
            assert set(seen.values()) == {"up"} and not follower.lock.owned
            # ... and asks the server for a sweep instead of sweeping itself
            follower.request_sweep()
            await wait_for_log(log, "finished: 3 up", count=2, timeout=30)
        finally:
            await follower.close()
        store = Store(fleet_dir(state, fleet.name, fleet.path) / "pltui.db")
        try:
            assert store.last_sweep()["id"] == 2
        finally:
            store.close()
    finally:
        code, err = await stop(server)
    assert code == 0 and "Traceback" not in err, err
    assert "stopped; sweep lock released" in log.read_text()
    assert not pidfile.exists()
    assert lock_is_free(fleet_dir(state, fleet.name, fleet.path) / "sweep.lock")


async def test_sigterm_in_the_middle_of_a_sweep(make_sim_fleet, tmp_path):
    """A hung node keeps the sweep running (30 s command timeout): SIGTERM ends it at once."""
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    await sim.set_modes("hang", [sim.names[1]])
    state, log = tmp_path / "state", tmp_path / "serve.log"
    fleet = fleet_mod.load(sim.fleet_path)
    server = await start_server(sim.fleet_path, state, log)
    try:
        await wait_for_log(log, "started: 2 nodes")
        await asyncio.sleep(1.0)
        started = time.monotonic()
        code, err = await stop(server, timeout=20)
        assert time.monotonic() - started < 20
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert code == 0 and "Traceback" not in err, err
    text = log.read_text()
    assert "cancelling the running sweep" in text and "sweep lock released" in text, text
    assert lock_is_free(fleet_dir(state, fleet.name, fleet.path) / "sweep.lock")


async def test_serve_once_for_cron(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    state = tmp_path / "state"
    fleet = fleet_mod.load(sim.fleet_path)
    sim.fleet_path.write_text(sim.fleet_path.read_text() + '\n[store]\nhistory = "30d"\n')
    store = Store(fleet_dir(state, fleet.name, fleet.path) / "pltui.db")
    old = time.time() - 31 * 86400
    store.db.execute("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                     (old, "info", None, "test", "a month old"))
    store.db.execute("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                     (time.time() - 86400, "info", None, "test", "yesterday"))
    store.close()
    code, _out, err = await pltui("serve", str(sim.fleet_path), "--state", str(state), "--once")
    assert code == 0, err
    assert "finished: 2 up" in err and "Traceback" not in err  # the log goes to stderr by default
    store = Store(fleet_dir(state, fleet.name, fleet.path) / "pltui.db")
    try:
        last = store.last_sweep()
        assert last["summary"]["health"]["up"] == 2 and last["checksums"]  # the first one is due
        messages = [e["message"] for e in store.events()]
        assert "yesterday" in messages and "a month old" not in messages  # [store].history = 30d
    finally:
        store.close()


async def test_sweep_watch_owns_the_lock_and_sweeps_when_a_follower_asks(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    state = tmp_path / "state"
    fleet = fleet_mod.load(sim.fleet_path)
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "sweep", str(sim.fleet_path), "--state", str(state), "--watch", "--json",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        async def documents(count: int) -> None:
            seen = 0
            while seen < count:
                line = await asyncio.wait_for(watch.stdout.readline(), 30)
                assert line, "sweep --watch ended"
                seen += line.startswith(b'  "fleet":')
        await documents(1)
        follower = Engine(fleet, state_dir=state)
        try:
            assert follower.lock.held_elsewhere()  # consoles follow it
            follower.request_sweep()
            await documents(1)  # the next sweep came on request, not after the 1h interval
        finally:
            await follower.close()
    finally:
        _code, err = await stop(watch)
    assert "Traceback" not in err, err


async def test_attach_hooks_get_the_events_and_a_failing_hook_is_logged(make_sim_fleet, tmp_path, monkeypatch):
    """Where metrics and alerts plug in: each hook runs beside the sweeps; one that fails is
    said in the log and the server goes on."""
    import io

    from pltui import server as server_mod
    from pltui.model import SweepFinished

    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    fleet = fleet_mod.load(sim.fleet_path)
    stream = io.StringIO()
    got = []

    async def collector(engine):
        queue = engine.subscribe()
        while True:
            event = await queue.get()
            got.append(event)
            if isinstance(event, SweepFinished):
                server.stop()

    async def broken(engine):
        raise RuntimeError("hook bug")

    monkeypatch.setattr(server_mod, "ATTACH_HOOKS", [collector, broken])
    server = server_mod.Server(fleet, log=server_mod.EventLog(stream), state_dir=tmp_path / "state")
    await asyncio.wait_for(server.run(), 60)
    finished = [e for e in got if isinstance(e, SweepFinished)]
    assert finished and finished[0].summary["health"]["up"] == 2
    text = stream.getvalue()
    assert "broken stopped: RuntimeError: hook bug" in text and "finished: 2 up" in text, text
    assert text.rstrip().endswith("stopped; sweep lock released")


async def test_serve_metrics_endpoint_is_scraped_and_a_taken_port_is_exit_2(make_sim_fleet, tmp_path):
    """`serve --metrics HOST:PORT`: Prometheus scrapes the sweeper; a port in use is one line, exit 2."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH, "sweep": QUIET})
    state, log = tmp_path / "state", tmp_path / "serve.log"
    port = free_port()
    proc = await start_server(sim.fleet_path, state, log, "--metrics", f"127.0.0.1:{port}")
    try:
        await wait_for_log(log, "finished: 2 up")
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
        samples = {(s.name, s.labels.get("node")): s.value
                   for family in text_string_to_metric_families(body) for s in family.samples}
        assert all(samples[("pltui_node_up", node)] == 1 for node in sim.names)
        # a second server is refused on the lock; one on a taken port never gets that far
        code, _out, err = await pltui("serve", str(sim.fleet_path), "--state", str(tmp_path / "other"),
                                      "--metrics", str(port), "--once")
        assert code == 2 and len(err.strip().splitlines()) >= 1 and "Traceback" not in err
        assert f"{port}" in err.strip().splitlines()[-1]
        code, _out, err = await pltui("serve", str(sim.fleet_path), "--state", str(state), "--metrics", "nope:x")
        assert code == 2 and "--metrics" in err and "Traceback" not in err
    finally:
        code, err = await stop(proc)
    assert code == 0, err
