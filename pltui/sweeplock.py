"""The fleet's sweep lock: which process runs a fleet's sweep loop (a console, `pltui serve`).

An advisory flock on `<fleet state dir>/sweep.lock`: the kernel frees it when its process exits,
however it exits, so a crashed sweeper never blocks the others. The file also names the holder
for the others to show; the flock alone is the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from pltui.store import operator


class SweepLock:
    """An advisory lock (flock) saying which process runs a fleet's sweep loop; freed on exit."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.error: str | None = None

    def try_acquire(self) -> bool:
        """True when this process may run the sweep loop: it holds the lock, or the lock cannot
        exist (unusable state directory: then nobody can share results, each process sweeps)."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self.error = f"cannot create {self.path}: {exc.strerror or exc}"
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        # Who holds it, for the others to show. A full or read-only disk may refuse this line:
        # the flock alone is the lock, so keep it (this process does the work) and say so.
        try:
            line = f"{os.getpid()} {operator()} {int(time.time())}\n".encode()
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))
            self.error = None
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"
        return True

    def held_elsewhere(self) -> bool:
        """Another process holds the lock now (a shared probe that never keeps it)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the shared probe lock too
        return False

    def holder(self) -> str:
        try:
            pid, who, since = self.path.read_text().split()[:3]
            return f"{who} (pid {pid}) since {time.strftime('%H:%M:%S', time.localtime(int(since)))}"
        except (OSError, ValueError):
            return "another pltui"

    @property
    def owned(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
