"""SQLite history of one fleet: sweeps, per-node observations (changes only), events, audit log,
action state and node locks.

Safe for several pltui processes on one fleet (WAL journal, busy timeout). A corrupt database is
moved aside (never deleted) and a new one started; a full disk or a locked database turns into a
`StoreError` the caller reports, never a crash of the sweep.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from pltui.model import NodeStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, checksums INTEGER NOT NULL,
    nodes INTEGER NOT NULL, summary TEXT, owner TEXT
);
CREATE TABLE IF NOT EXISTS node_state (
    node TEXT PRIMARY KEY, updated REAL NOT NULL, sweep_id INTEGER, status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS node_state_updated ON node_state(updated);
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY, node TEXT NOT NULL, time REAL NOT NULL, sweep_id INTEGER,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observations_node ON observations(node, time);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, level TEXT NOT NULL, node TEXT, kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_node ON events(node, time);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, action TEXT NOT NULL, nodes TEXT NOT NULL, args TEXT NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, started REAL NOT NULL, updated REAL NOT NULL,
    status TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_locks (
    node TEXT PRIMARY KEY, action_id TEXT NOT NULL, holder TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, since REAL NOT NULL
);
"""

# Fields whose changes make a node's history (`pltui history`).
HISTORY_FIELDS = ("ssh", "health", "error", "monitor", "procs", "version", "protocol", "checksums")


class StoreError(Exception):
    """The state database cannot be used right now (locked, full disk, unreadable)."""


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def history_fields(status: NodeStatus, checksums: str | None = None) -> dict[str, Any]:
    fields = {
        "ssh": status.ssh.value,
        "health": status.health.value,
        "error": status.error,
        "monitor": status.monitor,
        "procs": f"{status.procs_alive}/{len(status.processes)}" if status.processes else None,
        "version": status.version,
        "protocol": status.protocol,
    }
    if checksums is not None:
        fields["checksums"] = checksums
    return fields


class Store:
    def __init__(self, path: str | os.PathLike, *, timeout: float = 5.0):
        self.path = Path(path)
        self.timeout = timeout
        self.notice: str | None = None  # set when the database had to be moved aside
        self._last: dict[str, dict] = {}
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"state directory {self.path.parent}: {exc.strerror or exc}") from None
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise StoreError(f"state database {self.path}: {exc}") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            for n in range(1, 1000):  # never over an earlier one
                if not aside.exists():
                    break
                aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{n}")
            try:
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    extra = Path(str(self.path) + suffix)
                    if extra.exists():
                        os.replace(extra, Path(str(aside) + suffix))
            except OSError as err:
                raise StoreError(f"state database {self.path} is corrupt ({exc}) and cannot be moved aside: "
                                 f"{err.strerror or err}") from None
            self.notice = f"state database {self.path} was corrupt; moved aside to {aside.name}, started a new one"
            try:
                db = self._connect()
                # in the new database too: whoever opens it next can still see what happened
                db.execute("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                           (time.time(), "warning", None, "store", self.notice))
                return db
            except sqlite3.DatabaseError as exc2:
                raise StoreError(f"state database {self.path}: {exc2}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            db.executescript(SCHEMA)
            # quick_check reports damage as a row (it raises only when it cannot read at all)
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict[0] if verdict else 'no answer'})")
        except sqlite3.DatabaseError:
            db.close()
            raise
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        return db

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, params: Iterable = (), many: bool = False):
        try:
            if many:
                with self.db:
                    return self.db.executemany(sql, params)
            return self.db.execute(sql, tuple(params))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"state database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {self.path} damaged: {exc}") from None

    def _read(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {self.path}: {exc}") from None

    # -- sweeps -----------------------------------------------------------------------------

    def sweep_started(self, checksums: bool, nodes: int) -> int:
        cur = self._write("INSERT INTO sweeps(started, checksums, nodes, owner) VALUES (?,?,?,?)",
                          (time.time(), int(checksums), nodes, operator()))
        return int(cur.lastrowid)

    def sweep_finished(self, sweep_id: int, summary: dict) -> None:
        self._write("UPDATE sweeps SET finished=?, summary=? WHERE id=?",
                    (time.time(), json.dumps(summary), sweep_id))

    def last_sweep(self, checksums: bool | None = None) -> dict | None:
        where = "WHERE finished IS NOT NULL" + ("" if checksums is None else f" AND checksums={int(checksums)}")
        rows = self._read(f"SELECT id, started, finished, checksums, summary FROM sweeps {where} ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "started": r[1], "finished": r[2], "checksums": bool(r[3]),
                "summary": json.loads(r[4]) if r[4] else None}

    def save_statuses(self, statuses: list[NodeStatus], sweep_id: int | None,
                      checksum_states: dict[str, str] | None = None) -> None:
        """Latest status per node, plus an observation row only for nodes whose history fields changed."""
        now = time.time()
        state_rows = []
        obs_rows = []
        for status in statuses:
            state_rows.append((status.node, now, sweep_id, json.dumps(status.to_json())))
            fields = history_fields(status, (checksum_states or {}).get(status.node))
            previous = self._last.get(status.node)
            if previous is None:
                previous = self._latest_fields(status.node)
            if "checksums" not in fields and previous and "checksums" in previous:
                fields["checksums"] = previous["checksums"]
            if fields != previous:
                changed = {k: v for k, v in fields.items() if previous is None or previous.get(k) != v}
                obs_rows.append((status.node, now, sweep_id, json.dumps(changed)))
                merged = dict(previous or {})
                merged.update(fields)
                fields = merged
            self._last[status.node] = fields
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO node_state(node, updated, sweep_id, status) VALUES (?,?,?,?)", state_rows)
                self.db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)", obs_rows)
        except sqlite3.DatabaseError as exc:
            self._last.clear()  # not saved: recompute from the database next time
            raise StoreError(f"state database {self.path}: {exc}") from None

    def _latest_fields(self, node: str) -> dict | None:
        rows = self._read("SELECT fields FROM observations WHERE node=? ORDER BY id", (node,))
        if not rows:
            return None
        merged: dict = {}
        for (fields,) in rows:
            merged.update(json.loads(fields))
        return merged

    def statuses(self, since: float = 0.0) -> list[tuple[float, NodeStatus]]:
        rows = self._read("SELECT updated, status FROM node_state WHERE updated > ? ORDER BY updated", (since,))
        out = []
        for updated, text in rows:
            try:
                out.append((updated, NodeStatus.from_json(json.loads(text))))
            except (ValueError, TypeError, KeyError):
                continue
        return out

    def history(self, nodes: Iterable[str] | None = None, limit: int = 1000) -> list[dict]:
        if nodes is None:
            rows = self._read("SELECT node, time, sweep_id, fields FROM observations ORDER BY id DESC LIMIT ?", (limit,))
        else:
            nodes = list(nodes)
            marks = ",".join("?" * len(nodes))
            rows = self._read(f"SELECT node, time, sweep_id, fields FROM observations WHERE node IN ({marks}) "
                              f"ORDER BY id DESC LIMIT ?", (*nodes, limit))
        return [{"node": r[0], "time": r[1], "sweep_id": r[2], "changes": json.loads(r[3])} for r in reversed(rows)]

    # -- events and audit -------------------------------------------------------------------

    def event(self, level: str, kind: str, message: str, node: str | None = None) -> None:
        self._write("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                    (time.time(), level, node, kind, message))

    def add_events(self, rows: list[tuple]) -> None:
        """Several events in one transaction, each (time, level, node, kind, message): a sweep's
        transitions (a mass outage is a thousand of them) cost one commit, not one each."""
        if rows:
            self._write("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)", rows, many=True)

    def events(self, node: str | None = None, limit: int = 200) -> list[dict]:
        if node is None:
            rows = self._read("SELECT time, level, node, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._read("SELECT time, level, node, kind, message FROM events WHERE node=? ORDER BY id DESC LIMIT ?", (node, limit))
        return [dict(zip(("time", "level", "node", "kind", "message"), r)) for r in reversed(rows)]

    def audit(self, action: str, nodes: Iterable[str], args: dict, result: str | None = None) -> int:
        user, _, host = operator().partition("@")
        cur = self._write("INSERT INTO audit(time, user, host, pid, action, nodes, args, result) VALUES (?,?,?,?,?,?,?,?)",
                          (time.time(), user, host, os.getpid(), action, json.dumps(list(nodes)), json.dumps(args, default=str), result))
        return int(cur.lastrowid)

    def audit_result(self, audit_id: int, result: str) -> None:
        self._write("UPDATE audit SET result=? WHERE id=?", (result, audit_id))

    def audit_log(self, limit: int = 100) -> list[dict]:
        rows = self._read("SELECT time, user, host, pid, action, nodes, args, result FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        keys = ("time", "user", "host", "pid", "action", "nodes", "args", "result")
        return [dict(zip(keys, r)) for r in reversed(rows)]

    # -- action state (crash-safe rollouts, log collection) ----------------------------------

    def save_action(self, action_id: str, kind: str, status: str, state: dict) -> None:
        now = time.time()
        self._write(
            "INSERT INTO actions(id, kind, started, updated, status, owner, state) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET updated=excluded.updated, status=excluded.status, state=excluded.state",
            (action_id, kind, now, now, status, operator(), json.dumps(state)),
        )

    def load_action(self, action_id: str) -> dict | None:
        rows = self._read("SELECT id, kind, started, updated, status, owner, state FROM actions WHERE id=?", (action_id,))
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "kind": r[1], "started": r[2], "updated": r[3], "status": r[4], "owner": r[5],
                "state": json.loads(r[6])}

    def actions(self, kind: str | None = None, status: str | None = None, limit: int = 50) -> list[dict]:
        sql = "SELECT id FROM actions WHERE 1=1"
        params: list = []
        if kind:
            sql += " AND kind=?"
            params.append(kind)
        if status:
            sql += " AND status=?"
            params.append(status)
        sql += " ORDER BY started DESC LIMIT ?"
        params.append(limit)
        return [self.load_action(r[0]) for r in self._read(sql, params)]

    # -- node locks: two operators never run conflicting actions on one node -----------------

    def lock_nodes(self, nodes: Iterable[str], action_id: str) -> None:
        """Take every node's lock for `action_id` or none; StoreError names the holder otherwise.

        Locks of processes that no longer exist on this host are stale and taken over."""
        nodes = list(nodes)
        user, _, host = operator().partition("@")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(nodes)) or "''"
                rows = self.db.execute(f"SELECT node, action_id, holder, pid, host, since FROM node_locks WHERE node IN ({marks})", nodes).fetchall()
                for node, other_action, holder, pid, lhost, since in rows:
                    if other_action == action_id:
                        continue
                    if lhost == host and not _pid_alive(pid):
                        continue  # stale: its process is gone
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                    raise StoreError(f"node {node} is locked by {holder} (pid {pid} on {lhost}, action {other_action}) since {when}")
                self.db.executemany("INSERT OR REPLACE INTO node_locks(node, action_id, holder, pid, host, since) VALUES (?,?,?,?,?,?)",
                                    [(n, action_id, user, os.getpid(), host, time.time()) for n in nodes])
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {self.path}: {exc}") from None

    def unlock_nodes(self, action_id: str) -> None:
        self._write("DELETE FROM node_locks WHERE action_id=?", (action_id,))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
