"""`pltui bootstrap | start | stop | restart | reload | reboot-node`: the service via the node monitor."""

from __future__ import annotations

import asyncio

from pltui.cli import add_fleet_arg, add_json_arg, add_selection_args, load_fleet, select
from pltui.commands._actions import print_report, run_action


def register(subparsers) -> None:
    parser = subparsers.add_parser("bootstrap", help="install or upgrade the node monitor and start it")
    _common(parser)
    cron = parser.add_mutually_exclusive_group()
    cron.add_argument("--cron", dest="cron", action="store_true", default=None,
                      help="also install an @reboot crontab line (where crontab exists)")
    cron.add_argument("--no-cron", dest="cron", action="store_false", help="remove pltui's @reboot crontab line")
    parser.set_defaults(func=run_bootstrap)
    for verb, text in (("start", "start processes (clears a deliberate stop)"),
                       ("stop", "stop processes on purpose (they stay stopped)"),
                       ("restart", "stop then start processes"),
                       ("reload", "reload processes without restarting them")):
        parser = subparsers.add_parser(verb, help=text + ", through the node monitor")
        _common(parser)
        parser.add_argument("--process", metavar="NAME", help="only this process (default: all)")
        parser.set_defaults(func=run_control, verb=verb)
    parser = subparsers.add_parser("reboot-node", help="run the fleet's node reboot command")
    _common(parser)
    parser.add_argument("--yes-reboot", action="store_true", help="confirm: really reboot the selected nodes")
    parser.set_defaults(func=run_reboot)


def _common(parser) -> None:
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)


def _run(args, factory) -> int:
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    _action, report = asyncio.run(run_action(fleet, names, args, factory))
    print_report(report, args.json)
    return report.exit_code


def run_bootstrap(args) -> int:
    from pltui.actions.control import Bootstrap

    return _run(args, lambda *a, **k: Bootstrap(*a, cron=args.cron, **k))


def run_control(args) -> int:
    from pltui.actions.control import ServiceControl

    return _run(args, lambda *a, **k: ServiceControl(*a, verb=args.verb, process=args.process, **k))


def run_reboot(args) -> int:
    from pltui.actions.control import RebootNode

    return _run(args, lambda *a, **k: RebootNode(*a, confirmed=args.yes_reboot, **k))
