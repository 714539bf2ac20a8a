"""`pltui audit FLEET`: who did what to which nodes (the audit log every action already records).

Each entry: when, who (user@host, pid), the action, its nodes (a folded node set), its
arguments and its result. `-w/-g/-x/-X` keep the entries touching any selected node; `--limit`
the latest N (after the filter). Exit 0; 2 when the state database cannot be read.
"""

from __future__ import annotations

import json
import time

from pltui.cli import (EXIT_OK, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err, load_fleet, out,
                       print_json, select)
from pltui.nodesets import fold
from pltui.sanitize import clean_line

SCAN = 100_000  # entries read when filtering by node (the audit log grows by one per action)


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="show the audit log: who ran what on which nodes",
                                   description="Show the audit log recorded by every action (rollouts, repairs, "
                                               "start/stop, exec, logs, captures, heals, sweeps).")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--limit", type=int, default=50, help="latest entries to show (default 50)")
    parser.set_defaults(func=run)


def _decode(text, default):
    try:
        return json.loads(text) if text else default
    except (TypeError, ValueError):
        return default


def entries(rows: list[dict], wanted: set[str] | None, limit: int) -> list[dict]:
    """Rows as JSON-ready entries (nodes and args decoded), filtered to `wanted` nodes, latest `limit`."""
    found = []
    for row in rows:
        nodes = _decode(row["nodes"], [])
        nodes = [n for n in nodes if isinstance(n, str)] if isinstance(nodes, list) else []
        if wanted is not None and not wanted.intersection(nodes):
            continue
        found.append({**row, "nodes": nodes, "args": _decode(row["args"], {})})
    return found[-limit:]


def run(args) -> int:
    from pltui.paths import fleet_dir, state_root
    from pltui.store import Store, StoreError

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    fleet = load_fleet(args.fleet)
    selecting = args.include or args.groups or args.exclude or args.exclude_groups
    wanted = set(select(fleet, args)) if selecting else None
    try:
        store = Store(fleet_dir(state_root(args.state), fleet.name, fleet.path) / "pltui.db")
        if store.notice:
            err(f"pltui: warning: {store.notice}")
        try:
            rows = store.audit_log(limit=SCAN if wanted is not None else args.limit)
        finally:
            store.close()
    except StoreError as exc:
        raise UsageError(f"cannot read the audit log: {exc}") from None
    found = entries(rows, wanted, args.limit)
    if args.json:
        print_json({"fleet": fleet.name, "audit": found})
        return EXIT_OK
    for e in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        argv = ", ".join(f"{k}={clean_line(str(v), 80)}" for k, v in e["args"].items()) if isinstance(e["args"], dict) else ""
        out(f"{when} {e['user']}@{e['host']} (pid {e['pid']}) {e['action']} {fold(e['nodes']) or '-'} "
            f"({len(e['nodes'])})" + (f" [{argv}]" if argv else "") + f": {e['result'] or 'no result recorded'}")
    if not found:
        out("no audit entries for this selection" if wanted is not None else "no audit entries yet")
    return EXIT_OK
