"""The node monitor supervises the service's own process, under dash, bash, busybox ash and mksh.

Each test runs monitor.sh with the shell under test, which is also the `sh` on PATH (a symlink
named `sh` in a private bin directory: bash then runs as sh, busybox as its ash applet), so the
monitor's `sh -c START` wrappers run under the same shell. The service is a small sh script
(`bin/svc`) that logs `up PID` when it starts, `reloaded PID` on SIGHUP and `term PID` on SIGTERM;
its copies are counted in /proc by a tag unique to the test, so "never two copies" is checked on
the real process table, not on the monitor's own files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pltui.fleet import ProcessSpec
from test_monitor_local import SHELLS, Node, is_alive, proc_stat, shell_node_at, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

SVC = """#!/bin/sh
# test service: one line per life event in svc.log, each with its own pid
echo "up $$" >>svc.log
trap 'echo "reloaded $$" >>svc.log' HUP
trap 'echo "term $$" >>svc.log; exit 0' TERM
while :; do sleep 0.2; done
"""


@pytest.fixture(params=sorted(SHELLS))
def shnode(request, tmp_path):
    node = shell_node_at(tmp_path, request.param)
    (node.root / "bin").mkdir()
    (node.root / "bin" / "svc").write_text(SVC)
    (node.root / "bin" / "svc").chmod(0o755)
    node.tag = uuid.uuid4().hex
    yield node
    node.cleanup()
    for pid in copies(node):  # whatever escaped the monitor's cleanup is a defect: still end it
        os.kill(pid, signal.SIGKILL)


def copies(node: Node) -> list[int]:
    """Live processes running this test's bin/svc (not the `sh -c` wrappers around it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b"bin/svc") and node.tag.encode() in argv and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def svc_log(node: Node) -> list[str]:
    path = node.root / "svc.log"
    return path.read_text().splitlines() if path.exists() else []


def one_copy_running(node: Node, name: str = "svc") -> int:
    """Wait until the monitor reports NAME running with exactly one copy alive; its pid."""
    proc = node.wait_state(name, "running")
    wait_until(lambda: len(copies(node)) == 1, 10, "exactly one copy", dump=lambda: f"{copies(node)}\n{node.dump()}")
    time.sleep(1.2)  # a few monitor loops: nothing else gets started
    assert len(copies(node)) == 1, (copies(node), node.dump())
    return proc["pid"]


def test_reload_signals_the_service_itself_and_never_restarts_it(shnode):
    """A simple start command is exec'd: the pidfile names the service, SIGHUP reaches it."""
    node = shnode
    node.write_spec(ProcessSpec("svc", f"bin/svc --tag {node.tag}", ".pltui/run/svc.pid"))
    node.sh("start")
    pid = one_copy_running(node)
    assert copies(node) == [pid] and f"up {pid}" in svc_log(node)  # the pidfile names bin/svc, no wrapper
    r = node.sh("reload", "svc")
    assert r.stdout == f"svc: reloaded (SIGHUP to pid {pid})\n"
    wait_until(lambda: f"reloaded {pid}" in svc_log(node), 10, "the service's HUP trap", dump=node.dump)
    time.sleep(1.2)
    proc = node.proc("svc")
    assert proc["pid"] == pid and proc["restarts"] == 0 and copies(node) == [pid]
    assert not node.events("exit", "svc")


def test_compound_start_command_is_supervised_as_a_process_group(shnode):
    """`a; b` keeps a wrapper shell: it leads the group, which gets the reload signal and survives it."""
    node = shnode
    node.write_spec(ProcessSpec("svc", f"echo starting; bin/svc --tag {node.tag}; echo never", ".pltui/run/svc.pid"),
                    ProcessSpec("cd", f"cd bin && exec ./../bin/svc --tag {node.tag}-cd", ".pltui/run/cd.pid"))
    node.sh("start")
    wrapper = one_copy_running(node)
    (svc,) = copies(node)
    assert svc != wrapper and proc_stat(svc)[1] == wrapper  # the service is in the wrapper's group
    # `cd x && exec y`: the exec'd program is the recorded pid
    cd = node.wait_state("cd", "running")["pid"]
    cd_log = node.root / "bin" / "svc.log"  # its service runs in bin/
    wait_until(lambda: cd_log.exists() and f"up {cd}" in cd_log.read_text(), 10, "cd's service")
    r = node.sh("reload", "all")
    assert r.returncode == 0 and f"svc: reloaded (SIGHUP to process group {wrapper})" in r.stdout, r.stdout
    wait_until(lambda: f"reloaded {svc}" in svc_log(node), 10, "the group's HUP", dump=node.dump)
    wait_until(lambda: f"reloaded {cd}" in cd_log.read_text(), 10, "cd's HUP")
    time.sleep(1.2)
    assert node.proc("svc")["pid"] == wrapper and node.proc("svc")["restarts"] == 0 and copies(node) == [svc]
    assert node.proc("cd")["pid"] == cd and node.proc("cd")["restarts"] == 0
    assert "never" not in (node.pl / "run" / "svc.out").read_text()


@pytest.mark.parametrize("start", ["bin/svc --tag {tag}", "echo starting; bin/svc --tag {tag}"],
                         ids=["simple", "compound"])
def test_killed_monitor_and_pidfile_pid_leave_exactly_one_copy(shnode, start):
    """kill -9 of the monitor, then of the pidfile pid: the next monitor never runs two copies."""
    node = shnode
    node.write_spec(ProcessSpec("svc", start.format(tag=node.tag), ".pltui/run/svc.pid"))
    node.sh("start")
    pid = one_copy_running(node)
    (first,) = copies(node)
    monitor = node.monitor_pid()
    os.kill(monitor, signal.SIGKILL)
    wait_until(lambda: not is_alive(monitor), 5, "the monitor to die")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_alive(pid), 5, "the pidfile's pid to die")
    node.sh("start")  # the heal
    one_copy_running(node)
    if first != pid:  # a wrapper was killed: what it left in its group was ended, not duplicated
        assert not is_alive(first) and f"term {first}" in svc_log(node)
        assert node.events("leftovers", "svc")
    node.sh("stop-all")
    assert copies(node) == [] and node.monitor_pid() is None


def test_stop_all_ends_what_a_dead_wrapper_left_behind(shnode):
    """No monitor, a group whose leader died: stop-all still leaves nothing of the service running."""
    node = shnode
    node.write_spec(ProcessSpec("svc", f"echo starting; bin/svc --tag {node.tag}", ".pltui/run/svc.pid"))
    node.sh("start")
    wrapper = one_copy_running(node)
    node.sh("stop")
    os.kill(wrapper, signal.SIGKILL)
    wait_until(lambda: not is_alive(wrapper), 5, "the wrapper to die")
    assert len(copies(node)) == 1  # the orphan
    r = node.sh("stop-all")
    assert copies(node) == [], r.stdout


def test_a_reused_pid_is_never_signalled(shnode):
    """The pidfile names a live process with another start time: not ours, never touched."""
    node = shnode
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    node.popens.append(stranger)
    try:
        wait_until(lambda: proc_stat(stranger.pid) and proc_stat(stranger.pid)[1] == stranger.pid, 5, "the stranger")
        node.write_spec(ProcessSpec("svc", f"bin/svc --tag {node.tag}", ".pltui/run/svc.pid"))
        run = node.pl / "run"
        run.mkdir()
        (run / "svc.pid").write_text(f"{stranger.pid}\n")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        start = proc_stat(stranger.pid)[3]
        for ident in (f"{stranger.pid} {boot} {start - 7} {stranger.pid} group\n",  # an older process had it
                      f"{stranger.pid} {boot} {start - 7}\n"):  # as an older monitor wrote it
            (run / "svc.ident").write_text(ident)
            node.sh("start")
            pid = one_copy_running(node)
            assert pid != stranger.pid and is_alive(stranger.pid)
            node.sh("stop-all")
            assert copies(node) == [] and is_alive(stranger.pid)
            (run / "svc.pid").write_text(f"{stranger.pid}\n")
            r = node.sh("reload", "svc", check=False)
            assert r.returncode == 1 and "not running" in r.stderr and is_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def test_reload_reports_failure_when_the_process_did_not_survive_it(shnode):
    """Exit 1, never "reloaded", when the reload killed or replaced the process."""
    node = shnode
    node.write_spec(ProcessSpec("dies", "sleep 1000", ".pltui/run/dies.pid"),  # SIGHUP ends sleep
                    ProcessSpec("cmd", f"bin/svc --tag {node.tag}", ".pltui/run/cmd.pid",
                                reload='kill -9 "$(cat .pltui/run/cmd.pid)"'))
    node.sh("start")
    dies = node.wait_state("dies", "running")["pid"]
    cmd = node.wait_state("cmd", "running")["pid"]
    r = node.sh("reload", "dies", check=False)
    assert r.returncode == 1 and "reloaded" not in r.stdout, r.stdout
    assert f"dies: pid {dies} did not survive the reload" in r.stderr, r.stderr
    r = node.sh("reload", "cmd", check=False)
    assert r.returncode == 1 and "reloaded" not in r.stdout, r.stdout
    assert f"cmd: pid {cmd} did not survive the reload" in r.stderr, r.stderr
    # the monitor brings both back as usual
    node.wait_state("dies", "running", restarts=1)
    node.wait_state("cmd", "running", restarts=1)


def test_release_reload_without_monitor_fails_when_the_process_did_not_survive(tmp_path):
    """release.sh (a node without the monitor): a reload command that kills the process fails the reload."""
    import shlex

    from pltui.actions.rollout import release_script

    root = tmp_path / "svc root"
    root.mkdir()

    def release(cmd: str, reload: str) -> subprocess.CompletedProcess:
        values = {"ROOT": str(root), "CMD": cmd, "ID": "r1", "SHA256": "-", "KEEP": "2", "NPROCS": "1",
                  "P1_NAME": "x", "P1_START": "exec sleep 1000", "P1_PIDFILE": "run/x.pid", "P1_STOP": "",
                  "P1_RELOAD": reload, "P1_STOP_TIMEOUT": "2"}
        head = "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
        return subprocess.run(["sh", "-s"], input=head + release_script(), capture_output=True, text=True,
                              timeout=60)

    assert release("start", "").returncode == 0
    pid = int((root / "run" / "x.pid").read_text())
    try:
        ok = release("reload", ": nothing to do")
        assert ok.returncode == 0 and "ok reload" in ok.stdout and is_alive(pid)
        bad = release("reload", 'kill -9 "$(cat run/x.pid)"')
        assert bad.returncode == 1 and "ok reload" not in bad.stdout
        assert "did not survive its reload command" in bad.stderr, bad.stderr
    finally:
        release("stop", "")
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_an_older_monitors_orphan_is_ended_before_the_first_start(shnode):
    """A node upgraded from the old monitor: its wrapper (3-field ident) was killed, the service lives on."""
    node = shnode
    node.write_spec(ProcessSpec("svc", f"bin/svc --tag {node.tag}", ".pltui/run/svc.pid"))
    run = node.pl / "run"
    run.mkdir()
    # what the old monitor did under dash: setsid sh -c START &, the wrapper's pid in the pidfile
    old = subprocess.Popen(["setsid", "sh", "-c", f"bin/svc --tag {node.tag}; :"], cwd=node.root, env=node.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node.popens.append(old)
    wait_until(lambda: len(copies(node)) == 1, 10, "the old copy")
    (orphan,) = copies(node)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (run / "svc.pid").write_text(f"{old.pid}\n")
    (run / "svc.ident").write_text(f"{old.pid} {boot} {proc_stat(old.pid)[3]}\n")
    old.kill()
    old.wait(timeout=10)
    node.sh("start")
    pid = one_copy_running(node)
    assert pid != orphan and not is_alive(orphan) and f"term {orphan}" in svc_log(node)
    assert node.events("leftovers", "svc")


def test_a_process_started_without_the_monitor_is_adopted_not_doubled(shnode):
    """release.sh started it (no ident of ours): it works in the service root, so the monitor adopts it."""
    node = shnode
    node.write_spec(ProcessSpec("svc", f"bin/svc --tag {node.tag}", ".pltui/run/svc.pid"))
    (node.pl / "run").mkdir()
    started = subprocess.Popen(["setsid", "sh", "-c", f"exec bin/svc --tag {node.tag}"], cwd=node.root,
                               env=node.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    node.popens.append(started)
    wait_until(lambda: copies(node) == [started.pid], 10, "the service")
    (node.pl / "run" / "svc.pid").write_text(f"{started.pid}\n")
    node.sh("start")
    assert one_copy_running(node) == started.pid and node.events("adopt", "svc")
    ident = (node.pl / "run" / "svc.ident").read_text().split()
    assert ident[0] == str(started.pid) and ident[2] == str(proc_stat(started.pid)[3])  # pinned from now on
    r = node.sh("reload", "svc")
    assert r.returncode == 0 and started.pid == node.proc("svc")["pid"]
    wait_until(lambda: f"reloaded {started.pid}" in svc_log(node), 10, "the HUP")
