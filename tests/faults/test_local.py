"""Local trouble on the management host: the state database locked by another pltui, corrupt,
on a full disk, or the state directory unusable; a console killed (SIGKILL) in the middle of a
rollout. The sweep goes on (history not saved, said on stderr), actions that need locks refuse
with one clear line, nothing is lost and nothing is left stuck.

Already proven elsewhere (not repeated here):
- Store-level: tests/test_store.py::test_corrupt_database_is_moved_aside, ::test_locked_database_gives_store_error,
  ::test_stale_lock_of_dead_process_is_taken_over
- the log destination full during collection: tests/test_logs.py::test_full_local_disk_stops_cleanly_and_prunes_nothing_unverified
- SIGKILL during log collection with --prune, then re-run: tests/test_logs.py::
  test_sigkill_during_prune_collection_then_rerun_loses_nothing
- SIGKILL during a rollout, --status, --resume: tests/test_rollout.py::test_rollout_killed_mid_batch_is_resumed
  (here: the same crash seen from the other faces: sweep, status, another operator's action)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pltui import fleet as fleet_mod
from pltui.paths import fleet_dir
from pltui.store import Store

from .helpers import assert_terminal_safe, fill, pltui

SSH = {"connect_timeout": "2s", "command_timeout": "10s"}

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO events(time, level, kind, message) VALUES (0, 'info', 'test', 'holding')")
print("LOCKED", flush=True)
sys.stdin.read()
"""


def db_path(fleet_path: Path, state: Path) -> Path:
    fleet = fleet_mod.load(fleet_path)
    return fleet_dir(state, fleet.name, fleet.path) / "pltui.db"


async def sweep_json(fleet_path, state, *extra, timeout=120):
    started = time.monotonic()
    code, out, err = await pltui("sweep", str(fleet_path), "--state", str(state), "--json", *extra, timeout=timeout)
    elapsed = time.monotonic() - started
    assert_terminal_safe(out, "stdout")
    errtext = assert_terminal_safe(err, "stderr")
    assert "Traceback" not in errtext, errtext
    return code, json.loads(out), errtext, elapsed


# --------------------------------------------------------------------------------------------
# The state database


async def test_state_database_locked_by_another_process(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet={"ssh_overrides": SSH})
    state = tmp_path / "state"
    code, doc, _, quick = await sweep_json(sim.fleet_path, state)
    assert code == 0 and doc["summary"]["health"]["up"] == 4
    db = db_path(sim.fleet_path, state)
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD_LOCK, str(db),
                                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 30)).strip() == b"LOCKED"
        # the sweep goes on, says on stderr that its history is not saved, stdout stays JSON
        code, doc, err, elapsed = await sweep_json(sim.fleet_path, state)
        assert code == 0 and doc["summary"]["health"]["up"] == 4, err
        assert "locked" in err and str(db) in err, err
        # one busy timeout, not one per write the sweep would have made
        assert elapsed < quick + 8, (elapsed, quick)
        # an action needing node locks refuses, in one line naming the database
        code, out, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "--", "touch ran")
        text = assert_terminal_safe(err, "stderr")
        assert code == 2 and "locked" in text and str(db) in text and "Traceback" not in text, text
        assert not any((n.root / "ran").exists() for n in sim.nodes.values())
    finally:
        holder.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(holder.wait(), 10)
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    # the other process is gone: history is saved again
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and "warning" not in err, err
    store = Store(db)
    try:
        assert len(store.history()) >= 4
    finally:
        store.close()


async def test_corrupt_state_database_moved_aside_and_said(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    state = tmp_path / "state"
    db = db_path(sim.fleet_path, state)
    # 1. not a database at all
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"definitely not SQLite\n" * 500)
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and doc["summary"]["health"]["up"] == 2
    assert "corrupt" in err and "moved aside" in err, err
    # 2. damaged in the middle: opens, but its pages are garbage
    store = Store(db)
    for i in range(3000):
        store.event("info", "filler", f"event {i} " + "y" * 200)
    store.close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(16384))
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and "corrupt" in err and "moved aside" in err, err
    asides = sorted(p.name for p in db.parent.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm")))
    assert len(asides) >= 1, asides  # kept, never deleted (two within one second share a name)
    # the new database works: history, and an action's node locks
    code, out, err = await pltui("history", str(sim.fleet_path), "--state", str(state), "--json")
    assert code == 0 and json.loads(out)["history"], err
    code, out, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "--", "true")
    assert code == 0, err


async def test_state_database_on_a_full_disk(make_sim_fleet, tmp_path, tiny_fs):
    sim = await make_sim_fleet(3, fleet={"ssh_overrides": SSH})
    state = tiny_fs(1024)
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and "warning" not in err, err
    filler = fill(state)
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and doc["summary"]["health"]["up"] == 3  # the sweep itself is not hurt
    assert "full" in err, err
    code, out, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "--", "touch ran")
    text = assert_terminal_safe(err, "stderr")
    assert code == 2 and "full" in text and "Traceback" not in text, text  # no locks, no action
    assert not any((n.root / "ran").exists() for n in sim.nodes.values())
    # a fresh state directory on the full disk: no database at all, the sweep still runs
    code, doc, err, _ = await sweep_json(sim.fleet_path, state / "fresh")
    assert code == 0 and doc["summary"]["health"]["up"] == 3 and "warning" in err, err
    filler.unlink()
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and "warning" not in err, err


async def test_state_directory_that_is_a_file(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH})
    state = tmp_path / "not-a-dir"
    state.write_text("a file\n")
    code, doc, err, _ = await sweep_json(sim.fleet_path, state)
    assert code == 0 and doc["summary"]["health"]["up"] == 2 and "warning" in err, err
    code, out, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "--", "touch ran")
    assert code == 2 and "cannot take node locks" in err.decode(), err  # a changing action needs its locks
    assert not any((n.root / "ran").exists() for n in sim.nodes.values())
    for argv in (["history"], ["repair", "-n"], ["rollout", "--status"], ["exec", "--no-lock", "--", "true"]):
        code, out, err = await pltui(argv[0], str(sim.fleet_path), "--state", str(state), *argv[1:])
        text = assert_terminal_safe(err, "stderr")
        assert "Traceback" not in text and code in (0, 1, 2), (argv, code, text)
        assert str(state) in text or "not-a-dir" in (out.decode() + text), (argv, text)


# --------------------------------------------------------------------------------------------
# A console killed during a rollout: visible, resumable, nothing stuck


PROCS = [{"name": "svc", "start": "bin/svc", "stop_timeout": "3s",
          "stop": "kill $(cat .pltui/run/svc.pid); sleep 0.5"}]


def make_bundle(base: Path, version: str) -> Path:
    d = base / f"bundle-{version}"
    (d / "bin").mkdir(parents=True)
    (d / "VERSION").write_text(f"{version}\n")
    (d / "bin" / "svc").write_text("#!/bin/sh\nexec sleep 1000\n")
    (d / "bin" / "svc").chmod(0o755)
    return d


async def test_console_killed_mid_rollout_is_visible_and_resumable(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet={"service": {"process": PROCS}, "ssh_overrides": SSH,
                                         "rollout": {"health_timeout": "10s"}})
    state = tmp_path / "state"
    code, out, err = await pltui("rollout", str(sim.fleet_path), str(make_bundle(tmp_path, "1.0")), "--yes",
                                 "--state", str(state))
    assert code == 0, out + err
    db = db_path(sim.fleet_path, state)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "rollout", str(sim.fleet_path), str(make_bundle(tmp_path, "2.0")), "--yes",
        "--parallel", "1", "--state", str(state), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    caught = None
    store = Store(db)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.returncode is None and caught is None:
            latest = store.actions(kind="rollout", limit=1)
            if latest and latest[0]["state"]["bundle"]["version"] == "2.0":
                phases = {n: r["phase"] for n, r in latest[0]["state"]["nodes"].items()}
                stopped = [n for n, p in phases.items() if p in ("stopped", "swapping", "swapped")]
                if stopped:
                    proc.send_signal(signal.SIGKILL)
                    caught = (latest[0]["id"], stopped[0])
            await asyncio.sleep(0.005)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        store.close()
    assert caught, "the rollout finished before a node was caught stopped"
    action_id, node = caught
    # visible: the sweep shows the node's service down, --status names the node and its phase
    code, doc, _, _ = await sweep_json(sim.fleet_path, tmp_path / "sweep-state", "-w", node)
    assert doc["nodes"][0]["processes"][0]["alive"] is False and code == 1
    code, out, _ = await pltui("rollout", str(sim.fleet_path), "--status", "--state", str(state))
    text = out.decode()
    assert f"rollout {action_id}: interrupted" in text and node in text, text
    # nothing stuck: the dead console's node locks do not block another operator
    code, out, err = await pltui("exec", str(sim.fleet_path), "--state", str(state), "-w", node, "--", "true")
    assert code == 0, err
    # resumable: --resume finishes the job
    code, out, err = await pltui("rollout", str(sim.fleet_path), "--resume", action_id, "--yes", "--state", str(state))
    assert code == 0, out + err
    for n in sim.nodes.values():
        assert (n.root / "VERSION").read_text() == "2.0\n"


# --------------------------------------------------------------------------------------------
# Nothing deleted on a node without a verified copy


async def test_prune_never_deletes_a_file_that_could_not_be_collected_real_sshd(make_sshd_fleet, tmp_path):
    """A log the login user cannot read (rotated by root, mode 0600) in a directory it may write:
    --prune deletes every collected file, each only after its copy's checksum matched, and never
    that one, which has no copy."""
    import gzip
    import hashlib

    from pltui.actions.logs import MANIFEST, unpct

    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to plant a file the nodes' login user cannot read")
    sshd = await asyncio.to_thread(make_sshd_fleet, 2, fleet={"service": {"logs": ["logs/*"]}, "ssh_overrides": SSH})
    originals = {}
    for node in sshd.nodes.values():
        logs = Path(node.root) / "logs"
        logs.mkdir()
        os.chown(logs, sshd.pw.pw_uid, sshd.pw.pw_gid)
        for name, data in (("app.log", os.urandom(300_000)), ("app.log.1", b"older\n" * 5000)):
            (logs / name).write_bytes(data)
            os.chown(logs / name, sshd.pw.pw_uid, sshd.pw.pw_gid)
            originals[(node.name, name)] = hashlib.sha256(data).hexdigest()
        (logs / "secret.log").write_bytes(b"root only\n")
        os.chmod(logs / "secret.log", 0o600)  # owned by root
    dest = tmp_path / "dest"
    code, out, err = await pltui("logs", str(sshd.fleet_path), "--state", str(tmp_path / "state"), "--dest", str(dest),
                                 "--prune", "--json")
    doc = json.loads(out)
    assert code == 1, err  # not everything could be collected
    for node in sshd.nodes.values():
        logs = Path(node.root) / "logs"
        assert (logs / "secret.log").read_bytes() == b"root only\n", "deleted without a copy"
        copies = {}
        for line in (dest / node.name / MANIFEST).read_bytes().splitlines():
            rec = json.loads(line)
            if rec["kind"] == "collected":
                data = (dest / node.name / os.fsdecode(unpct(rec["stored"]))).read_bytes()
                if rec["codec"] == "gzip":
                    data = gzip.decompress(data)
                elif rec["codec"] == "zstd":
                    data = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout
                copies[os.fsdecode(unpct(rec["path"]))] = hashlib.sha256(data).hexdigest()
        for name in ("app.log", "app.log.1"):
            assert copies.get(f"logs/{name}") == originals[(node.name, name)], (node.name, name, copies)
            assert not (logs / name).exists(), "a collected, verified file was not pruned"
        assert "logs/secret.log" not in copies
        assert doc["nodes"][node.name]["state"] != "done"
