"""The node monitor driven by pltui over real OpenSSH: bootstrap, control, sweep reports, heal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pltui.fleet import load
from pltui.sweep import Engine

SERVICE = {
    "monitor_interval": "1s",
    "process": [
        {"name": "web", "start": "exec sleep 1000", "pidfile": "run/web.pid", "stop_timeout": "2s"},
        {"name": "flaky", "start": "sh -c 'exit 3'", "pidfile": "run/flaky.pid"},
    ],
}


def pltui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pltui", *args], capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 30.0, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def sweep(path: Path, state: Path) -> dict:
    result = pltui("sweep", str(path), "--state", str(state), "--json")
    assert result.returncode in (0, 1), result.stderr
    return {n["node"]: n for n in json.loads(result.stdout)["nodes"]}


def proc(record: dict, name: str) -> dict:
    return next(p for p in record["processes"] if p["name"] == name)


@pytest.fixture
def monitored(make_sshd_fleet, tmp_path):
    sshd = make_sshd_fleet(3)
    for node in sshd.nodes.values():
        (Path(node.root) / "VERSION").write_text("1.0\n")
    path = sshd.write_fleet(tmp_path / "fleet.toml", service=SERVICE, sweep={"heal": "monitor"})
    state = tmp_path / "state"
    result = pltui("bootstrap", str(path), "--state", str(state), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert {n["state"] for n in report["nodes"].values()} == {"done"}
    try:
        yield sshd, path, state
    finally:
        pltui("stop", str(path), "--state", str(state))
        for node in sshd.nodes.values():
            subprocess.run(["sh", str(Path(node.root) / ".pltui" / "monitor.sh"), "stop-all"],
                           capture_output=True, timeout=30, env={**os.environ, "PLTUI_ROOT": str(node.root)})


def test_bootstrap_starts_monitor_which_survives_the_session_and_is_idempotent(monitored):
    sshd, path, state = monitored
    nodes = wait_for(lambda: (lambda n: n if proc(n["sshd001"], "web")["state"] == "running" else None)(
        sweep(path, state)))
    assert nodes["sshd001"]["monitor"] == "alive"  # the bootstrap's SSH session has long ended
    assert proc(nodes["sshd001"], "web")["alive"]
    again = pltui("bootstrap", str(path), "--state", str(state), "--json")
    assert again.returncode == 0
    assert {n["state"] for n in json.loads(again.stdout)["nodes"].values()} == {"skipped"}


def test_crashing_process_backs_off_and_killed_process_returns(monitored):
    sshd, path, state = monitored
    root = Path(sshd.nodes["sshd002"].root)

    def flaky_backoff():
        nodes = sweep(path, state)
        flaky = proc(nodes["sshd002"], "flaky")
        return flaky if flaky["state"] == "backoff" and (flaky["restarts"] or 0) >= 2 else None

    flaky = wait_for(flaky_backoff, timeout=40)
    assert flaky and flaky["last_exit"] == 3 and flaky["next_try"]
    web_pid = int((root / "run" / "web.pid").read_text())
    os.kill(web_pid, signal.SIGKILL)
    back = wait_for(lambda: (lambda w: w if w["alive"] and w["pid"] != web_pid else None)(
        proc(sweep(path, state)["sshd002"], "web")), timeout=30)
    assert back and back["restarts"] >= 1


def test_stopped_process_stays_stopped_across_monitor_restart(monitored):
    sshd, path, state = monitored
    result = pltui("stop", str(path), "-w", "sshd001", "--process", "web", "--state", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    root = Path(sshd.nodes["sshd001"].root)
    monitor = root / ".pltui" / "monitor.sh"
    env = {**os.environ, "PLTUI_ROOT": str(root)}
    subprocess.run(["sh", str(monitor), "stop"], check=True, timeout=30, env=env, capture_output=True)
    boot = pltui("bootstrap", str(path), "-w", "sshd001", "--state", str(state), "--json")
    assert boot.returncode == 0, boot.stdout
    time.sleep(3)
    web = proc(sweep(path, state)["sshd001"], "web")
    assert not web["alive"] and web["state"] == "stopped"
    started = pltui("start", str(path), "-w", "sshd001", "--process", "web", "--state", str(state))
    assert started.returncode == 0, started.stdout + started.stderr
    assert wait_for(lambda: proc(sweep(path, state)["sshd001"], "web")["alive"])


async def test_killed_monitor_is_reported_dead_then_healed(monitored):
    sshd, path, state = monitored
    root = Path(sshd.nodes["sshd003"].root)
    pid = int((root / ".pltui" / "monitor.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    engine = Engine(load(path), state_dir=state, heal="off")
    try:
        await engine.sweep()
        assert engine.statuses["sshd003"].monitor == "dead"
        healed = await engine.heal(["sshd003"])
        assert healed[0].ok, healed[0].message
        for _ in range(60):
            await engine.sweep(nodes=["sshd003"])
            status = engine.statuses["sshd003"]
            if status.monitor == "alive" and status.processes[0].alive:
                break
            await asyncio.sleep(0.5)
        assert engine.statuses["sshd003"].monitor == "alive"
        assert engine.statuses["sshd003"].processes[0].alive
        assert int((root / ".pltui" / "monitor.pid").read_text()) != pid
    finally:
        await engine.close()


async def test_sweep_heals_a_dead_monitor_by_policy(monitored):
    sshd, path, state = monitored
    root = Path(sshd.nodes["sshd001"].root)
    os.kill(int((root / ".pltui" / "monitor.pid").read_text()), signal.SIGKILL)
    engine = Engine(load(path), state_dir=state)  # the fleet says heal = "monitor"
    events = engine.subscribe()
    try:
        await engine.sweep()
        heals = []
        while not events.empty():
            event = events.get_nowait()
            if type(event).__name__ == "HealDone":
                heals.append(event)
        assert [h.node for h in heals] == ["sshd001"] and heals[0].ok
        kinds = [(e["kind"], e["message"]) for e in engine.store.events("sshd001")]
        assert any(kind == "heal" for kind, _ in kinds), kinds
        assert any(kind == "transition" and "monitor-healed" in message for kind, message in kinds), kinds
    finally:
        await engine.close()


# ------------------------------------------------------------------------------------------------
# Reload over real sshd, on the demo's own service (its proxy re-reads its config on SIGHUP)


def _pid(root: Path, name: str) -> int:
    return int((root / "run" / f"{name}.pid").read_text())


def _live(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def _dump(root: Path) -> str:
    parts = []
    for rel in (".pltui/events.log", ".pltui/monitor.out", ".pltui/state", "run/proxy.out"):
        if (root / rel).exists():
            parts.append(f"--- {rel}\n{(root / rel).read_text()[-2000:]}")
    return "\n".join(parts) or f"nothing in {root}"


def _reloads(root: Path, pid: int) -> int:
    log = root / "logs" / "proxy.log"
    text = log.read_text() if log.exists() else ""
    return text.count(f"proxy[{pid}] configuration reloaded")


@pytest.fixture
def demo_service(make_sshd_fleet, tmp_path):
    from pltui import demo

    pace = demo.Pace(1, 1, 1, "15s", "2m", 64 * 1024)
    sshd = make_sshd_fleet(2)
    for node in sshd.nodes.values():
        demo.lay_out_node(Path(node.root), demo.HEALTHY, pace)
        for entry in [Path(node.root), *Path(node.root).rglob("*")]:  # the nodes' login user owns it all
            os.chown(entry, sshd.pw.pw_uid, sshd.pw.pw_gid)
    service = {**demo.service_spec(pace), "monitor_interval": "1s"}
    path = sshd.write_fleet(tmp_path / "fleet.toml", service=service, rollout={"health_timeout": "20s"})
    state = tmp_path / "state"
    result = pltui("bootstrap", str(path), "--state", str(state), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    roots = [Path(n.root) for n in sshd.nodes.values()]
    try:
        for root in roots:
            assert wait_for(lambda: (root / "run" / "proxy.pid").exists() and (root / "run" / "cache.pid").exists()), \
                _dump(root)
            log = root / "logs" / "proxy.log"
            assert wait_for(lambda: log.exists() and "listening" in log.read_text()), _dump(root)
        yield path, state, roots, pace
    finally:
        for root in roots:
            subprocess.run(["sh", str(root / ".pltui" / "monitor.sh"), "stop-all"],
                           capture_output=True, timeout=60, env={**os.environ, "PLTUI_ROOT": str(root)})


def test_reload_and_rollout_reload_keep_the_demo_proxy_running(demo_service, tmp_path):
    from pltui import demo

    path, state, roots, pace = demo_service
    before = {root: (_pid(root, "proxy"), _pid(root, "cache")) for root in roots}
    for root, (proxy, _) in before.items():  # the pidfile names the proxy itself, not a `sh -c` wrapper
        assert f"proxy[{proxy}] proxy " in (root / "logs" / "proxy.log").read_text()
    result = pltui("reload", str(path), "--state", str(state), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {n["state"] for n in json.loads(result.stdout)["nodes"].values()} == {"done"}
    for root, (proxy, cache) in before.items():
        assert wait_for(lambda: _reloads(root, proxy) == 1), (root / "logs" / "proxy.log").read_text()
        assert _pid(root, "proxy") == proxy and _pid(root, "cache") == cache and _live(proxy) and _live(cache)

    # rollout --reload: new files swapped in, the same processes reload them
    _, bundle = demo.write_bundle(tmp_path / "bundles", pace)
    result = pltui("rollout", str(path), str(bundle), "--yes", "--reload", "--state", str(state), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    for root, (proxy, cache) in before.items():
        assert (root / "VERSION").read_text().strip() == demo.BUNDLE_VERSION
        assert wait_for(lambda: _reloads(root, proxy) == 2), (root / "logs" / "proxy.log").read_text()
        assert _pid(root, "proxy") == proxy and _pid(root, "cache") == cache and _live(proxy) and _live(cache)
        events = (root / ".pltui" / "events.log").read_text()
        assert " exit " not in events and " leftovers " not in events, events


def test_reload_that_kills_the_process_fails_over_ssh(monitored):
    sshd, path, state = monitored
    root = Path(sshd.nodes["sshd001"].root)
    assert wait_for(lambda: (root / "run" / "web.pid").exists() and _live(_pid(root, "web")))
    web = _pid(root, "web")
    # `exec sleep 1000` has no SIGHUP handler: the reload ends it and the monitor restarts it
    result = pltui("reload", str(path), "-w", "sshd001", "--process", "web", "--state", str(state), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    node = json.loads(result.stdout)["nodes"]["sshd001"]
    assert node["state"] == "failed" and f"pid {web} did not survive the reload" in node["message"], node
    assert wait_for(lambda: _pid(root, "web") != web and _live(_pid(root, "web")))


def _copies(tag: str) -> list[int]:
    """Live processes whose command line holds `tag` and that are not a `sh -c` wrapper."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if tag.encode() in argv and argv[1:2] != [b"-c"] and _live(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_heal_after_killed_monitor_and_wrapper_leaves_one_copy_over_ssh(make_sshd_fleet, tmp_path):
    """The issue's orphan: kill -9 of the monitor, then of the pidfile pid; the heal must not double it."""
    tag = f"orphan-check-{os.getpid()}-{time.monotonic_ns()}"
    service = {"monitor_interval": "1s",
               "process": [{"name": "app", "start": f"echo starting; bin/app --tag {tag}; echo never",
                            "pidfile": "run/app.pid", "stop_timeout": "2s"}]}
    sshd = make_sshd_fleet(1)
    app = Path(sshd.nodes["sshd001"].root) / "bin" / "app"
    app.parent.mkdir()
    app.write_text("#!/bin/sh\nwhile :; do sleep 0.2; done\n")
    app.chmod(0o755)
    for entry in (app.parent, app):
        os.chown(entry, sshd.pw.pw_uid, sshd.pw.pw_gid)
    path = sshd.write_fleet(tmp_path / "fleet.toml", service=service, sweep={"heal": "monitor"})
    state = tmp_path / "state"
    root = Path(sshd.nodes["sshd001"].root)
    try:
        assert pltui("bootstrap", str(path), "--state", str(state)).returncode == 0
        assert wait_for(lambda: len(_copies(tag)) == 1 and (root / "run" / "app.pid").exists())
        (orphan,) = _copies(tag)
        os.kill(int((root / ".pltui" / "monitor.pid").read_text()), signal.SIGKILL)
        wrapper = _pid(root, "app")
        assert wrapper != orphan  # a compound command: the pidfile names its wrapper, the group's leader
        os.kill(wrapper, signal.SIGKILL)
        assert wait_for(lambda: not _live(wrapper))
        assert _copies(tag) == [orphan]  # the orphan lives on, unsupervised, until the heal
        result = pltui("sweep", str(path), "--state", str(state), "--json")  # heal = "monitor"
        assert result.returncode in (0, 1), result.stderr
        assert wait_for(lambda: len(_copies(tag)) == 1 and orphan not in _copies(tag)), (_copies(tag), _dump(root))
        time.sleep(3)
        assert len(_copies(tag)) == 1, _dump(root)
        assert " leftovers app " in (root / ".pltui" / "events.log").read_text()
        result = pltui("stop", str(path), "--state", str(state))
        assert result.returncode == 0, result.stdout + result.stderr
        assert _copies(tag) == []
    finally:
        subprocess.run(["sh", str(root / ".pltui" / "monitor.sh"), "stop-all"], capture_output=True, timeout=60,
                       env={**os.environ, "PLTUI_ROOT": str(root)})
        for pid in _copies(tag):
            os.kill(pid, signal.SIGKILL)
