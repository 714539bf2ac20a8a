"""Fixtures of the fault-injection suite (the SSH fleets come from tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.fixture
def tiny_fs(tmp_path):
    """mount(SIZE_KIB) -> a fresh tmpfs of that size (root only); every mount is lazily unmounted
    at teardown."""
    mounts = []

    def mount(size_kib: int = 512):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / f"tiny{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(point)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounts:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)

