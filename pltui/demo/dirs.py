"""The demo's directory: a fresh one under STATE/demo/, claimed (flock on its marker) for one
run, old unused ones pruned with the fleet state pltui kept for them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

from pltui.demo.layout import FLEET_NAME, KEEP_OLD, MARKER, DemoError


def default_dir(state_root: Path) -> Path:
    """A fresh directory under STATE/demo/ (older unused ones beyond the last few are removed,
    with the sweep history pltui kept for them)."""
    parent = state_root / "demo"
    parent.mkdir(parents=True, exist_ok=True)
    prune_old(parent, state_root=state_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise DemoError(f"cannot make a fresh demo directory in {parent}")


def prune_old(parent: Path, keep: int = KEEP_OLD, *, state_root: Path | None = None) -> None:
    """Remove old demo directories under `parent` (ours, by marker, and not in use), and with
    `state_root` also the fleet state (history database) pltui kept for each."""
    from pltui.paths import fleet_dir

    dirs = sorted((p for p in parent.iterdir() if (p / MARKER).is_file()), key=lambda p: p.name)
    for path in dirs[:-keep] if keep else dirs:
        fd = try_lock(path / MARKER)
        if fd is None:
            continue  # a running demo
        try:
            if state_root is not None:
                with contextlib.suppress(OSError):
                    shutil.rmtree(fleet_dir(state_root, FLEET_NAME, (path / "fleet.toml").resolve()),
                                  ignore_errors=True)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            release_lock(fd)


def try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def claim_dir(base_dir: Path) -> int:
    """Make `base_dir` ours for this run: absent, empty, or an old demo directory not in use
    (whose contents are then removed). Returns the fd holding its lock."""
    base_dir.mkdir(parents=True, exist_ok=True)
    marker = base_dir / MARKER
    entries = [p for p in base_dir.iterdir()]
    if entries and not marker.is_file():
        raise DemoError(f"{base_dir} is not empty and not a demo directory; give a new or empty --dir")
    fd = try_lock(marker)
    if fd is None:
        raise DemoError(f"{base_dir} is in use by another running demo")
    for entry in entries:
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    os.ftruncate(fd, 0)
    os.write(fd, f"pltui demo, pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd

