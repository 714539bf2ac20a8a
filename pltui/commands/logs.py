"""`pltui logs FLEET --dest DIR [--prune]`: collect the nodes' log files, verified (see
pltui/actions/logs/). Re-running continues a killed or failed collection and skips what is
already collected. Exit 0 when every selected node's files are all collected, 1 otherwise (a
node unreachable, a file failed, the run stopped), 2 on usage and local errors (a full local
disk stops the run: that is this machine's problem, not the nodes').
"""

from __future__ import annotations

import asyncio
import sys
import time

from pltui.actions.base import ActionError
from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err,
                       load_fleet, out, print_json, select)
from pltui.format import human_bytes
from pltui.model import ActionProgress, Event
from pltui.sanitize import clean_line


def register(subparsers) -> None:
    parser = subparsers.add_parser("logs", help="collect the nodes' log files into a directory, verified",
                                   description="Pull every file matching the fleet's [service].logs globs into "
                                               "DEST/<node>/..., compressed, each verified by sha256 against the node. "
                                               "Re-running resumes and skips what is already collected.")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--dest", required=True, metavar="DIR", help="where to put DIR/<node>/<path>")
    parser.add_argument("--prune", action="store_true",
                        help="delete each node's file once its verified copy is safe in DEST "
                             "(never a file still being written or open)")
    parser.add_argument("--parallel", type=int, default=16, metavar="N", help="nodes at once (default 16)")
    parser.add_argument("--compress", choices=("auto", "zstd", "gzip", "none"), default="auto",
                        help="compression on the node (default auto: zstd where the node and this machine "
                             "have it, else gzip); already-compressed files are kept as they are")
    parser.add_argument("--segment", type=int, default=64, metavar="MIB",
                        help="resume granularity in MiB (default 64): a dropped transfer restarts from the "
                             "last whole segment; smaller suits flaky links")
    parser.add_argument("--nice", type=int, default=10, metavar="N",
                        help="niceness of the compressor on the nodes, 0-19 (default 10: the service keeps its CPU)")
    parser.set_defaults(func=run_logs)


class _Live:
    """One status line on a terminal's stderr, a few times a second: nodes, bytes, rate."""

    def __init__(self, enabled: bool, total_nodes: int):
        self.enabled = enabled and sys.stderr.isatty()
        self.total_nodes = total_nodes
        self.nodes: dict[str, tuple[int, int]] = {}
        self.finished: set[str] = set()
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, event: Event) -> None:
        if not self.enabled or not isinstance(event, ActionProgress) or event.node is None:
            return
        if event.bytes_total is not None:
            self.nodes[event.node] = (event.bytes_done or 0, event.bytes_total)
        if event.state in ("done", "failed", "unreachable", "untouched"):
            self.finished.add(event.node)
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        done = sum(d for d, _ in self.nodes.values())
        total = sum(t for _, t in self.nodes.values())
        rate = done / max(now - self.started, 1e-6)
        line = (f"logs: {len(self.finished)}/{self.total_nodes} nodes, {human_bytes(done)}/{human_bytes(total)}, "
                f"{human_bytes(int(rate))}/s")
        sys.stderr.write("\r" + clean_line(line, 100).ljust(70))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


async def _run(args, fleet, names, live):
    from pltui.actions.logs import CollectLogs
    from pltui.commands._actions import open_store
    from pltui.ssh import Transport

    store = open_store(fleet, args.state, need_locks=args.prune)  # --prune deletes on nodes: locks needed
    transport = Transport(fleet)
    try:
        action = CollectLogs(fleet, transport, store, names, dest=args.dest, prune=args.prune,
                             parallel=args.parallel, compress=args.compress, nice=args.nice,
                             segment=args.segment << 20, emit=live)
        return await action.run()
    finally:
        await transport.close()
        if store is not None:
            store.close()


def print_logs_report(report) -> None:
    for name, result in report.results.items():
        out(f"{name:<18} {result.state:<11} {result.message}")
        for f in result.data.get("files", []):
            if f["state"] in ("failed", "rejected", "unreadable"):
                out(f"    {f['shown']}: {f['state']}: {f.get('message', '')}")
            elif f.get("prune") == "kept":
                out(f"    {f['shown']}: {f.get('prune_message', 'kept')}")
    s = report.summary
    files = s.get("files", {})
    counts = ", ".join(f"{n} {state}" for state, n in sorted(s.get("counts", {}).items()))
    rate = f", {s['mb_per_s']} MB/s" if s.get("mb_per_s") else ""
    out(f"files: {files.get('collected', 0)} collected, {files.get('present', 0)} already collected, "
        f"{files.get('pruned', 0)} pruned, {files.get('kept', 0)} kept, "
        f"{files.get('failed', 0) + files.get('rejected', 0) + files.get('unreadable', 0)} failed; "
        f"{human_bytes(s.get('bytes_collected', 0))} collected ({human_bytes(s.get('bytes_stored', 0))} stored) "
        f"in {s.get('elapsed', 0):.1f}s{rate}")
    verdict = "ok" if report.ok else "NOT OK"
    out(f"logs {report.action_id} into {s.get('dest')}: {verdict} ({counts})"
        + (f"; stopped: {report.stopped_because}" if report.stopped_because else ""))


def run_logs(args) -> int:
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if not 0 <= args.nice <= 19:
        raise UsageError("--nice must be between 0 and 19")
    if not 1 <= args.segment <= 1 << 20:
        raise UsageError("--segment must be at least 1 (MiB)")
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    if not fleet.service.logs:
        raise UsageError(f"{args.fleet}: [service].logs is empty: no log files to collect")
    live = _Live(not args.json, len(names))
    try:
        report = asyncio.run(_run(args, fleet, names, live))
    except ActionError as exc:
        raise UsageError(str(exc)) from None
    finally:
        live.close()
    if args.json:
        print_json(report.to_json())
    else:
        print_logs_report(report)
    if report.stopped_because and not args.json:
        err(f"pltui: logs stopped: {report.stopped_because}")
    if local_stop(report):
        if args.json:
            err(f"pltui: logs stopped: {report.stopped_because}")
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def local_stop(report) -> bool:
    """Whether the collection stopped for a local reason (DEST's disk full: `localstore.DiskFull`)."""
    from pltui.actions.logs.localstore import DISK_FULL_PREFIX

    return bool(report.stopped_because) and report.stopped_because.startswith(DISK_FULL_PREFIX)
