"""A full or read-only state directory: every command that needs it says so in one line and
exits 2; the sweep loop never dies silently and never keeps the sweep lock while not sweeping.

Real file systems: a small tmpfs filled to the last byte, and the same tmpfs remounted read-only.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess

from pltui import fleet as fleet_mod
from pltui.model import Notice, SweepFinished
from pltui.paths import fleet_dir
from pltui.sweep import Engine

from .helpers import assert_terminal_safe, fill, pltui
from .test_local import SSH, make_bundle


def remount(point, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True, capture_output=True)


async def expect_one_line_exit_2(argv, why: tuple[str, ...]) -> str:
    code, _out, err = await pltui(*argv)
    text = assert_terminal_safe(err, "stderr").strip()
    assert code == 2 and "Traceback" not in text, (argv, code, text)
    assert len(text.splitlines()) == 1 and any(w in text for w in why), (argv, text)
    return text


async def test_commands_on_a_full_or_read_only_state_directory(make_sim_fleet, tmp_path, tiny_fs):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    state = tiny_fs(1024)
    fleet = str(sim.fleet_path)
    code, _out, err = await pltui("sweep", fleet, "--state", str(state))  # a database exists
    assert code == 0, err
    bundle = str(make_bundle(tmp_path, "2.0"))
    filler = fill(state)
    try:
        for argv in (["rollout", fleet, bundle, "--yes"], ["exec", fleet, "--", "true"], ["serve", fleet, "--once"]):
            await expect_one_line_exit_2([*argv[:2], "--state", str(state), *argv[2:]], ("No space left", "full"))
    finally:
        filler.unlink()
    remount(state, "ro")
    try:
        for argv in (["rollout", fleet, bundle, "--yes"], ["exec", fleet, "--", "true"], ["serve", fleet, "--once"]):
            await expect_one_line_exit_2([*argv[:2], "--state", str(state), *argv[2:]], ("read-only", "Read-only", "readonly"))
    finally:
        remount(state, "rw")
    assert not any((n.root / ".pltui" / "releases").exists() for n in sim.nodes.values())


async def next_event(queue: asyncio.Queue, kind, timeout: float = 60):
    async def wait():
        while True:
            event = await queue.get()
            if isinstance(event, kind):
                return event
    return await asyncio.wait_for(wait(), timeout)


async def test_sweep_loop_on_a_full_state_disk_sweeps_and_says_so(make_sim_fleet, tiny_fs):
    """ENOSPC while writing the sweep lock's holder line killed the loop and kept the lock."""
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    state = tiny_fs(1024)
    fleet = fleet_mod.load(sim.fleet_path)
    engine = Engine(fleet, state_dir=state)
    queue = engine.subscribe()
    fill(state)
    task = engine.start()
    try:
        finished = await next_event(queue, SweepFinished)
        assert finished.summary["health"]["up"] == 2
        assert not task.done()
        assert engine.lock.owned  # it does the work, so it may hold the lock
    finally:
        await engine.close()
    assert task.done()
    lock = fleet_dir(state, fleet.name, fleet.path) / "sweep.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # freed on close
    finally:
        os.close(fd)


async def test_a_failing_sweep_loop_releases_the_lock_and_retries(make_sim_fleet, tmp_path, monkeypatch):
    """An unforeseen error in a sweep (here: a bug injected into one sweep) is said as an error
    Notice, the lock is released while the loop waits, and the loop sweeps again afterwards."""
    import pltui.sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "LOOP_BACKOFF", (1.0,))
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    fleet = fleet_mod.load(sim.fleet_path)
    engine = Engine(fleet, state_dir=tmp_path / "state")
    queue = engine.subscribe()
    real_sweep = engine.sweep
    calls = []

    async def broken_once(checksums=False, nodes=None):
        calls.append(checksums)
        if len(calls) == 1:
            raise RuntimeError("injected bug")
        return await real_sweep(checksums=checksums, nodes=nodes)

    engine.sweep = broken_once
    task = engine.start()
    try:
        notice = await next_event(queue, Notice)
        while "injected bug" not in notice.message:
            notice = await next_event(queue, Notice)
        assert notice.level == "error"
        assert not engine.lock.owned  # not sweeping: another process may take over
        other = os.open(engine.lock.path, os.O_RDWR)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(other, fcntl.LOCK_UN)
        finally:
            os.close(other)
        await next_event(queue, SweepFinished)
        assert engine.lock.owned and not task.done()
    finally:
        await engine.close()
