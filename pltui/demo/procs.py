"""The demo's process bookkeeping: pids by pid file and start time, killing what the demo
started (and only that), the subreaper, and the reaper process that cleans up if we die."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from pltui.demo.nodesim import MARKER_ENV, kill_pids, pid_alive, proc_stat


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

