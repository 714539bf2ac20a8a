"""`pltui sweep --json` against a real OpenSSH sshd fleet with every kind of trouble planted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pltui.fleet import load
from pltui.demo.nodesim import fleet_document, write_toml

SERVICE = {
    "important": ["bin/*"],
    "logs": ["logs/*.log"],
    "monitor_interval": "2s",
    "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}],
}


def plant(root: Path, *, protocol="7", app="app-v1\n") -> None:
    for sub in ("bin", "logs", "run"):
        (root / sub).mkdir(exist_ok=True)
        (root / sub).chmod(0o777)
    (root / "VERSION").write_text("2.0\n")
    (root / "PROTOCOL").write_text(protocol + "\n")
    (root / "bin" / "app").write_text(app)
    (root / "logs" / "a.log").write_text("log\n")


def as_login_user(sshd, argv: list[str]) -> subprocess.Popen:
    """A process owned by the nodes' login user (so the probe may signal-check it)."""
    import pwd

    pw = pwd.getpwnam(sshd.user)
    if os.geteuid() == pw.pw_uid:
        return subprocess.Popen(argv, start_new_session=True)
    return subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *argv],
                            start_new_session=True)


def sweep_json(fleet_path: Path, state: Path, *extra: str, timeout: float = 120) -> tuple[int, dict, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pltui", "sweep", str(fleet_path), "--state", str(state), "--json", *extra],
        capture_output=True, timeout=timeout,
    )
    assert b"\x1b" not in result.stdout and b"\x1b" not in result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr.decode()


@pytest.fixture
def troubled(make_sshd_fleet, tmp_path):
    """Eight real-sshd nodes, a ninth that accepts TCP but never speaks SSH."""
    sshd = make_sshd_fleet(8, solo=["sshd006", "sshd007"])
    roots = {name: Path(node.root) for name, node in sshd.nodes.items()}
    for name, root in roots.items():
        plant(root, protocol="8" if name == "sshd004" else "7",
              app="tampered\n" if name == "sshd003" else "app-v1\n")
    # sshd005: the node prints garbage where the probe reads the monitor heartbeat
    (roots["sshd005"] / ".pltui").mkdir(exist_ok=True)
    (roots["sshd005"] / ".pltui" / "state").write_text("heartbeat 1\nproc web \x1b]0;pwned\x07 [/oops] x y z\n")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    doc = fleet_document(sshd.nodes.values(), name="troubled", user=sshd.user, identity_file=sshd.client_key_path,
                         known_hosts=sshd.known_hosts_path, service=SERVICE,
                         ssh_overrides={"connect_timeout": "2s", "command_timeout": "5s"})
    doc["fleet"]["nodes"].append("silent1")
    doc["node"]["silent1"] = {"host": "127.0.0.1", "port": silent.getsockname()[1], "root": str(tmp_path)}
    path = write_toml(tmp_path / "fleet.toml", doc)
    try:
        yield sshd, path
    finally:
        silent.close()


def test_sweep_reports_each_kind_of_trouble(troubled, tmp_path):
    sshd, path = troubled
    fleet = load(path)
    roots = {name: Path(node.root) for name, node in sshd.nodes.items()}
    # sshd001, sshd002: a live process (sshd002's later killed: a dead process)
    procs = {}
    for name in ("sshd001", "sshd002", "sshd003", "sshd004"):
        procs[name] = as_login_user(sshd, ["sleep", "300"])
        (roots[name] / "run" / "web.pid").write_text(f"{procs[name].pid}\n")
    procs["sshd002"].kill()
    procs["sshd002"].wait()
    known_before = Path(fleet.ssh.known_hosts).read_text()
    sshd.down("sshd006")                 # a stopped node: connection refused
    sshd.set_host_key("sshd007")         # a node presenting another host key
    started = time.monotonic()
    code, doc, stderr = sweep_json(path, tmp_path / "state", "--checksums")
    elapsed = time.monotonic() - started
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert code == 1, stderr
    assert nodes["sshd001"]["health"] == "up" and nodes["sshd001"]["version"] == "2.0"
    assert nodes["sshd002"]["health"] == "degraded"
    assert nodes["sshd002"]["processes"][0]["alive"] is False
    assert nodes["sshd003"]["drift"] == ["bin/app"] and nodes["sshd003"]["checksums"] == "drift 1"
    assert nodes["sshd004"]["protocol"] == "8" and nodes["sshd004"]["isolated"] is True
    assert doc["summary"]["largest_cohort"] == "7" and doc["summary"]["isolated"] == ["sshd004"]
    # a garbage heartbeat costs the heartbeat (a warning, node degraded), not the node's report
    assert nodes["sshd005"]["ssh"] == "ok" and nodes["sshd005"]["health"] == "degraded"
    assert any("heartbeat" in w for w in nodes["sshd005"]["warnings"]) and nodes["sshd005"]["version"] == "2.0"
    assert nodes["sshd006"]["ssh"] == "refused"
    assert nodes["sshd007"]["ssh"] == "hostkey" and "CHANGED" in nodes["sshd007"]["error"]
    assert nodes["silent1"]["ssh"] == "unreachable"
    assert nodes["sshd008"]["ssh"] == "ok"
    # The silent node costs its connect timeout (2s), never the others' time.
    assert elapsed < 30, elapsed
    majority = [f for f in doc["summary"]["files"] if f["path"] == "bin/app"][0]
    assert majority["quorum"] and majority["holders"] == 5 and majority["answering"] == 6  # sshd005 answers now
    # The changed key was never recorded.
    assert Path(fleet.ssh.known_hosts).read_text() == known_before
    for proc in procs.values():
        proc.kill()
        proc.wait()


def test_human_table_and_exit_codes(sshd_fleet, tmp_path):
    for node in sshd_fleet.nodes.values():
        plant(Path(node.root))
    path = sshd_fleet.write_fleet(tmp_path / "fleet.toml", service={"important": ["bin/*"]})
    result = subprocess.run([sys.executable, "-m", "pltui", "sweep", str(path), "--state", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 nodes: 4 up" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "pltui", "sweep", str(path), "-w", "nosuch[1-2]"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not in the fleet" in bad.stderr


async def test_nodes_behind_a_jump_host_share_one_connection(sshd_fleet, tmp_path):
    from pltui.sweep import Engine

    for node in sshd_fleet.nodes.values():
        plant(Path(node.root))
    jump = sshd_fleet.nodes["sshd001"]
    path = sshd_fleet.write_fleet(tmp_path / "fleet.toml", service={"important": ["bin/*"]},
                                  ssh_overrides={"proxy_jump": f"{sshd_fleet.user}@{jump.host}:{jump.port}"})
    engine = Engine(load(path), state_dir=tmp_path / "state")
    try:
        await engine.sweep()
        assert all(s.ssh.value == "ok" for s in engine.statuses.values()), \
            [s.error for s in engine.statuses.values()]
        assert len(engine.transport._jumps) == 1
        jump_conn = next(iter(engine.transport._jumps.values()))
        await engine.sweep()
        assert next(iter(engine.transport._jumps.values())) is jump_conn
    finally:
        await engine.close()
