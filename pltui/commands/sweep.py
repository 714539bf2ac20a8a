"""`pltui sweep` and `pltui history`: the fleet's state now (with what changed: transitions, heals), and
a node's changes and transitions over time."""

from __future__ import annotations

import asyncio
import time

from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err,
                       load_fleet, out, print_json, select)
from pltui.durations import format_duration
from pltui.format import human_bytes, procs_cell
from pltui.model import HealDone, Health, NodeTransition
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
    parser.add_argument("--metrics-file", metavar="FILE",
                        help="after each sweep, write Prometheus metrics there atomically (node_exporter textfile)")
    parser.set_defaults(func=run_sweep)

    parser = subparsers.add_parser("history", help="show nodes' changes and transitions over time")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--limit", type=int, default=200, help="most recent changes to show (default 200)")
    parser.set_defaults(func=run_history)


def drain(queue: asyncio.Queue) -> tuple[list[NodeTransition], list[HealDone]]:
    """The transitions and heals the engine reported since the last drain, in order."""
    found, heals = [], []
    while not queue.empty():
        event = queue.get_nowait()
        if isinstance(event, NodeTransition):
            found.append(event)
        elif isinstance(event, HealDone):
            heals.append(event)
    return found, heals


def clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def print_changes(found: list[NodeTransition], heals: list[HealDone]) -> None:
    """What changed in this sweep (after the table): transitions first, then what heal did."""
    if found:
        out(f"transitions ({len(found)}):")
        for t in sorted(found, key=lambda t: (t.since or 0, t.node)):
            out(f"  {t.node} {t.kind} since {clock(t.since)}" + (f": {t.detail}" if t.detail else ""))
    for heal in heals:
        out(f"monitor {'healed' if heal.ok else 'NOT healed'} on {heal.node}: {heal.message}")


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
    """1 while any selected node is not up, drifts, or is isolated (outside the largest cohort)."""
    bad = [n for n in names if engine.statuses[n].health != Health.UP or engine.consensus.drift.get(n)
           or n in engine.consensus.isolated]
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
    if args.watch and not engine.lock.try_acquire():
        # one sweeper per fleet: the one running is what consoles follow (`pltui serve`, a console)
        holder = engine.lock.holder()
        await engine.close()
        raise UsageError(f"fleet {fleet.name} is already swept by {holder}; its results are in the store "
                         f"(open the console to follow it)")
    # Warnings go to stderr: stdout stays the table, or one JSON document per sweep.
    if engine.store_notice:
        err(f"pltui: warning: {engine.store_notice}")
    if engine.store_error:
        err(f"pltui: warning: {engine.store_error}")
    if engine.transport.nofile_warning:
        err(f"pltui: warning: {engine.transport.nofile_warning}")
    metrics = None
    if getattr(args, "metrics_file", None):
        from pltui.metrics import Metrics

        metrics = Metrics(fleet.name)
        metrics.attach(engine)
    from pltui import alerts

    alerter = alerts.attach(engine)  # [alerts] hooks hear this run's transitions
    queue = engine.subscribe()
    try:
        checksums = args.checksums
        while True:
            summary = await engine.sweep(checksums=checksums)
            found, heals = drain(queue)
            if metrics is not None:
                _write_metrics(metrics, args.metrics_file)
            if engine.store_error:
                err(f"pltui: warning: history not saved: {engine.store_error}")
            if args.json:
                doc = sweep_document(engine, names, summary)
                doc["transitions"] = [t.to_json() for t in found]
                doc["heals"] = [{"node": h.node, "ok": h.ok, "message": h.message} for h in heals]
                print_json(doc)
            else:
                print_table(engine, names, summary)
                print_changes(found, heals)
            engine._store_call(lambda s: s.audit("sweep", names, {"checksums": args.checksums}, "done"))
            if not args.watch:
                return exit_code(engine, names)
            # consoles follow this sweeper; their `s`/`S` (through the store) cut the wait short
            await engine.wait_next_sweep(fleet.sweep.interval)
            checksums = args.checksums or bool(engine.take_requests())
            if not args.json:
                out(f"--- {time.strftime('%H:%M:%S')} (every {format_duration(fleet.sweep.interval)})")
    finally:
        if alerter is not None:
            await alerter.close()
            if alerter.failed:
                err(f"pltui: warning: {alerter.failed} alert deliveries failed (the event log says why)")
        await engine.close()


def _write_metrics(metrics, path: str) -> None:
    from pltui.metrics import MetricsError

    metrics.drain()
    try:
        metrics.write_textfile(path)
    except MetricsError as exc:
        err(f"pltui: warning: {exc}")


def run_sweep(args) -> int:
    if args.metrics_file:
        import os

        folder = os.path.dirname(os.path.abspath(args.metrics_file))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"--metrics-file {args.metrics_file}: directory {folder} is missing or not writable")
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    return asyncio.run(_sweep(args, fleet, names))


def transitions_of(store, names: list[str], limit: int) -> list[NodeTransition]:
    """The selected nodes' stored transitions (events of kind "transition"), the latest `limit`."""
    from pltui.transitions import from_event

    found = []
    for name in names:
        found += [t for t in map(from_event, store.events(name, limit=limit)) if t is not None]
    found.sort(key=lambda t: t.since or t.time)
    return found[-limit:]


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
            found = transitions_of(store, names, args.limit)
        finally:
            store.close()
    except StoreError as exc:
        raise UsageError(f"cannot read the history: {exc}") from None
    if args.json:
        print_json({"fleet": fleet.name, "history": rows, "transitions": [t.to_json() for t in found]})
        return EXIT_OK
    lines = []
    for row in rows:
        changes = ", ".join(f"{k}={v if v is not None else '-'}" for k, v in row["changes"].items())
        lines.append((row["time"], 0, row["node"], changes))
    for t in found:
        lines.append((t.since or t.time, 1, t.node, f"{t.kind}" + (f": {t.detail}" if t.detail else "")))
    for when, _, node, text in sorted(lines, key=lambda line: line[:2]):
        out(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))} {node:<18} {text}")
    if not rows and not found:
        out("no history yet for this selection (run `pltui sweep` first)")
    return EXIT_OK
