"""The SQLite store: changes-only history, corrupt databases moved aside, locks, audit."""

import os
import sqlite3
import subprocess
import sys

import pytest

from pltui.model import NodeStatus, ProcStatus, SSHState
from pltui.store import Store, StoreError


def status(name, ssh=SSHState.OK, version="1.0", alive=True):
    return NodeStatus(node=name, ssh=ssh, version=version, monitor="alive",
                      processes=[ProcStatus(name="web", alive=alive)])


def test_history_stores_changes_not_copies(tmp_path):
    store = Store(tmp_path / "db")
    for _ in range(5):
        store.save_statuses([status("n1"), status("n2")], 1)
    store.save_statuses([status("n1", version="2.0")], 2)
    store.save_statuses([status("n1", ssh=SSHState.REFUSED)], 3)
    rows = store.history(["n1"])
    assert len(rows) == 3
    assert rows[1]["changes"] == {"version": "2.0"}
    assert rows[2]["changes"]["ssh"] == "refused" and rows[2]["changes"]["health"] == "down"
    assert len(store.history(["n2"])) == 1
    # A fresh process reading the same database continues the change log, not a copy.
    store.close()
    again = Store(tmp_path / "db")
    again.save_statuses([status("n1", ssh=SSHState.REFUSED)], 4)
    assert len(again.history(["n1"])) == 3


def test_latest_statuses_roundtrip(tmp_path):
    store = Store(tmp_path / "db")
    store.save_statuses([status("n1", version="[/oops]")], 1)
    (updated, got), = store.statuses()
    assert got.node == "n1" and got.version == "[/oops]" and got.processes[0].name == "web"


def test_corrupt_database_is_moved_aside(tmp_path):
    path = tmp_path / "db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    store = Store(path)
    assert store.notice and "corrupt" in store.notice
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")
    store.save_statuses([status("n1")], 1)
    assert store.statuses()


def test_locked_database_gives_store_error(tmp_path):
    path = tmp_path / "db"
    store = Store(path, timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.event("info", "test", "hello")
    finally:
        holder.execute("ROLLBACK")
    store.event("info", "test", "hello")  # usable again once the other writer is done


def test_node_locks_name_the_holder_and_release(tmp_path):
    a = Store(tmp_path / "db")
    b = Store(tmp_path / "db")
    a.lock_nodes(["n1", "n2"], "rollout-1")
    with pytest.raises(StoreError, match=r"node n1 is locked by .* action rollout-1\) since"):
        b.lock_nodes(["n1", "n3"], "logs-2")
    b.lock_nodes(["n3"], "logs-2")  # all-or-nothing: n3 was not taken by the failed attempt
    a.unlock_nodes("rollout-1")
    b.lock_nodes(["n1"], "logs-2")


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "db"
    code = ("import sys; from pltui.store import Store; "
            f"Store({str(path)!r}).lock_nodes(['n1'], 'crashed-action')")
    subprocess.run([sys.executable, "-c", code], check=True)
    Store(path).lock_nodes(["n1"], "new-action")  # the holder's pid is gone


def test_audit_log(tmp_path):
    store = Store(tmp_path / "db")
    audit_id = store.audit("rollout", ["n1", "n2"], {"bundle": "b.tar.gz"})
    store.audit_result(audit_id, "ok")
    (entry,) = store.audit_log()
    assert entry["action"] == "rollout" and entry["result"] == "ok" and entry["pid"] == os.getpid()


def test_database_file_is_private(tmp_path):
    Store(tmp_path / "db").close()
    assert oct((tmp_path / "db").stat().st_mode & 0o777) == "0o600"
