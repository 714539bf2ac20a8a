"""The node monitor (pltui/node/monitor.sh), run for real with /bin/sh on this machine.

Each test builds a service root in a temporary directory (its path holds a space, to exercise
quoting), installs the packaged monitor.sh and a spec rendered by `pltui.monitorspec`, and
drives the monitor's commands as pltui would over SSH. Intervals are short (0.5 s) and the
backoff cap small so the file stays quick. No test kills anything by name: every pid seen
(monitor, processes) is recorded with its start time, and the fixture's finalizer runs
`stop-all`, then SIGKILLs whatever recorded process is still the same process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pltui.fleet import ProcessSpec, ServiceSpec
from pltui.monitorspec import monitor_script, render_spec, script_digest, spec_digest

SH = "/bin/sh"
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

HEARTBEAT_RE = {
    "heartbeat": re.compile(r"^heartbeat \d+$"),
    "monitor": re.compile(r"^monitor \d+ \d+(\.\d+)?$"),
    "proc": re.compile(r"^proc [A-Za-z0-9_][A-Za-z0-9_.-]* (starting|running|backoff|stopped) (\d+|-) \d+ (\d+|-) (\d+|-)$"),
}


# ------------------------------------------------------------------------------------------------
# Helpers


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, pgrp, session, starttime) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def is_alive(pid: int | None) -> bool:
    info = proc_stat(pid) if pid else None
    return info is not None and info[0] not in ("Z", "X")


def group_has_live_members(pgid: int) -> bool:
    return bool(group_pids(pgid))


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = proc_stat(int(entry.name))
            if info and info[1] == pgid and info[0] not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1, dump=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{dump()}" if dump else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


class Node:
    """A service root with the monitor installed; records every pid it sees, for cleanup."""

    def __init__(self, root: Path, sh: str = SH):
        self.sh_path = sh  # the shell that runs monitor.sh (and, via PATH, its `sh -c` commands)
        self.root = root
        self.pl = root / ".pltui"
        self.pl.mkdir(parents=True)
        self.script = self.pl / "monitor.sh"
        self.script.write_bytes(monitor_script())
        self.seen: dict[int, int] = {}  # pid -> start time
        self.popens: list[subprocess.Popen] = []
        self.env = {k: v for k, v in os.environ.items() if k != "PLTUI_ROOT"}

    # -- setup ------------------------------------------------------------------------------
    def write_spec(self, *procs: ProcessSpec, interval: float = 0.5, backoff_cap: int | None = 2,
                   extra: str = "STABLE_TIME=1\n") -> str:
        service = ServiceSpec(root=str(self.root), processes=procs)
        text = render_spec(service, interval=interval, backoff_cap=backoff_cap) + extra
        tmp = self.pl / "spec.tmp"
        tmp.write_text(text)
        tmp.replace(self.pl / "spec")
        return text

    # -- commands ---------------------------------------------------------------------------
    def sh(self, *args: str, check: bool = True, timeout: float = 40, env: dict | None = None):
        result = subprocess.run([self.sh_path, str(self.script), *args], cwd=self.root, env=env or self.env,
                                capture_output=True, text=True, timeout=timeout)
        self.record_all()
        if check and result.returncode != 0:
            raise AssertionError(f"monitor.sh {' '.join(args)} -> {result.returncode}\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}\n{self.dump()}")
        return result

    def run_foreground(self, **kwargs) -> subprocess.Popen:
        out = open(self.root / f"run-fg-{len(self.popens)}.log", "wb")
        proc = subprocess.Popen([self.sh_path, str(self.script), "run"], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        out.close()
        self.popens.append(proc)
        self.record(proc.pid)
        return proc

    # -- reading the node -----------------------------------------------------------------------
    def record(self, pid: int | None) -> None:
        if pid and pid not in self.seen:
            info = proc_stat(pid)
            if info:
                self.seen[pid] = info[3]

    def record_all(self) -> None:
        for path in [self.pl / "monitor.pid", self.pl / "monitor.lock" / "pid", *self.pl.glob("run/*.pid")]:
            self.record(self.read_pid(path))
        hb = self.heartbeat(strict=False)
        if hb:
            self.record(hb["monitor_pid"])
            for proc in hb["procs"].values():
                self.record(proc["pid"])

    @staticmethod
    def read_pid(path: Path) -> int | None:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def pid_of(self, name: str) -> int | None:
        pid = self.read_pid(self.pl / "run" / f"{name}.pid")
        self.record(pid)
        return pid

    def monitor_pid(self) -> int | None:
        pid = self.read_pid(self.pl / "monitor.lock" / "pid")
        self.record(pid)
        return pid if is_alive(pid) else None

    def heartbeat(self, strict: bool = True) -> dict | None:
        try:
            text = (self.pl / "state").read_text()
        except OSError:
            return None
        lines = text.splitlines()
        if strict:
            assert text.endswith("\n"), text
            assert HEARTBEAT_RE["heartbeat"].match(lines[0]), text
            assert HEARTBEAT_RE["monitor"].match(lines[1]), text
            for line in lines[2:]:
                assert HEARTBEAT_RE["proc"].match(line), f"bad heartbeat line {line!r}"
        hb: dict = {"procs": {}, "text": text}
        for line in lines:
            f = line.split(" ")
            if f[0] == "heartbeat":
                hb["epoch"] = int(f[1])
            elif f[0] == "monitor":
                hb["monitor_pid"], hb["interval"] = int(f[1]), f[2]
            elif f[0] == "proc" and len(f) == 7:
                hb["procs"][f[1]] = {
                    "state": f[2],
                    "pid": None if f[3] == "-" else int(f[3]),
                    "restarts": int(f[4]),
                    "last_exit": f[5],
                    "next_try": None if f[6] == "-" else int(f[6]),
                }
        return hb

    def proc(self, name: str) -> dict:
        hb = self.heartbeat()
        assert hb is not None, "no heartbeat"
        return hb["procs"][name]

    def events(self, kind: str | None = None, name: str | None = None) -> list[list[str]]:
        rows = []
        for path in (self.pl / "events.log.1", self.pl / "events.log"):
            if path.exists():
                for line in path.read_text().splitlines():
                    f = line.split(" ")
                    if (kind is None or f[2] == kind) and (name is None or (len(f) > 3 and f[3] == name)):
                        rows.append(f)
        return rows

    def dump(self) -> str:
        parts = []
        for path in (self.pl / "state", self.pl / "events.log", self.pl / "monitor.out"):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def wait_state(self, name: str, state: str, timeout: float = 20, **fields) -> dict:
        def check():
            hb = self.heartbeat()
            if not hb or name not in hb["procs"]:
                return None
            proc = hb["procs"][name]
            if proc["state"] != state or any(proc[k] != v for k, v in fields.items()):
                return None
            if state in ("starting", "running") and not is_alive(proc["pid"]):
                return None
            self.record(proc["pid"])
            return proc

        return wait_until(check, timeout, f"{name} {state} {fields}", dump=self.dump)

    # -- cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        self.record_all()
        if (self.pl / "spec").exists():
            subprocess.run([self.sh_path, str(self.script), "stop-all"], cwd=self.root, env=self.env,
                           capture_output=True, timeout=60)
        for proc in self.popens:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.record_all()
        for pid, start in self.seen.items():
            info = proc_stat(pid)
            if info and info[3] == start and info[0] not in ("Z", "X"):
                try:
                    if info[1] == pid:  # a group leader we started: its group goes with it
                        os.killpg(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "svc root")
    yield n
    n.cleanup()


# The shells node scripts must run under. Each becomes the `sh` on PATH (a symlink named sh: bash
# then runs as sh, busybox as its ash applet) and runs monitor.sh, so the monitor's own `sh -c`
# wrappers run under the same shell.
SHELLS = {"dash": "dash", "bash": "bash", "busybox-ash": "busybox", "mksh": "mksh"}


def shell_node_at(tmp_path: Path, shell: str) -> Node:
    binary = shutil.which(SHELLS[shell])
    if binary is None:
        pytest.skip(f"{SHELLS[shell]} is not installed")
    bindir = tmp_path / "shbin"
    bindir.mkdir()
    (bindir / "sh").symlink_to(binary)
    n = Node(tmp_path / "svc root", sh=str(bindir / "sh"))
    n.env["PATH"] = f"{bindir}:{n.env.get('PATH', '/usr/bin:/bin')}"
    n.shell = shell
    return n


@pytest.fixture(params=sorted(SHELLS))
def shell_node(request, tmp_path):
    """A node whose monitor runs under each of dash, bash (as sh), busybox ash and mksh in turn."""
    n = shell_node_at(tmp_path, request.param)
    yield n
    n.cleanup()


def sleeper(name: str, **kw) -> ProcessSpec:
    return ProcessSpec(name=name, start="exec sleep 1000", pidfile=f".pltui/run/{name}.pid", **kw)


def crasher(name: str) -> ProcessSpec:
    return ProcessSpec(name=name, start="echo crashing; exit 3", pidfile=f".pltui/run/{name}.pid")


# ------------------------------------------------------------------------------------------------
# The spec and the packaged script


def test_script_is_posix_sh():
    assert subprocess.run([SH, "-n", "-c", monitor_script().decode()]).returncode == 0
    assert script_digest() == hashlib.sha256(monitor_script()).hexdigest()
    packaged = Path(__file__).resolve().parent.parent / "pltui" / "node" / "monitor.sh"
    assert monitor_script() == packaged.read_bytes()
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "sh", str(packaged)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout


def test_spec_values_survive_sh_quoting(tmp_path):
    nasty = "echo \"it's $HOME\" `id`; printf '%s\\n' a\\ b >out\nexec sleep 1000 # ; rm -rf /"
    service = ServiceSpec(processes=(
        ProcessSpec("web.1", nasty, "run/web.pid", stop="kill $(cat run/web.pid)", reload=None, stop_timeout=2.5),
        ProcessSpec("w_2", "x", ".pltui/run/w_2.pid"),
    ), monitor_interval=5.0)
    text = render_spec(service)
    assert text == render_spec(service)  # stable, so spec_digest can tell whether a node is current
    assert "BACKOFF_CAP" not in text and "INTERVAL=5\n" in text
    assert "BACKOFF_CAP=7\n" in render_spec(service, interval=0.5, backoff_cap=7)
    assert spec_digest(text) == hashlib.sha256(text.encode()).hexdigest() == spec_digest(text.encode())
    spec = tmp_path / "spec"
    spec.write_text(text)
    # sourcing the spec runs nothing and gives back every value exactly
    probe = ('. "$1"; printf "%s\\0" "$NPROCS" "$INTERVAL" "$P1_NAME" "$P1_START" "$P1_PIDFILE" '
             '"$P1_STOP" "$P1_RELOAD" "$P1_STOP_TIMEOUT" "$P2_NAME"')
    out = subprocess.run([SH, "-c", probe, "sh", str(spec)], cwd=tmp_path, capture_output=True, check=True)
    assert out.stderr == b""
    values = out.stdout.decode().split("\0")[:-1]
    assert values == ["2", "5", "web.1", nasty, "run/web.pid", "kill $(cat run/web.pid)", "", "2.5", "w_2"]
    assert not (tmp_path / "out").exists()
    for bad in ("all", "a b", "../x"):
        with pytest.raises(ValueError):
            render_spec(ServiceSpec(processes=(ProcessSpec(bad, "x", "p"),)))


def test_backoff_cap_from_the_fleet_file(tmp_path):
    from pltui.fleet import FleetError, load

    def fleet(cap: str | None) -> Path:
        path = tmp_path / "fleet.toml"
        line = f"backoff_cap = {cap}\n" if cap is not None else ""
        path.write_text('[fleet]\nname = "t"\nnodes = ["n1"]\n[service]\n' + line +
                        '[[service.process]]\nname = "a"\nstart = "bin/a"\n')
        return path

    assert "BACKOFF_CAP" not in render_spec(load(fleet(None)).service)  # the monitor's default (300 s)
    assert "\nBACKOFF_CAP=300\n" in render_spec(load(fleet('"5m"')).service)
    assert "\nBACKOFF_CAP=2\n" in render_spec(load(fleet('"1.5s"')).service)  # whole seconds, rounded up
    assert "\nBACKOFF_CAP=7\n" in render_spec(load(fleet('"5m"')).service, backoff_cap=7)  # explicit wins
    for bad, why in (('"0.5s"', "at least 1s"), ('"soon"', ""), ("-3", "")):
        with pytest.raises(FleetError) as info:
            load(fleet(bad))
        assert "fleet.toml:5: [service.backoff_cap]" in str(info.value) and why in str(info.value)


def test_usage_and_spec_errors(node):
    r = node.sh("frobnicate", check=False)
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = node.sh("start", check=False)
    assert r.returncode == 2 and "no spec file" in r.stderr
    node.write_spec(sleeper("a"))
    r = node.sh("proc-stop", "nosuch", check=False)
    assert r.returncode == 2 and "unknown process 'nosuch'" in r.stderr
    r = node.sh("proc-stop", check=False)
    assert r.returncode == 2 and "usage" in r.stderr
    r = node.sh("status", check=False)
    assert r.returncode == 1 and "no heartbeat" in r.stderr


# ------------------------------------------------------------------------------------------------
# Keeping processes alive


def test_starts_processes_and_restarts_killed_ones(shell_node):
    node = shell_node
    node.write_spec(sleeper("a"), ProcessSpec("loop", "while :; do sleep 0.3; done", ".pltui/run/loop.pid"),
                    ProcessSpec("family", "sleep 1000 & wait", ".pltui/run/family.pid"))
    r = node.sh("start")  # captured pipes: returns only if the monitor kept none of our fds
    assert re.fullmatch(r"monitor started \(pid \d+\)\n", r.stdout), r.stdout
    mpid = node.monitor_pid()
    assert mpid and node.read_pid(node.pl / "monitor.pid") == mpid

    a = node.wait_state("a", "running")
    loop = node.wait_state("loop", "running")
    hb = node.heartbeat()
    assert hb["monitor_pid"] == mpid and hb["interval"] == "0.5"
    assert abs(hb["epoch"] - time.time()) < 15
    assert a["pid"] == node.pid_of("a") and loop["pid"] == node.pid_of("loop")
    assert a["restarts"] == 0 and a["last_exit"] == "-" and a["next_try"] is None
    # each process leads its own process group (setsid), separate from the monitor's
    info = proc_stat(a["pid"])
    assert info[1] == a["pid"] and info[2] == a["pid"] and proc_stat(mpid)[2] != info[2]
    # `status` prints the heartbeat as is
    assert node.sh("status").stdout == (node.pl / "state").read_text()

    os.kill(a["pid"], signal.SIGKILL)
    again = node.wait_state("a", "running", restarts=1)
    assert again["pid"] != a["pid"] and again["last_exit"] == "137"
    assert node.pid_of("a") == again["pid"]
    assert node.proc("loop")["pid"] == loop["pid"]  # untouched
    kinds = [e[2] for e in node.events(name="a")]
    assert kinds[:3] == ["start", "exit", "start"]

    # a dead leader's leftover children are sent away before the new start
    family = node.wait_state("family", "running")
    wait_until(lambda: group_has_live_members(family["pid"]) and len(group_pids(family["pid"])) == 2, 10,
               "the family's child")
    child = [p for p in group_pids(family["pid"]) if p != family["pid"]][0]
    node.record(child)
    os.kill(family["pid"], signal.SIGKILL)
    node.wait_state("family", "running", restarts=1)
    wait_until(lambda: not is_alive(child), 10, "the orphaned child to go")
    assert node.events("leftovers", "family")


def test_crash_loop_backs_off_with_growing_delays_and_never_gives_up(node):
    # STABLE_TIME=3 (the default): a loaded machine must not make the crash look like a stable run
    node.write_spec(crasher("crash"), sleeper("ok"), backoff_cap=4, extra="STABLE_TIME=3\n")
    node.sh("start")
    delays = wait_until(
        lambda: (d := [int(e[4][len("delay="):-1]) for e in node.events("backoff", "crash")]) and len(d) >= 4 and d,
        40, "four backoffs", interval=0.2, dump=node.dump)
    assert delays[:4] == [1, 2, 4, 4], delays  # doubling, capped at BACKOFF_CAP
    proc = node.wait_state("crash", "backoff")
    hb = node.heartbeat()
    assert proc["pid"] is None and proc["last_exit"] == "3"
    assert proc["next_try"] >= hb["epoch"] - 1 and proc["restarts"] >= 3
    for e in node.events("backoff", "crash"):  # NEXT_TRY = time the failure was seen + delay
        seen = int(e[5][len("next="):]) - int(e[4][len("delay="):-1])
        assert int(e[0]) - 3 <= seen <= int(e[0]), e
    # the fourth backoff came after a start made once the delay had reached the cap: no giving up
    assert node.proc("ok")["state"] == "running" and node.proc("ok")["restarts"] == 0
    assert (node.pl / "run" / "crash.out").read_text().count("crashing\n") >= 4
    # proc-start cuts the backoff short; reports that it died at once
    r = node.sh("proc-start", "crash", check=False)
    assert r.returncode == 1 and "exited right after its start" in r.stderr


def test_proc_stop_survives_monitor_restart_and_proc_start_brings_it_back(shell_node):
    node = shell_node
    node.write_spec(sleeper("a"), sleeper("b"))
    node.sh("start")
    a = node.wait_state("a", "running")
    node.wait_state("b", "running")
    r = node.sh("proc-stop", "a")
    assert r.stdout == f"a: stopped (pid {a['pid']})\n"
    assert not is_alive(a["pid"]) and (node.pl / "stopped" / "a").exists()
    node.wait_state("a", "stopped", pid=None, last_exit="143")
    assert node.sh("proc-stop", "a").stdout == "a: not running\n"

    assert node.sh("stop").stdout.startswith("monitor stopped")
    assert node.monitor_pid() is None and is_alive(node.proc("b")["pid"])  # stop leaves processes alone
    r = node.sh("status", check=False)
    assert r.returncode == 3 and "not running" in r.stderr
    node.sh("start")
    new_monitor = node.monitor_pid()
    node.wait_state("b", "running")
    hb = wait_until(lambda: (h := node.heartbeat()) and h["monitor_pid"] == new_monitor and h, 5, "new heartbeat")
    time.sleep(1.2)  # a few loops of the new monitor
    assert node.proc("a")["state"] == "stopped" and not is_alive(node.pid_of("a"))
    assert hb["procs"]["a"]["last_exit"] == "143"  # carried over from the old heartbeat

    r = node.sh("proc-start", "a")
    assert re.fullmatch(r"a: started \(pid \d+\)\n", r.stdout), r.stdout
    started = int(r.stdout.split("pid ")[1].rstrip(")\n"))
    assert node.wait_state("a", "running")["pid"] == started and not (node.pl / "stopped" / "a").exists()
    assert node.sh("proc-start", "a").stdout == f"a: already running (pid {started})\n"
    # exactly one start for that proc-start: no double start by monitor and command
    assert len([e for e in node.events("start", "a")]) == 2

    # restart all: every process gets a new pid
    before = {n: node.proc(n)["pid"] for n in ("a", "b")}
    node.sh("proc-restart", "all")
    for n in ("a", "b"):
        assert node.wait_state(n, "running")["pid"] != before[n] and not is_alive(before[n])


def test_proc_commands_without_a_monitor_and_adoption(node):
    node.write_spec(sleeper("a"))
    r = node.sh("proc-start", "a")
    pid = node.pid_of("a")
    assert r.stdout == f"a: started (pid {pid})\n" and is_alive(pid)
    assert proc_stat(pid)[2] == pid  # its own session: survives the caller's session
    r = node.sh("proc-restart", "a")
    new = node.pid_of("a")
    assert new != pid and is_alive(new) and not is_alive(pid)
    node.sh("start")
    node.wait_state("a", "running", pid=new)
    assert node.events("adopt", "a")
    assert len(node.events("start", "a")) == 2  # nothing started twice
    node.sh("stop-all")
    assert not is_alive(new) and node.monitor_pid() is None
    assert not (node.pl / "stopped" / "a").exists()  # stop-all leaves no marker: start brings all back


def test_stop_command_term_and_kill_after_timeout(shell_node):
    node = shell_node
    node.write_spec(
        ProcessSpec("cmd", "exec sleep 1000", ".pltui/run/cmd.pid",
                    stop='echo "stop ran" > stop-ran.txt; kill "$(cat .pltui/run/cmd.pid)"'),
        ProcessSpec("stubborn", 'trap "echo ignoring TERM" TERM; while :; do sleep 0.1; done',
                    ".pltui/run/stubborn.pid", stop_timeout=1),
        sleeper("plain"),
    )
    node.sh("start")
    pids = {n: node.wait_state(n, "running")["pid"] for n in ("cmd", "stubborn", "plain")}

    r = node.sh("proc-stop", "cmd")
    assert (node.root / "stop-ran.txt").read_text() == "stop ran\n" and not is_alive(pids["cmd"])
    assert "killed" not in r.stdout and node.events("stop", "cmd")[-1][-1] == "via=command"

    r = node.sh("proc-stop", "plain")
    assert not is_alive(pids["plain"]) and "killed" not in r.stdout and not node.events("kill", "plain")

    t0 = time.monotonic()
    r = node.sh("proc-stop", "stubborn")
    took = time.monotonic() - t0
    assert 1.0 <= took < 10, took
    assert r.stdout == f"stubborn: stopped (pid {pids['stubborn']}, killed after 1s)\n"
    assert not is_alive(pids["stubborn"]) and not group_has_live_members(pids["stubborn"])
    assert node.events("kill", "stubborn")
    assert "ignoring TERM" in (node.pl / "run" / "stubborn.out").read_text()
    node.wait_state("stubborn", "stopped", pid=None)
    assert node.proc("stubborn")["last_exit"] == "137", node.dump()

    # all at once
    node.sh("proc-start", "all")
    for n in ("cmd", "stubborn", "plain"):
        node.wait_state(n, "running")
    r = node.sh("proc-stop", "all")
    assert sorted(line.split(" (")[0] for line in r.stdout.splitlines()) == [
        "cmd: stopped", "plain: stopped", "stubborn: stopped"]
    assert all((node.pl / "stopped" / n).exists() for n in pids)


def test_reload_by_sighup_and_by_command(node):
    node.write_spec(
        ProcessSpec("hup", 'trap "echo reloaded" HUP; while :; do sleep 0.1; done', ".pltui/run/hup.pid"),
        ProcessSpec("cmd", "exec sleep 1000", ".pltui/run/cmd.pid", reload="echo custom >> reload.txt"),
    )
    node.sh("start")
    hup = node.wait_state("hup", "running")
    node.wait_state("cmd", "running")
    r = node.sh("reload", "all")
    # a compound start command: the group gets SIGHUP, its wrapper shell survives it
    assert f"hup: reloaded (SIGHUP to process group {hup['pid']})" in r.stdout
    assert "cmd: reloaded (reload command)" in r.stdout
    assert (node.root / "reload.txt").read_text() == "custom\n"
    # the child got SIGHUP as a signal it can trap (not ignored), and survived it
    wait_until(lambda: "reloaded" in (node.pl / "run" / "hup.out").read_text(), 5, "the HUP trap")
    assert node.proc("hup")["pid"] == hup["pid"] and is_alive(hup["pid"])
    node.sh("proc-stop", "hup")
    r = node.sh("reload", "hup", check=False)
    assert r.returncode == 1 and "not running" in r.stderr


# ------------------------------------------------------------------------------------------------
# The monitor itself


def test_refuses_to_run_twice(node):
    node.write_spec(sleeper("a"))
    first = node.run_foreground()
    wait_until(node.monitor_pid, 10, "the first monitor")
    assert node.monitor_pid() == first.pid
    node.wait_state("a", "running")
    second = node.run_foreground()
    assert second.wait(timeout=10) == 1
    assert "monitor already running (pid %d)" % first.pid in (node.root / "run-fg-1.log").read_text()
    r = node.sh("start")
    assert r.stdout == f"monitor already running (pid {first.pid})\n"
    assert first.poll() is None and node.monitor_pid() == first.pid
    assert len(node.events("start", "a")) == 1
    # SIGTERM: the monitor leaves, releases its lock, the processes stay
    first.terminate()
    assert first.wait(timeout=10) == 0
    assert not (node.pl / "monitor.lock").exists() and not (node.pl / "monitor.pid").exists()
    assert is_alive(node.pid_of("a"))


def test_sigkilled_monitor_lock_is_taken_over(shell_node):
    node = shell_node
    node.write_spec(sleeper("a"), sleeper("b"))
    node.sh("start")
    old = node.monitor_pid()
    a = node.wait_state("a", "running")["pid"]
    b = node.wait_state("b", "running")["pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not is_alive(old), 5, "the monitor to die")
    assert (node.pl / "monitor.lock" / "pid").read_text().strip() == str(old)  # stale lock left behind
    r = node.sh("start")
    new = node.monitor_pid()
    assert new and new != old and r.stdout == f"monitor started (pid {new})\n"
    hb = wait_until(lambda: (h := node.heartbeat()) and h["monitor_pid"] == new and h, 5, "new heartbeat")
    assert hb["procs"]["a"]["pid"] == a and hb["procs"]["b"]["pid"] == b  # adopted, not restarted
    # an adopted process is not the new monitor's child: its exit status is unknown
    os.kill(a, signal.SIGKILL)
    again = node.wait_state("a", "running", restarts=1)
    assert again["pid"] != a and again["last_exit"] == "-"


def test_start_detaches_from_the_calling_session(node):
    node.write_spec(sleeper("a"))
    log = node.root / "caller.log"
    cmd = f"{SH} {shlex.quote(str(node.script))} start; echo caller-done; exec sleep 1000"
    with open(log, "wb") as out:
        caller = subprocess.Popen([SH, "-c", cmd], cwd=node.root, env=node.env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    node.popens.append(caller)
    wait_until(lambda: "caller-done" in log.read_text(), 15, "start to return")
    mpid = node.monitor_pid()
    assert mpid and "monitor started" in log.read_text()
    a = node.wait_state("a", "running")["pid"]
    assert proc_stat(mpid)[2] != caller.pid  # another session than the caller's
    # the "SSH session" ends: hangup, then everything in it is killed
    os.killpg(caller.pid, signal.SIGHUP)
    os.killpg(caller.pid, signal.SIGKILL)
    caller.wait(timeout=10)
    time.sleep(1.0)
    assert node.monitor_pid() == mpid and is_alive(a)
    hb = node.heartbeat()
    assert hb["monitor_pid"] == mpid and abs(hb["epoch"] - time.time()) < 10


def test_no_setsid_fallback(node):
    node.env["PLTUI_NO_SETSID"] = "1"
    node.write_spec(sleeper("a"), ProcessSpec("stubborn", 'trap "" TERM; while :; do sleep 0.1; done',
                                              ".pltui/run/stubborn.pid", stop_timeout=0.5))
    node.sh("start")
    a = node.wait_state("a", "running")["pid"]
    s = node.wait_state("stubborn", "running")["pid"]
    r = node.sh("proc-stop", "all")
    assert "killed after 0.5s" in r.stdout and not is_alive(a) and not is_alive(s)
    node.sh("proc-start", "a")
    node.wait_state("a", "running")
    # reload by SIGHUP of a compound command that has no group of its own (dash and busybox ash have no
    # job control without a terminal): a clear refusal, not a SIGHUP to the wrapper alone
    node.sh("proc-start", "stubborn")
    s = node.wait_state("stubborn", "running")["pid"]
    r = node.sh("reload", "stubborn", check=False)
    if proc_stat(s)[1] != s:
        assert r.returncode == 1 and "stubborn: cannot reload by SIGHUP" in r.stderr, r.stderr
    else:
        assert f"stubborn: reloaded (SIGHUP to process group {s})" in r.stdout


def test_event_log_and_outputs_stay_bounded(node):
    out_max, events_max = 50_000, 1_500
    node.write_spec(
        ProcessSpec("spew", "while :; do printf '%02000d\\n' 0; sleep 0.05; done", ".pltui/run/spew.pid",
                    reload="true"),
        extra=f"STABLE_TIME=1\nOUT_MAX={out_max}\nEVENTS_MAX={events_max}\nRELOAD_SETTLE=0\n",
    )
    node.sh("start")
    node.wait_state("spew", "starting")
    out = node.pl / "run" / "spew.out"
    slack = 40_000  # what the process writes between two checks (2 KB / 0.05 s, 0.5 s interval)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        node.sh("reload", "spew")  # an event per call; the command rotates the log itself
        for path, limit in ((out, out_max + slack), (out.with_name("spew.out.1"), out_max + slack),
                            (node.pl / "events.log", events_max + 200), (node.pl / "events.log.1", events_max + 200)):
            if path.exists():
                assert path.stat().st_size <= limit, (path.name, path.stat().st_size)
        time.sleep(0.05)
    assert out.with_name("spew.out.1").exists() and (node.pl / "events.log.1").exists()
    assert not list(node.pl.glob("**/*.2"))
    assert out.with_name("spew.out.1").read_bytes().startswith(b"0" * 2000 + b"\n")


# ------------------------------------------------------------------------------------------------
# cron


@pytest.fixture
def fake_crontab(tmp_path):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    table = tmp_path / "crontab.txt"
    script = bindir / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        f"f={shlex.quote(str(table))}\n"
        'case "$1" in\n'
        '  -l) [ -f "$f" ] || { echo "no crontab for you" >&2; exit 1; }; cat "$f" ;;\n'
        '  -) cat > "$f" ;;\n'
        '  *) echo "fake crontab: unsupported $*" >&2; exit 2 ;;\n'
        "esac\n")
    script.chmod(0o755)
    return bindir, table


def cron_command(line: str) -> str:
    """The shell command cron would run for an @reboot line (with cron's % handling)."""
    assert line.startswith("@reboot ")
    command = line[len("@reboot "):]
    assert re.search(r"(?<!\\)%", command) is None, "unescaped % would cut the command"
    return command.replace("\\%", "%")


def test_cron_install_and_remove(tmp_path, fake_crontab):
    bindir, table = fake_crontab
    node = Node(tmp_path / "it's 100% a svc")
    try:
        node.write_spec(sleeper("a"))
        node.env["PATH"] = f"{bindir}:{node.env['PATH']}"
        mine_elsewhere = "@reboot sh /srv/x/.pltui/monitor.sh start # pltui-monitor /srv/x"
        table.write_text(f"MAILTO=''\n*/5 * * * * echo keep 50\\% >/dev/null\n{mine_elsewhere}\n")
        assert node.sh("cron-install").stdout == f"installed @reboot entry for {node.root}\n"
        node.sh("cron-install")  # idempotent
        lines = table.read_text().splitlines()
        ours = [line for line in lines if str(node.root).replace("%", "\\%") in line]
        assert len(ours) == 1 and lines[:3] == ["MAILTO=''", "*/5 * * * * echo keep 50\\% >/dev/null", mine_elsewhere]
        # what cron would run, from a bare environment elsewhere, starts this monitor
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        subprocess.run([SH, "-c", cron_command(ours[0])], cwd="/", env=env, check=True, timeout=30)
        wait_until(node.monitor_pid, 10, "the monitor started by the cron line")
        node.wait_state("a", "running")

        assert node.sh("cron-remove").stdout == f"removed @reboot entry for {node.root}\n"
        assert table.read_text().splitlines() == lines[:3]
        assert node.sh("cron-remove").stdout == f"no pltui @reboot entry for {node.root}\n"

        # no crontab program at all: a clear error, nothing else needed
        empty = tmp_path / "emptybin"
        empty.mkdir()
        r = node.sh("cron-install", check=False, env={**node.env, "PATH": str(empty)})
        assert r.returncode == 1 and "crontab is not available" in r.stderr
    finally:
        node.cleanup()
