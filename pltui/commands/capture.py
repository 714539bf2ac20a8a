"""`pltui capture FLEET --dest DIR`: snapshot the nodes' state paths into
DIR/<timestamp>/<node>.tar.gz (see pltui/actions/capture.py). Paths are relative to the
service root: an absolute path, `~` or `..` is refused. Exit 0 when every selected node was
captured (or has none of the paths), 1 when some node failed or was unreachable, 2 on usage and
local errors (DEST unusable or its disk full).
"""

from __future__ import annotations

import asyncio
import math

from pltui.actions.base import ActionError
from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, UsageError, add_fleet_arg, add_json_arg,
                       add_selection_args, err, load_fleet, out, print_json, select)
from pltui.fleet import root_relative_problem
from pltui.format import human_bytes


def register(subparsers) -> None:
    parser = subparsers.add_parser("capture", help="snapshot the nodes' state paths into DIR/<timestamp>/<node>.tar.gz")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("--dest", required=True, metavar="DIR", help="directory for the <timestamp>/ snapshot")
    parser.add_argument("--paths", nargs="+", metavar="P",
                        help="state paths (relative to the service root: no absolute path, ~ or ..; globs "
                             "allowed) instead of [service].state")
    parser.add_argument("--parallel", type=int, default=16, metavar="N", help="nodes at once (default 16)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="longest one node's capture may take (default 600)")
    parser.set_defaults(func=run_capture)


async def _run(args, fleet, names):
    from pltui.actions.capture import CaptureState
    from pltui.commands._actions import open_store, progress_printer
    from pltui.ssh import Transport

    store = open_store(fleet, args.state)
    transport = Transport(fleet)
    try:
        action = CaptureState(fleet, transport, store, names, dest=args.dest, paths=args.paths,
                              parallel=args.parallel, timeout=args.timeout, emit=progress_printer(False))
        return await action.run()
    finally:
        await transport.close()
        if store is not None:
            store.close()


def run_capture(args) -> int:
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    for path in args.paths or ():
        problem = root_relative_problem(path)
        if problem:
            raise UsageError(f"--paths {problem}")
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    if not args.paths and not fleet.service.state:
        raise UsageError(f"{args.fleet}: [service].state is empty: pass --paths")
    try:
        report = asyncio.run(_run(args, fleet, names))
    except ActionError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(report.to_json())
    else:
        for name, result in report.results.items():
            out(f"{name:<18} {result.state:<11} {result.message}")
        s = report.summary
        counts = ", ".join(f"{n} {state}" for state, n in sorted(s.get("counts", {}).items()))
        out(f"capture {report.action_id} into {s.get('dir')}: {'ok' if report.ok else 'NOT OK'} ({counts}); "
            f"{human_bytes(s.get('bytes', 0))} in {s.get('elapsed', 0):.1f}s")
    full = local_failure(report)
    if full:
        err(f"pltui: capture: {full}")
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def local_failure(report) -> str | None:
    """The first node failure caused by this machine (DEST's disk full), if any: a local error."""
    from pltui.actions.logs.localstore import DISK_FULL_PREFIX

    for result in report.results.values():
        if result.state == "failed" and result.message.startswith(DISK_FULL_PREFIX):
            return result.message
    return None
