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
