"""State database write speed: 20,000 node rows saved by the Store against raw sqlite3.

Three figures from the same run, same file system, same rows:
- `raw one transaction`: sqlite3 `executemany` of node_state + observations rows inside one
  BEGIN ... COMMIT (the floor: nothing pltui does can be cheaper);
- `autocommit (before)`: the same statements on an autocommit connection under `with db:`,
  which is what the store did before it used explicit transactions (every row its own commit);
- `Store.save_statuses`: pltui's store (one transaction per call; latest fields read from
  node_state, JSON encoding of each status included), first call on a fresh database and a
  second call in a new process-like Store where every node changed one field.

    python bench/bench_store.py            # 20,000 rows, best of 3
    python bench/bench_store.py --rows 5000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from pltui.model import NodeStatus, ProcStatus, SSHState
from pltui.store import Store


def statuses(n: int, version: str) -> list[NodeStatus]:
    return [NodeStatus(node=f"node{i:05d}", ssh=SSHState.OK, version=version, monitor="alive",
                       processes=[ProcStatus(name="web", alive=True)], observed=time.time()) for i in range(n)]


def rows_of(batch: list[NodeStatus]) -> tuple[list, list]:
    now = time.time()
    state = [(s.node, now, 1, json.dumps(s.to_json())) for s in batch]
    obs = [(s.node, now, 1, json.dumps({"version": s.version})) for s in batch]
    return state, obs


def raw(path: Path, batch: list[NodeStatus], *, one_transaction: bool) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE node_state (node TEXT PRIMARY KEY, updated REAL NOT NULL, sweep_id INTEGER, status TEXT NOT NULL)")
    db.execute("CREATE TABLE observations (id INTEGER PRIMARY KEY, node TEXT NOT NULL, time REAL NOT NULL, sweep_id INTEGER, fields TEXT NOT NULL)")
    started = time.perf_counter()
    state, obs = rows_of(batch)
    if one_transaction:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO node_state VALUES (?,?,?,?)", state)
        db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)", obs)
        db.execute("COMMIT")
    else:
        with db:  # opens no transaction on an autocommit connection: one commit per row
            db.executemany("INSERT OR REPLACE INTO node_state VALUES (?,?,?,?)", state)
            db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)", obs)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def store(path: Path, n: int) -> tuple[float, float]:
    first = statuses(n, "1.0")
    s = Store(path)
    started = time.perf_counter()
    s.save_statuses(first, 1)
    fresh = time.perf_counter() - started
    s.close()
    again = Store(path)  # a new process: latest fields come from node_state, not history
    changed = statuses(n, "2.0")
    started = time.perf_counter()
    again.save_statuses(changed, 2)
    second = time.perf_counter() - started
    again.close()
    return fresh, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = statuses(args.rows, "1.0")
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for run in range(args.repeat):
            figures = {
                "raw one transaction": raw(Path(tmp) / f"raw{run}.db", batch, one_transaction=True),
                "autocommit (before)": raw(Path(tmp) / f"auto{run}.db", batch, one_transaction=False),
            }
            figures["Store.save_statuses, fresh db"], figures["Store.save_statuses, new Store, all changed"] = \
                store(Path(tmp) / f"store{run}.db", args.rows)
            for name, value in figures.items():
                best[name] = min(best.get(name, value), value)
    floor = best["raw one transaction"]
    print(f"{args.rows} node rows (node_state + observations), best of {args.repeat}, {tempfile.gettempdir()}")
    for name, value in best.items():
        print(f"  {name:<44} {value:7.3f} s   {value / floor:5.1f}x raw")


if __name__ == "__main__":
    main()
