"""`pltui repair FLEET [selection]`: give drifted nodes the majority's version of drifted files.

Runs a checksum sweep of the tracks of the selected nodes, then, for each selected node that
drifted from its track's majority, copies the majority's version of each drifted file from a
majority node (verified by sha256 before and after the upload), keeps the old copy under
`ROOT/.pltui/drift/<action id>/`, and checksums the repaired nodes again. Files the majority
lacks and files without a quorum are reported and left alone. `--dry-run` prints the plan only.
Exit 0 when every selected node ends clean, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import asyncio

from pltui.actions.repair import RepairAction
from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, add_fleet_arg, add_json_arg, add_selection_args,
                       load_fleet, out, select)
from pltui.commands._actions import print_report_json, run_action
from pltui.nodesets import fold
from pltui.sanitize import display_name as shown


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "repair", help="copy the majority's version of drifted files to drifted nodes",
        description="Checksum the tracks of the selected nodes, then give each selected drifted node the "
                    "majority's version of its drifted files (verified; old copies kept under "
                    "ROOT/.pltui/drift/ACTION/), and checksum it again.")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would be repaired; change nothing")
    parser.set_defaults(func=run)


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "missing"


def print_human(report, action: RepairAction) -> None:
    plans = action.plans or {}
    if action.swept:
        answered = sum(1 for n in action.swept if action.engine.statuses.get(n) is not None
                       and action.engine.statuses[n].digests is not None)
        out(f"checksum sweep: {len(action.swept)} nodes ({fold(action.swept)}), {answered} answered")
    for name, result in report.results.items():
        plan = plans.get(name)
        data = result.data
        out(f"{name}: {result.state}" + (f": {shown(result.message, 400)}" if result.message else ""))
        if plan is None:
            continue
        if action.dry_run:
            for fix in plan.fixes:
                out(f"    would repair {shown(fix.path)} ({_short(fix.had)} -> majority {_short(fix.majority)}, "
                    f"{fix.holders}/{fix.answering} nodes) from one of {fold(fix.sources)}")
        else:
            kept = data.get("kept", {})
            for path in data.get("repaired", []):
                out(f"    repaired {shown(path)}" + (f" (old copy: {shown(kept[path])})" if path in kept else " (was missing)"))
            for path, message in data.get("errors", {}).items():
                out(f"    FAILED {shown(path)}: {shown(message, 400)}")
        for path in plan.extra:
            out(f"    left alone {shown(path)}: the majority does not have this file")
        for path, why in plan.rejected.items():
            out(f"    left alone {shown(path)}: {why}")
        still = [p for p in data.get("still_drifted", []) if p not in plan.extra]
        for path in still:
            out(f"    still drifted {shown(path)}")
    for track, files in action.no_quorum.items():
        for entry in files:
            split = ", ".join(f"{n} x {d}" for d, n in entry["split"].items())
            out(f"no quorum in track {track}, not repaired: {shown(entry['path'])} ({split})")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.summary.get("counts", {}).items()))
    verdict = "plan only" if action.dry_run else ("ok" if report.ok else "NOT OK")
    out(f"repair {report.action_id}: {verdict} ({counts})"
        + (f"; stopped: {report.stopped_because}" if report.stopped_because else ""))


async def _run(args, fleet, names) -> int:
    def factory(*a, **k) -> RepairAction:
        return RepairAction(*a, state_dir=args.state, dry_run=args.dry_run, **k)

    action, report = await run_action(fleet, names, args, factory)
    if args.json:
        print_report_json(report, fleet)
    else:
        print_human(report, action)
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def run(args) -> int:
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    return asyncio.run(_run(args, fleet, names))
