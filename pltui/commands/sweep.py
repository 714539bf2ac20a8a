"""`pltui sweep` and `pltui history`: the fleet's state now, and a node's changes over time."""

from __future__ import annotations

import asyncio
import time

from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err,
                       load_fleet, out, print_json, select)
from pltui.durations import format_duration
from pltui.format import human_bytes, procs_cell
from pltui.model import Health
from pltui.nodesets import fold
from pltui.sweep import Engine


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="check the selected nodes over SSH")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--checksums", action="store_true", help="also checksum every important file")
    parser.add_argument("--watch", action="store_true", help="keep sweeping on the fleet's interval")
    parser.add_argument("--heal", choices=("off", "monitor"), help="override the fleet's heal policy")
    parser.set_defaults(func=run_sweep)

    parser = subparsers.add_parser("history", help="show nodes' changes over time")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--limit", type=int, default=200, help="most recent changes to show (default 200)")
    parser.set_defaults(func=run_history)


def sweep_document(engine: Engine, names: list[str], summary: dict) -> dict:
    nodes = []
    for name in names:
        status = engine.statuses[name]
        record = status.to_json()
        record["track"] = engine.fleet.nodes[name].track
        record["checksums"] = engine.consensus.checksum_state(name)
        record["drift"] = engine.consensus.drift.get(name, [])
        record["isolated"] = name in engine.consensus.isolated
        nodes.append(record)
    return {"fleet": engine.fleet.name, "time": time.time(), "summary": summary, "nodes": nodes}


def exit_code(engine: Engine, names: list[str]) -> int:
    bad = [n for n in names if engine.statuses[n].health != Health.UP or engine.consensus.drift.get(n)]
    return EXIT_UNHEALTHY if bad else EXIT_OK


def print_table(engine: Engine, names: list[str], summary: dict) -> None:
    header = f"{'NODE':<18} {'HEALTH':<9} {'SSH':<12} {'MONITOR':<8} {'PROCS':<11} {'VERSION':<12} {'PROTO':<6} {'SUMS':<9} {'LOAD':>5} {'DISK':>7} {'LOGS':>7}"
    out(header)
    for name in names:
        s = engine.statuses[name]
        ssh = s.ssh.value if s.latency_ms is None or s.ssh.value != "ok" else f"ok {s.latency_ms:.0f}ms"
        proto = (s.protocol or "-") + ("!" if name in engine.consensus.isolated else "")
        out(f"{name[:18]:<18} {s.health.value:<9} {ssh[:12]:<12} {(s.monitor or '-'):<8} {procs_cell(s)[:11]:<11} "
            f"{(s.version or '-')[:12]:<12} {proto[:6]:<6} {engine.consensus.checksum_state(name):<9} "
            f"{(f'{s.load:.2f}' if s.load is not None else '-'):>5} {human_bytes(s.disk_free):>7} {human_bytes(s.log_bytes):>7}")
        if s.error:
            out(f"    {s.error}")
        for warning in s.warnings:  # already sanitised one-liners (pltui/probe.py)
            out(f"    warning: {warning}")
    health = summary["health"]
    out(f"{summary['nodes']} nodes: {health['up']} up, {health['degraded']} degraded, {health['down']} down, "
        f"{health['unknown']} unknown")
    if summary["cohorts"]:
        cohorts = ", ".join(f"{p} ({n})" for p, n in summary["cohorts"].items())
        out(f"protocol cohorts: {cohorts}; largest {summary['largest_cohort']}"
            + (f"; isolated {fold(summary['isolated'])}" if summary["isolated"] else ""))
    files = summary["files"]
    if files:
        noq = sum(1 for f in files if not f["quorum"])
        out(f"checksums: {len(files)} files, {noq} without quorum, {len(summary['drift'])} drifted nodes"
            + (f" ({fold(summary['drift'])})" if summary["drift"] else ""))


async def _sweep(args, fleet, names) -> int:
    engine = Engine(fleet, state_dir=args.state, nodes=names, heal=args.heal)
    # Warnings go to stderr: stdout stays the table, or one JSON document per sweep.
    if engine.store_notice:
        err(f"pltui: warning: {engine.store_notice}")
    if engine.store_error:
        err(f"pltui: warning: {engine.store_error}")
    if engine.transport.nofile_warning:
        err(f"pltui: warning: {engine.transport.nofile_warning}")
    try:
        while True:
            summary = await engine.sweep(checksums=args.checksums)
            if engine.store_error:
                err(f"pltui: warning: history not saved: {engine.store_error}")
            if args.json:
                print_json(sweep_document(engine, names, summary))
            else:
                print_table(engine, names, summary)
            engine._store_call(lambda s: s.audit("sweep", names, {"checksums": args.checksums}, "done"))
            if not args.watch:
                return exit_code(engine, names)
            await asyncio.sleep(fleet.sweep.interval)
            if not args.json:
                out(f"--- {time.strftime('%H:%M:%S')} (every {format_duration(fleet.sweep.interval)})")
    finally:
        await engine.close()


def run_sweep(args) -> int:
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    return asyncio.run(_sweep(args, fleet, names))


def run_history(args) -> int:
    from pltui.paths import fleet_dir, state_root
    from pltui.store import Store, StoreError

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    try:
        store = Store(fleet_dir(state_root(args.state), fleet.name, fleet.path) / "pltui.db")
        if store.notice:
            err(f"pltui: warning: {store.notice}")
        try:
            rows = store.history(names, limit=args.limit)
        finally:
            store.close()
    except StoreError as exc:
        raise UsageError(f"cannot read the history: {exc}") from None
    if args.json:
        print_json({"fleet": fleet.name, "history": rows})
        return EXIT_OK
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"]))
        changes = ", ".join(f"{k}={v if v is not None else '-'}" for k, v in row["changes"].items())
        out(f"{when} {row['node']:<18} {changes}")
    if not rows:
        out("no history yet for this selection (run `pltui sweep` first)")
    return EXIT_OK
