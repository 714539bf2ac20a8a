"""`pltui check FLEET`: validate a fleet file and summarise it."""

from __future__ import annotations

from pltui.cli import EXIT_OK, add_json_arg, load_fleet, out, print_json
from pltui.durations import format_duration
from pltui.nodesets import fold


def register(subparsers) -> None:
    parser = subparsers.add_parser("check", help="validate a fleet file and summarise it")
    parser.add_argument("fleet", metavar="FLEET")
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    fleet = load_fleet(args.fleet)
    groups = {g: list(m) for g, m in fleet.group_members.items() if g != "all"}
    if args.json:
        print_json({
            "fleet": fleet.name,
            "nodes": len(fleet.nodes),
            "groups": {g: {"size": len(m), "nodes": fold(m)} for g, m in groups.items()},
            "tracks": {t: list(g) for t, g in fleet.tracks.items()},
            "processes": [p.name for p in fleet.service.processes],
            "stages": [{"name": s.name, "group": s.group, "batch": list(s.batch), "parallel": s.parallel,
                        "max_fail": s.max_fail, "pause": s.pause} for s in fleet.rollout.stages],
        })
        return EXIT_OK
    out(f"fleet {fleet.name}: {len(fleet.nodes)} nodes ({fold(fleet.node_names)})")
    for group, members in groups.items():
        out(f"  group {group:<14} {len(members):>5} nodes  {fold(members)}")
    for track, tgroups in fleet.tracks.items():
        out(f"  track {track:<14} groups {', '.join(tgroups)}")
    svc = fleet.service
    out(f"service root {svc.root}: {len(svc.processes)} processes ({', '.join(p.name for p in svc.processes) or 'none'}), "
        f"{len(svc.important)} important globs, {len(svc.logs)} log globs")
    out(f"sweep every {format_duration(fleet.sweep.interval)}, checksums every {format_duration(fleet.sweep.checksum_interval)}, "
        f"quorum > {fleet.sweep.quorum:g}, heal {fleet.sweep.heal}")
    for stage in fleet.rollout.stages:
        batches = ", ".join(str(b) for b in stage.batch)
        out(f"  stage {stage.name:<14} group {stage.group} ({len(fleet.members(stage.group))} nodes), "
            f"batches {batches}, parallel {stage.parallel}, max_fail {stage.max_fail}"
            + (", pause first" if stage.pause else ""))
    out("ok")
    return EXIT_OK
