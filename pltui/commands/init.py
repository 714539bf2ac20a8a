"""`pltui init FLEET`: write a fleet file from ~/.ssh/config, ClusterShell groups, an Ansible
inventory or a host list; `--probe` sweeps it once and says what it found."""

from __future__ import annotations

import asyncio

from pltui.cli import EXIT_OK, EXIT_UNHEALTHY, UsageError, add_json_arg, err, out, print_json
from pltui.fleet import FleetError
from pltui.nodesets import fold

DEFAULT_SSH_CONFIG = "~/.ssh/config"


def register(subparsers) -> None:
    parser = subparsers.add_parser("init", help="write a fleet file from ssh_config, ClusterShell, Ansible or a host list")
    parser.add_argument("fleet", metavar="FLEET", help="the fleet file to write (kept if it exists: see --merge)")
    src = parser.add_argument_group("inputs (any combination; at least one)")
    src.add_argument("--ssh-config", nargs="?", const=DEFAULT_SSH_CONFIG, metavar="FILE",
                     help=f"Host entries of an ssh_config (default {DEFAULT_SSH_CONFIG})")
    src.add_argument("--clustershell", nargs="?", const="", metavar="GROUPS_CONF",
                     help="ClusterShell groups (default: the groups.conf ClusterShell reads)")
    src.add_argument("--ansible", action="append", default=[], metavar="INVENTORY",
                     help="an Ansible inventory file, INI or YAML")
    src.add_argument("--hosts", action="append", default=[], metavar="FILE",
                     help="a plain list: one host or node set per line")
    parser.add_argument("--name", help="the fleet's name (default: from the file name)")
    parser.add_argument("--merge", action="store_true",
                        help="add new nodes and groups into an existing FLEET, keeping its comments (else FLEET.new)")
    parser.add_argument("--probe", action="store_true", help="sweep the new fleet once and report what it found")
    parser.add_argument("--state", metavar="DIR", help="state directory for --probe")
    add_json_arg(parser)
    parser.set_defaults(func=run)


def gather(args):
    from pltui import inventories as inv_mod

    inv = inv_mod.Inventory()
    if args.ssh_config is not None:
        inv_mod.read_ssh_config(args.ssh_config, inv)
    if args.clustershell is not None:
        inv_mod.read_clustershell(args.clustershell or None, inv)
    for path in args.ansible:
        inv_mod.read_ansible(path, inv)
    for path in args.hosts:
        inv_mod.read_host_list(path, inv)
    try:
        inv.check()
    except inv_mod.InventoryError as exc:
        raise UsageError("\n".join(exc.problems)) from None
    if not inv.nodes:
        raise UsageError("no nodes found in " + ("; ".join(inv.sources) or "the inputs"))
    return inv


def run(args) -> int:
    from pltui import fleet as fleet_mod
    from pltui import init as init_mod

    if args.ssh_config is None and args.clustershell is None and not args.ansible and not args.hosts:
        raise UsageError("init: give at least one input: --ssh-config, --clustershell, --ansible or --hosts")
    inv = gather(args)
    try:
        result = init_mod.write(inv, args.fleet, args.name, do_merge=args.merge)
    except FleetError as exc:
        raise UsageError("\n".join(exc.problems)) from None
    messages = {
        "created": f"wrote {result.path}: {len(inv.nodes)} nodes, {len(inv.groups)} groups",
        "unchanged": f"{result.path} is already up to date",
        "new-file": f"{args.fleet} exists and was left alone; wrote {result.path} "
                    f"(compare: diff -u {args.fleet} {result.path}; or re-run with --merge)",
        "merged": f"merged into {result.path}: {result.added_nodes} new nodes, {result.added_groups} new groups "
                  f"(comments kept; the previous file is {result.path}.bak)",
    }
    doc = {"file": str(result.path), "action": result.action, "nodes": len(inv.nodes),
           "groups": {g: fold(m) for g, m in inv.groups.items()}, "notes": inv.notes}
    if not args.json:
        for note in inv.notes:
            err(f"pltui: note: {note}")
        out(messages[result.action])
        out(f"next: edit [service] in it, then `pltui check {result.path}`")
    code = EXIT_OK
    if args.probe:
        try:
            fleet = fleet_mod.load(result.path)
        except FleetError as exc:
            raise UsageError("\n".join(exc.problems)) from None
        found = asyncio.run(init_mod.probe(fleet, args.state))
        doc["probe"] = found
        if not all(f["reachable"] for f in found):
            code = EXIT_UNHEALTHY
        if not args.json:
            print_probe(found)
    if args.json:
        print_json(doc)
    return code


def print_probe(found: list[dict]) -> None:
    out(f"{'NODE':<24} {'SSH':<12} {'ROOT':<8} {'VERSION':<12} PROTOCOL")
    for f in found:
        root = "-" if f["root"] is None else ("present" if f["root"] else "missing")
        out(f"{f['node'][:24]:<24} {f['ssh']:<12} {root:<8} {(f['version'] or '-')[:12]:<12} {f['protocol'] or '-'}")
        if f["error"]:
            out(f"    {f['error']}")
    reachable = sum(1 for f in found if f["reachable"])
    with_root = sum(1 for f in found if f["root"])
    versions = sorted({f["version"] for f in found if f["version"]})
    out(f"{len(found)} nodes: {reachable} reachable, {with_root} with the service root"
        + (f", versions {', '.join(versions)}" if versions else ""))
