"""SQLite history of one fleet: sweeps, per-node observations (changes only), events, audit log,
action state and node locks.

Safe for several pltui processes on one fleet (WAL journal, busy timeout). Every write that
touches more than one row is one explicit transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on
any error): tables written together change together, and 20,000 rows cost one commit, not 20,000.
The schema carries a version (`PRAGMA user_version`); older databases are migrated in place on
open, newer ones refused. Each node's latest history fields live beside its latest status
(`node_state.fields`), so a new process continues the change log without reading history, and
history can be pruned (`prune`, the fleet's `[store].history`) without losing the present.

A corrupt database is moved aside (never deleted) and a new one started; a full disk or a locked
database turns into a `StoreError` the caller reports, never a crash of the sweep.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pltui.model import NodeStatus

# The schema as it was before versions (user_version 0). A new database starts from it and runs
# every migration, exactly like an old one: there is one way to reach the current schema.
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



def _migrate_1(db: sqlite3.Connection) -> None:
    """Latest history fields per node beside its status (rebuilt from the history once), indexes
    for pruning by age, and the on-demand sweep requests of following processes."""
    db.execute("ALTER TABLE node_state ADD COLUMN fields TEXT")
    merged: dict[str, dict] = {}
    for node, fields in db.execute("SELECT node, fields FROM observations ORDER BY id"):
        try:
            merged.setdefault(node, {}).update(json.loads(fields))
        except (ValueError, TypeError):
            continue
    db.executemany("UPDATE node_state SET fields=? WHERE node=?",
                   [(json.dumps(fields), node) for node, fields in merged.items()])
    db.execute("CREATE INDEX IF NOT EXISTS observations_time ON observations(time)")
    db.execute("CREATE INDEX IF NOT EXISTS events_time ON events(time)")
    db.execute("CREATE TABLE IF NOT EXISTS sweep_requests ("
               "id INTEGER PRIMARY KEY, time REAL NOT NULL, checksums INTEGER NOT NULL, owner TEXT NOT NULL, "
               "taken REAL)")


# MIGRATIONS[i] takes a database from user_version i to i + 1.
MIGRATIONS = (_migrate_1,)
SCHEMA_VERSION = len(MIGRATIONS)
# Actions in these states are over: retention may forget them (halted ones can still be resumed).
FINISHED_ACTIONS = ("done", "failed", "rolled-back", "aborted", "cancelled")
PRUNE_BATCH = 5000

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
    """One fleet's state database. The only way to open one: `Store(path)`, or `Store.for_fleet`
    which also applies the fleet's retention setting."""

    SCHEMA_VERSION = SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike, *, timeout: float = 5.0, retention: float = 0.0):
        self.path = Path(path)
        self.timeout = timeout
        self.retention = retention  # seconds of history kept by `prune_expired`; 0 keeps all
        self.notice: str | None = None  # set when the database had to be moved aside
        self.db = self._open()

    @classmethod
    def for_fleet(cls, fleet, state_dir: str | os.PathLike | None = None, *, timeout: float = 5.0) -> Store:
        """The state database of `fleet` under `state_dir` (default: $XDG_STATE_HOME/pltui)."""
        from pltui.paths import fleet_dir, state_root

        path = fleet_dir(state_root(state_dir), fleet.name, fleet.path) / "pltui.db"
        return cls(path, timeout=timeout, retention=fleet.store.history)

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
            # quick_check reports damage as a row (it raises only when it cannot read at all)
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict[0] if verdict else 'no answer'})")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to SCHEMA_VERSION in one transaction (several processes may open an
        old database at once: the version is read again under the write lock)."""
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"state database {self.path} was written by a newer pltui (schema {version}, "
                                 f"this one knows up to {SCHEMA_VERSION}); upgrade pltui or use another --state")
            if version == 0:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction: everything inside commits together or not at all.

        (`with connection:` opens no transaction on an autocommit connection: each statement
        would commit on its own.) SQLite errors become StoreError naming the database."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise StoreError(f"state database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"state database {self.path} damaged: {exc}") from None

    def _write(self, sql: str, params: Iterable = (), many: bool = False):
        if many:
            with self._tx() as db:
                return db.executemany(sql, params)
        try:
            return self.db.execute(sql, tuple(params))  # one statement: atomic on its own
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
        """Latest status and history fields per node, plus an observation row only for nodes
        whose history fields changed: one transaction, so both tables agree after any failure.

        The previous fields are read inside the transaction, so two writers never record a
        change against a stale copy."""
        now = time.time()
        # what does not depend on the stored state is prepared before the write lock is taken
        prepared = [(status.node, json.dumps(status.to_json()),
                     history_fields(status, (checksum_states or {}).get(status.node))) for status in statuses]
        with self._tx() as db:
            previous_of = self._latest_fields(db, [node for node, _, _ in prepared])
            state_rows = []
            obs_rows = []
            for node, status_json, fields in prepared:
                previous = previous_of.get(node)
                if "checksums" not in fields and previous and "checksums" in previous:
                    fields["checksums"] = previous["checksums"]
                if fields != previous:
                    changed = {k: v for k, v in fields.items() if previous is None or previous.get(k) != v}
                    obs_rows.append((node, now, sweep_id, json.dumps(changed)))
                    fields = {**(previous or {}), **fields}
                previous_of[node] = fields  # a node twice in one batch
                state_rows.append((node, now, sweep_id, status_json, json.dumps(fields)))
            db.executemany("INSERT OR REPLACE INTO node_state(node, updated, sweep_id, status, fields) "
                           "VALUES (?,?,?,?,?)", state_rows)
            db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)", obs_rows)

    @staticmethod
    def _latest_fields(db: sqlite3.Connection, nodes: list[str]) -> dict[str, dict]:
        """Each node's latest history fields, from node_state (never by scanning history)."""
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(nodes))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            marks = ",".join("?" * len(part))
            for node, fields in db.execute(f"SELECT node, fields FROM node_state WHERE node IN ({marks}) "
                                           "AND fields IS NOT NULL", part):
                try:
                    found[node] = json.loads(fields)
                except ValueError:
                    continue  # unreadable: the next observation records every field again
        return found

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

    def last_answered(self) -> dict[str, float]:
        """node -> time of its last observation recorded while it answered over SSH (ssh ok).

        Read-only, for a console that starts while a node is down: without it, "last answered"
        would only count from the console's start. Observations hold changed fields only, so
        the ssh state is carried forward row by row; the time is the last change recorded while
        the node answered (it may have answered again later with nothing new to record)."""
        rows = self._read("SELECT node, time, CASE WHEN json_valid(fields) THEN json_extract(fields, '$.ssh') END "
                          "FROM observations ORDER BY node, time, id")
        out: dict[str, float] = {}
        node, ssh = None, None
        for name, when, changed in rows:
            if name != node:
                node, ssh = name, None
            if changed is not None:
                ssh = changed
            if ssh == "ok":
                out[name] = when
        return out

    # -- events and audit -------------------------------------------------------------------

    def event(self, level: str, kind: str, message: str, node: str | None = None) -> None:
        self.add_events([(time.time(), level, node, kind, message)])

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
        found = (self.load_action(r[0]) for r in self._read(sql, params))
        return [action for action in found if action is not None]

    # -- retention ---------------------------------------------------------------------------

    def prune_batch(self, before: float, batch: int = PRUNE_BATCH) -> int:
        """Delete at most `batch` rows per table older than `before` (history, events, finished
        sweeps and actions; never the audit log, node locks or the latest state). One short
        transaction, so a caller on an event loop can yield between batches. Returns the count."""
        finished = ",".join("?" * len(FINISHED_ACTIONS))
        removed = 0
        with self._tx() as db:
            for table, where, extra in (
                ("observations", "time < ?", ()),
                ("events", "time < ?", ()),
                ("sweeps", "finished IS NOT NULL AND finished < ?", ()),
                ("actions", f"updated < ? AND status IN ({finished})", FINISHED_ACTIONS),
            ):
                cur = db.execute(f"DELETE FROM {table} WHERE rowid IN "
                                 f"(SELECT rowid FROM {table} WHERE {where} LIMIT ?)", (before, *extra, batch))
                removed += max(cur.rowcount, 0)
        return removed

    def prune(self, before: float, batch: int = PRUNE_BATCH) -> int:
        """Every row older than `before`, in batches of `batch` per table; returns the count."""
        total = 0
        while True:
            removed = self.prune_batch(before, batch)
            total += removed
            if removed == 0:
                return total

    # -- on-demand sweeps asked of the sweeping process --------------------------------------

    def request_sweep(self, checksums: bool) -> int:
        """Ask whichever process owns the sweep loop for a sweep now."""
        cur = self._write("INSERT INTO sweep_requests(time, checksums, owner) VALUES (?,?,?)",
                          (time.time(), int(checksums), operator()))
        return int(cur.lastrowid)

    def has_sweep_requests(self) -> bool:
        return bool(self._read("SELECT 1 FROM sweep_requests WHERE taken IS NULL LIMIT 1"))

    def take_sweep_requests(self) -> bool | None:
        """The sweep owner takes every pending request at once: None (none), False (liveness) or
        True (one of them wants checksums). Requests older than a day are dropped unanswered."""
        with self._tx() as db:
            rows = db.execute("SELECT checksums FROM sweep_requests WHERE taken IS NULL").fetchall()
            now = time.time()
            db.execute("UPDATE sweep_requests SET taken=? WHERE taken IS NULL", (now,))
            db.execute("DELETE FROM sweep_requests WHERE time < ?", (now - 86400,))
        if not rows:
            return None
        return any(r[0] for r in rows)

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
