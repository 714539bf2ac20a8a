"""Processes of the simulated nodes and the demo: finding them (by the fleet's environment
marker, by pid file and start time), killing what they started (and only that), the subreaper,
and the reaper process that cleans up if we die. The real-sshd test rig uses these too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

# Every process a simulated node starts carries PLTUI_TESTFLEET=<token> in its environment.
MARKER_ENV = "PLTUI_TESTFLEET"


def warn_if_few_fds(needed: int) -> None:
    """Warn when the open-file limit cannot hold `needed` descriptors. Raising it is process-wide,
    so it is the caller's entry point's job (`pltui.limits.raise_nofile_limit`), never done here."""
    from pltui.limits import nofile_limit

    _, warning = nofile_limit(needed)
    if warning:
        warnings.warn(f"{warning}: raise it (ulimit -n) or use fewer nodes", RuntimeWarning, stacklevel=3)



def marked_pids(token: str) -> list[int]:
    """PIDs of processes whose environment holds ``PLTUI_TESTFLEET=token`` (our nodes' commands)."""
    needle = f"{MARKER_ENV}={token}".encode()
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry))
    return found


def proc_stat(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state first), [] when gone.

    The name is skipped up to its last ")": it may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2:].split()


def pid_alive(pid: int) -> bool:
    """True when /proc/PID exists and is not a zombie."""
    fields = proc_stat(pid)
    return bool(fields) and fields[0] != b"Z"


def kill_pids(pids: Iterable[int], *, grace: float = 1.0) -> list[int]:
    """SIGTERM the given pids, SIGKILL those alive after `grace` seconds; return any still alive."""
    pids = [p for p in pids if p > 1 and p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p)]
            if not pids:
                return []
            time.sleep(0.02)
    return [p for p in pids if pid_alive(p)]


def kill_marked(token: str, *, grace: float = 1.0) -> list[int]:
    """Kill every process carrying the fleet's marker (bounded); return those that survived."""
    left: list[int] = []
    for _ in range(3):  # a dying parent may fork once more; a few bounded rounds
        pids = marked_pids(token)
        if not pids:
            return []
        left = kill_pids(pids, grace=grace)
    return left



def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() and int(text[0]) > 1 else None


def _stat_number(pid: int, index: int) -> int | None:
    try:
        return int(proc_stat(pid)[index])
    except (ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the pid, names one process for good."""
    return _stat_number(pid, 19)


def parent_pid(pid: int) -> int | None:
    return _stat_number(pid, 1)


def set_subreaper(on: bool) -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER) on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_seen(seen: dict[int, int | None]) -> list[int]:
    """Kill the pids still alive that are the very processes we saw (same start time)."""
    same = [pid for pid, start in seen.items() if pid_alive(pid) and start_time(pid) == start]
    return kill_pids(same, grace=1.0) if same else []

def kill_monitor(root: Path) -> int | None:
    """SIGKILL a node's monitor (as a crash would: its lock and pid file stay); returns its pid."""
    pid = read_pid(root / ".pltui" / "monitor.pid")
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid
    return None


def kill_group(pid: int) -> None:
    """SIGKILL a service process (and its group, when it leads one: the monitor uses setsid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


# --------------------------------------------------------------------------------------------
# The reaper: kills the fleet's processes if this process dies without stopping them


_REAPER = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
token = sys.argv[1].encode()
needle = sys.argv[2].encode() + b"=" + token
try:
    sys.stdin.buffer.read()   # EOF: the demo process stopped (or died)
except Exception:
    pass
me = os.getpid()
for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found += 1
            try:
                os.kill(int(entry), sig)
            except OSError:
                pass
    if not found:
        break
    time.sleep(0.5)
"""


def start_reaper(token: str) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-I", "-c", _REAPER, token, MARKER_ENV], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        return None


def end_reaper(reaper: subprocess.Popen | None) -> None:
    if reaper is None:
        return
    with contextlib.suppress(OSError):
        reaper.stdin.close()
    try:
        reaper.wait(5)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait(5)

