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


# --------------------------------------------------------------------------------------------
# Transactions, latest fields, schema migrations, retention

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_failure_mid_write_leaves_neither_table_changed(tmp_path):
    """save_statuses writes node_state and observations together or not at all."""
    store = Store(tmp_path / "db")
    store.save_statuses([status("n1")], 1)
    before = (store.db.execute("SELECT node, status FROM node_state ORDER BY node").fetchall(),
              store.db.execute("SELECT count(*) FROM observations").fetchone())
    # The second table refuses the row of node "bad": the first table's rows must not stay.
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON observations WHEN NEW.node = 'bad' "
                     "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    with pytest.raises(StoreError, match="disk trouble"):
        store.save_statuses([status("n1", version="2.0"), status("n2"), status("bad")], 2)
    after = (store.db.execute("SELECT node, status FROM node_state ORDER BY node").fetchall(),
             store.db.execute("SELECT count(*) FROM observations").fetchone())
    assert after == before
    assert not store.db.in_transaction
    store.db.execute("DROP TRIGGER refuse")
    store.save_statuses([status("n1", version="2.0")], 3)  # and the store works on
    assert store.history(["n1"])[-1]["changes"] == {"version": "2.0"}


def test_latest_fields_come_from_their_table_not_from_history(tmp_path):
    """A new process continues each node's change log from the latest-fields table: even with
    its history pruned away, an unchanged node gets no new observation row."""
    store = Store(tmp_path / "db")
    store.save_statuses([status("n1"), status("n2", version="3.0")], 1)
    store.close()
    raw = sqlite3.connect(tmp_path / "db")
    raw.execute("DELETE FROM observations")
    raw.commit()
    raw.close()
    again = Store(tmp_path / "db")
    reads = []
    again.db.set_trace_callback(reads.append)
    again.save_statuses([status("n1"), status("n2", version="3.1")], 2)
    again.db.set_trace_callback(None)
    assert not [sql for sql in reads if "FROM observations" in sql], reads
    rows = again.history()
    assert [(r["node"], r["changes"]) for r in rows] == [("n2", {"version": "3.1"})]


def test_database_of_the_old_schema_is_migrated_and_keeps_its_data(tmp_path):
    """tests/data/store_v0.sql was dumped from a database written by the Store before schema
    versions existed (user_version 0)."""
    path = tmp_path / "db"
    raw = sqlite3.connect(path)
    with open(os.path.join(DATA, "store_v0.sql")) as f:
        raw.executescript(f.read())
    raw.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION > 0
    got = {s.node: s for _, s in store.statuses()}
    assert got["n1"].version == "2.0" and got["n2"].ssh == SSHState.REFUSED
    assert [r["changes"].get("version") for r in store.history(["n1"])] == ["1.0", "2.0"]
    assert store.last_sweep()["id"] == 2 and store.events()[0]["message"] == "old event"
    assert store.load_action("rollout-1")["state"] == {"x": 1}
    assert store.audit_log()[0]["result"] == "ok"
    # the latest fields were rebuilt from the old history: nothing changed, nothing recorded
    n1 = got["n1"]
    store.save_statuses([n1], 3)
    assert len(store.history(["n1"])) == 2
    store.close()
    Store(path).close()  # opening a current database again is a no-op


def test_database_of_a_newer_pltui_is_refused(tmp_path):
    path = tmp_path / "db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=999")
    raw.close()
    with pytest.raises(StoreError, match="newer pltui"):
        Store(path)


def test_retention_prunes_old_rows_in_batches_and_keeps_the_rest(tmp_path):
    store = Store(tmp_path / "db")
    now = 1_000_000_000.0
    old, new = now - 100 * 86400, now - 3600
    db = store.db
    db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)",
                   [(f"n{i}", old, 1, "{}") for i in range(250)] + [("n1", new, 2, "{}")])
    db.executemany("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                   [(old, "info", None, "x", "old"), (new, "info", None, "x", "new")])
    db.executemany("INSERT INTO sweeps(started, finished, checksums, nodes) VALUES (?,?,?,?)",
                   [(old, old, 0, 1), (new, new, 0, 1)])
    db.executemany("INSERT INTO actions(id, kind, started, updated, status, owner, state) VALUES (?,?,?,?,?,?,?)",
                   [("a-done", "rollout", old, old, "done", "me", "{}"),
                    ("a-halted", "rollout", old, old, "halted", "me", "{}"),
                    ("a-recent", "rollout", new, new, "done", "me", "{}")])
    store.save_statuses([status("n1")], 2)
    removed = store.prune(now - 90 * 86400, batch=100)
    assert removed == 250 + 1 + 1 + 1
    assert db.execute("SELECT count(*) FROM observations WHERE time < ?", (now - 90 * 86400,)).fetchone()[0] == 0
    assert [e["message"] for e in store.events()] == ["new"]
    assert {a["id"] for a in store.actions()} == {"a-halted", "a-recent"}  # resumable ones stay
    assert store.statuses()  # the latest state of each node is not history
    assert store.prune(now - 90 * 86400) == 0


FLEET = '[fleet]\nname = "f"\nnodes = ["a"]\n'


def test_fleet_store_history_setting(tmp_path):
    from pltui.fleet import FleetError, loads

    assert loads(FLEET).store.history == 90 * 86400  # history no longer grows forever by default
    assert loads(FLEET + '[store]\nhistory = "30d"\n').store.history == 30 * 86400
    assert loads(FLEET + '[store]\nhistory = 0\n').store.history == 0  # 0 keeps everything
    for bad, why in (('"soon"', "history"), ('"1h"', "at least 1d"), ("true", "history")):
        with pytest.raises(FleetError) as info:
            loads(FLEET + f"[store]\nhistory = {bad}\n", "f.toml")
        assert any(p.startswith("f.toml:5") and "[store.history]" in p and why in p for p in info.value.problems), info.value.problems
    with pytest.raises(FleetError, match=r"\[store.keep\] unknown key"):
        loads(FLEET + '[store]\nkeep = "1d"\n')
    fleet_file = tmp_path / "f.toml"
    fleet_file.write_text(FLEET + '[store]\nhistory = "7d"\n')
    from pltui.fleet import load

    store = Store.for_fleet(load(fleet_file), tmp_path / "state")
    assert store.retention == 7 * 86400 and store.path.is_relative_to(tmp_path / "state")
