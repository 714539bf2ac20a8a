"""Every node script under every shell: one real-sshd node per shell, driven by pltui's own CLI.

Each node logs in as its own user whose login shell is the shell under test, and its sshd runs in
a mount namespace where /bin/sh *is* that shell (pltui runs node scripts as `/bin/sh -s` or
`/bin/sh FILE`; see tests/rigs/testshells.py): dash, bash as sh, busybox ash with only busybox applets
on PATH, mksh as sh, yash as sh, posh (login shell only: it has no `sh -s`), and a dash node whose
PATH has no sha256sum. A shell not installed here skips its tests with the reason.

One fleet for the whole module; every operation runs once over all nodes (module fixtures, in
the order a real node lives through: sweep, logs, capture, rollout without a monitor, bootstrap,
kill/heal, stop/start/restart, a bad rollout through the monitor) and the tests, one per shell,
read their node's part of the result.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rigs.sshd_fleet import SshdFleet, find_sshd
from rigs.testshells import SHELLS, ShellUnavailable, prepare

pytestmark = [pytest.mark.sshd, pytest.mark.xdist_group("shells")]  # one fleet, one worker (--dist loadgroup)

APP = b"app-v1\n"
SERVICE = {
    "important": ["bin/app"],
    "logs": ["logs/*"],
    "state": ["state"],
    "monitor_interval": "1s",
    "process": [{"name": "web", "start": "bin/svc", "stop_timeout": "3s"}],
}
SSH = {"connect_timeout": "5s", "command_timeout": "20s"}
SVC = "#!/bin/sh\nexec sleep 1000\n"


@dataclass
class Rig:
    sshd: SshdFleet
    path: Path
    state: Path
    tmp: Path
    node: dict[str, str]  # shell key -> node name
    skipped: dict[str, str] = field(default_factory=dict)  # shell key -> why
    cache: dict[str, object] = field(default_factory=dict)

    def root(self, key: str) -> Path:
        return Path(self.sshd.nodes[self.node[key]].root)


def pltui(rig: Rig, *args: str, timeout: float = 180) -> tuple[int, dict | None, str]:
    """Run the CLI with --json; (exit status, parsed document or None, stdout+stderr)."""
    r = subprocess.run([sys.executable, "-m", "pltui", *args, "--state", str(rig.state), "--json"],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = None
    return r.returncode, doc, r.stdout[-3000:] + r.stderr[-3000:]


def chown_tree(root: Path, pw) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.lchown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)


def log_files(name: str) -> dict[str, bytes]:
    """The node's current log and its rotated predecessor."""
    return {"logs/app.log": b"current log of " + name.encode() + b"\n",
            "logs/app.log.1": b"rotated log of " + name.encode() + b"\n" * 3}


def plant(root: Path, name: str) -> None:
    for sub in ("bin", "logs", "state"):
        (root / sub).mkdir(exist_ok=True)
    (root / "VERSION").write_text("2.0\n")
    (root / "PROTOCOL").write_text("7\n")
    (root / "bin" / "app").write_bytes(APP)
    (root / "bin" / "svc").write_text(SVC)
    (root / "bin" / "svc").chmod(0o755)
    for rel, data in log_files(name).items():
        (root / rel).write_bytes(data)
    (root / "state" / "peers").write_text(f"peers of {name}\n")


def make_bundle(base: Path, version: str, body: str) -> Path:
    d = base / f"bundle-{version}"
    (d / "bin").mkdir(parents=True)
    (d / "VERSION").write_text(f"{version}\n")
    (d / "bin" / "app").write_bytes(APP)
    (d / "bin" / "svc").write_text(f"#!/bin/sh\n{body}\n")
    (d / "bin" / "svc").chmod(0o755)
    return d


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if find_sshd() is None:
        pytest.skip("OpenSSH sshd is not installed (scripts/test.sh installs openssh-server)")
    skipped: dict[str, str] = {}
    keys = []
    for key in SHELLS:
        try:
            prepare(key)
            keys.append(key)
        except ShellUnavailable as exc:
            skipped[key] = str(exc)
    if not keys:
        pytest.skip("no test shell can be set up here: " + "; ".join(skipped.values()))
    tmp = tmp_path_factory.mktemp("shells")
    names = {key: f"sh{i + 1:03d}" for i, key in enumerate(keys)}
    sshd = SshdFleet.start(len(keys), tmp / "sshd", prefix="sh", shells={n: k for k, n in names.items()})
    try:
        for _key, name in names.items():
            root = Path(sshd.nodes[name].root)
            plant(root, name)
            chown_tree(root, sshd.node_pw(name))
        path = sshd.write_fleet(tmp / "fleet.toml", service=SERVICE, ssh_overrides=SSH,
                                rollout={"health_timeout": "10s"})
        yield Rig(sshd, path, tmp / "state", tmp, names, skipped)
    finally:
        sshd.stop()


@pytest.fixture(params=list(SHELLS))
def shell(request, rig) -> str:
    key = request.param
    if key in rig.skipped:
        pytest.skip(rig.skipped[key])
    return key


def once(rig: Rig, what: str, run):
    """Run an operation over the whole fleet once per module; later callers get its result."""
    if what not in rig.cache:
        rig.cache[what] = run()
    return rig.cache[what]


def sweep(rig: Rig, *extra: str) -> dict[str, dict]:
    code, doc, text = pltui(rig, "sweep", str(rig.path), *extra)
    assert doc is not None, text
    return {n["node"]: n for n in doc["nodes"]}


def web(record: dict) -> dict:
    return next(p for p in record["processes"] if p["name"] == "web")


def wait_web(rig: Rig, ok, timeout: float = 40.0) -> dict[str, dict]:
    """Sweep until ok(web record) holds on every node (bounded); the last sweep."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sweep(rig)
        if all(ok(web(n)) for n in nodes.values()) or time.monotonic() > deadline:
            return nodes
        time.sleep(0.5)


# -- the rig itself: each node's login shell and /bin/sh are the shell under test ---------------


def node_exec(rig: Rig, key: str, command: str) -> str:
    """Run `command` through the node's login shell (sshd: SHELL -c COMMAND); its stdout."""
    import asyncio

    import asyncssh

    async def go() -> str:
        async with asyncssh.connect(**rig.sshd.connect_options(rig.node[key])) as conn:
            r = await conn.run(command, timeout=30)
            assert r.exit_status == 0, r.stderr
            return r.stdout

    return asyncio.run(go())


def test_node_login_shell_and_bin_sh_are_the_shell(rig, shell):
    spec = SHELLS[shell]
    st = os.stat(spec.binary)
    want = f"{st.st_dev}:{st.st_ino}"
    out = node_exec(rig, shell, "stat -L -c %d:%i /proc/$$/exe; echo \"$PATH\"; "
                                "/bin/sh -c 'stat -L -c %d:%i /proc/$$/exe; set -o'").splitlines()
    login, path, sh, options = out[0], out[1], out[2], out[3:]
    assert login == want, f"login shell of {shell} is not {spec.binary}"
    if spec.bind_sh:
        assert sh == want, f"/bin/sh on the {shell} node is not {spec.binary}"
    if spec.path:
        assert path == spec.path
    if shell == "bash":  # bash as sh: POSIX mode
        assert any(line.split() == ["posix", "on"] for line in options), options


# -- read-only: sweep, logs, capture -----------------------------------------------------------


def test_sweep_with_checksums(rig, shell):
    nodes = once(rig, "sweep", lambda: sweep(rig, "--checksums"))
    n = nodes[rig.node[shell]]
    assert n["ssh"] == "ok", n["error"]
    assert (n["version"], n["protocol"]) == ("2.0", "7")
    assert n["digests"] == {"bin/app": hashlib.sha256(APP).hexdigest()}
    assert n["checksums"] == "ok"
    if shell == "nosha":
        assert n["digest_tool"] not in ("sha256sum", "none", None)  # the fallback, named
    else:
        assert n["digest_tool"] == "sha256sum"


def test_logs_collects_current_and_rotated_then_prunes(rig, shell):
    def run():
        return pltui(rig, "logs", str(rig.path), "--dest", str(rig.tmp / "logs"), "--prune")
    code, doc, text = once(rig, "logs", run)
    assert doc is not None, text
    node = rig.node[shell]
    res = doc["nodes"][node]
    assert res["state"] == "done", res
    got = {}
    for f in res["files"]:
        assert f["state"] == "collected", f
        stored = rig.tmp / "logs" / node / f["stored"]
        data = stored.read_bytes()
        if stored.suffix == ".gz":
            data = gzip.decompress(data)
        elif stored.suffix == ".zst":
            data = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout
        got[f["path"]] = data
    assert got == log_files(node)
    assert not list((rig.root(shell) / "logs").iterdir())  # pruned once copied and verified


def node_run(rig: Rig, key: str, script: str, assignments: dict[str, str]) -> bytes:
    """Feed a node script to `/bin/sh -s` on the node over SSH, as pltui does; its stdout."""
    import asyncio
    import shlex

    import asyncssh

    head = "".join(f"{k}={shlex.quote(v)}\n" for k, v in assignments.items())
    body = (Path(__file__).resolve().parent.parent / "pltui" / "node" / script).read_bytes()

    async def go() -> bytes:
        async with asyncssh.connect(**rig.sshd.connect_options(rig.node[key])) as conn:
            r = await conn.run("/bin/sh -s", input=head.encode() + body, encoding=None, timeout=60)
            return r.stdout

    return asyncio.run(go())


def test_sha256_tool_is_named_over_ssh(rig, shell):
    root = str(rig.root(shell))
    want = "busybox" if shell == "nosha" else "sha256sum"
    logs = node_run(rig, shell, "logs.sh", {"ROOT": root, "MODE": "stat", "LOGS": "logs/*"})
    assert logs.split(b"\0")[1].split(b" ")[1].decode() == want, logs[:200]
    status = node_run(rig, shell, "release.sh", {"ROOT": root, "CMD": "status", "ID": "probe-1", "SHA256": "-"})
    assert f"sha256_tool {want}\n".encode() in status, status


def test_capture(rig, shell):
    code, doc, text = once(rig, "capture", lambda: pltui(rig, "capture", str(rig.path),
                                                        "--dest", str(rig.tmp / "snap")))
    assert doc is not None, text
    res = doc["nodes"][rig.node[shell]]
    assert res["state"] == "done", res
    with tarfile.open(res["archive"], "r:gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    assert members["./state/peers"] == f"peers of {rig.node[shell]}\n".encode()


# -- rollout without a monitor (release.sh runs the processes itself) ----------------------------


def first_rollout(rig: Rig):
    code, doc, text = pltui(rig, "rollout", str(rig.path), str(make_bundle(rig.tmp, "7.0", "exec sleep 1000")),
                            "--yes")
    return doc, text, wait_web(rig, lambda p: p["alive"], timeout=15)


def test_rollout_without_monitor(rig, shell):
    doc, text, nodes = once(rig, "rollout", lambda: first_rollout(rig))
    assert doc is not None, text
    node = rig.node[shell]
    assert doc["nodes"][node]["state"] == "done", doc["nodes"][node]
    assert (rig.root(shell) / "VERSION").read_text() == "7.0\n"
    assert web(nodes[node])["alive"], nodes[node]


# -- the node monitor ----------------------------------------------------------------------------


def bootstrap(rig: Rig):
    once(rig, "rollout", lambda: first_rollout(rig))  # processes running first: the monitor adopts them
    started = time.monotonic()
    code, doc, text = pltui(rig, "bootstrap", str(rig.path))
    took = time.monotonic() - started
    return doc, text, took, wait_web(rig, lambda p: p["state"] == "running")


def test_bootstrap_installs_a_live_monitor(rig, shell):
    doc, text, took, nodes = once(rig, "bootstrap", lambda: bootstrap(rig))
    assert doc is not None, text
    node = rig.node[shell]
    assert doc["nodes"][node]["state"] == "done", doc["nodes"][node]
    assert nodes[node]["monitor"] == "alive", nodes[node]
    assert web(nodes[node])["state"] == "running" and web(nodes[node])["alive"]


def test_second_bootstrap_sees_the_monitor_up_to_date(rig, shell):
    once(rig, "bootstrap", lambda: bootstrap(rig))
    code, doc, text = once(rig, "bootstrap2", lambda: pltui(rig, "bootstrap", str(rig.path)))
    assert doc is not None, text
    assert doc["nodes"][rig.node[shell]]["state"] == "skipped", doc["nodes"][rig.node[shell]]


def service_pid(rig: Rig, key: str) -> int:
    """The pid in the process's pidfile (what the monitor watches)."""
    return int((rig.root(key) / ".pltui" / "run" / "web.pid").read_text().split()[0])


def kill_and_heal(rig: Rig):
    once(rig, "bootstrap", lambda: bootstrap(rig))
    before = {key: service_pid(rig, key) for key in rig.node}
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)
    nodes = wait_web(rig, lambda p: p["alive"] and p["restarts"])
    return before, nodes


def test_killed_process_comes_back(rig, shell):
    before, nodes = once(rig, "heal", lambda: kill_and_heal(rig))
    p = web(nodes[rig.node[shell]])
    assert p["alive"] and p["pid"] != before[shell] and p["restarts"] >= 1, p


def control(rig: Rig):
    once(rig, "heal", lambda: kill_and_heal(rig))
    out = {}
    code, doc, text = pltui(rig, "stop", str(rig.path))
    out["stop"] = (doc, text, wait_web(rig, lambda p: p["state"] == "stopped" and not p["alive"]))
    code, doc, text = pltui(rig, "start", str(rig.path))
    out["start"] = (doc, text, wait_web(rig, lambda p: p["state"] == "running"))
    pids = {n: web(r)["pid"] for n, r in out["start"][2].items()}
    code, doc, text = pltui(rig, "restart", str(rig.path))
    out["restart"] = (doc, text, wait_web(rig, lambda p: p["state"] == "running"), pids)
    return out


def test_stop_start_restart(rig, shell):
    out = once(rig, "control", lambda: control(rig))
    node = rig.node[shell]
    for verb in ("stop", "start", "restart"):
        doc, text, nodes = out[verb][:3]
        assert doc is not None, text
        assert doc["nodes"][node]["state"] == "done", (verb, doc["nodes"][node])
    assert web(out["stop"][2][node])["state"] == "stopped", out["stop"][2][node]
    assert web(out["start"][2][node])["alive"], out["start"][2][node]
    restarted = web(out["restart"][2][node])
    assert restarted["alive"] and restarted["pid"] != out["restart"][3][node], restarted


def kill_monitors_and_sweep_heal(rig: Rig):
    once(rig, "control", lambda: control(rig))
    dead = {}
    for key in rig.node:
        pid = int((rig.root(key) / ".pltui" / "monitor.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        dead[key] = pid
    code, doc, text = pltui(rig, "sweep", str(rig.path), "--heal", "monitor")
    deadline = time.monotonic() + 30
    nodes = sweep(rig)
    while not all(n["monitor"] == "alive" for n in nodes.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = sweep(rig)
    return dead, doc, text, nodes


def test_dead_monitor_is_healed_by_a_sweep(rig, shell):
    dead, doc, text, nodes = once(rig, "monheal", lambda: kill_monitors_and_sweep_heal(rig))
    assert doc is not None, text
    n = nodes[rig.node[shell]]
    assert n["monitor"] == "alive" and n["monitor_pid"] != dead[shell], n
    assert web(n)["alive"], n  # the service ran on while no monitor watched it


# -- a bad rollout through the monitor: rolled back ----------------------------------------------


def bad_rollout(rig: Rig):
    once(rig, "monheal", lambda: kill_monitors_and_sweep_heal(rig))
    code, doc, text = pltui(rig, "rollout", str(rig.path), str(make_bundle(rig.tmp, "8.0", "exit 1")), "--yes",
                            "--batch", "100%", "--max-fail", "100%")
    return code, doc, text, wait_web(rig, lambda p: p["state"] == "running")


def test_bad_bundle_is_rolled_back(rig, shell):
    code, doc, text, nodes = once(rig, "bad", lambda: bad_rollout(rig))
    assert doc is not None, text
    node = rig.node[shell]
    assert doc["nodes"][node]["state"] == "rolled-back", doc["nodes"][node]
    assert (rig.root(shell) / "VERSION").read_text() == "7.0\n"
    assert web(nodes[node])["alive"], nodes[node]
