"""`pltui console FLEET` (or just `pltui FLEET`): the live terminal console."""

from __future__ import annotations

import asyncio

from pltui.cli import add_fleet_arg, add_selection_args, err, load_fleet, select


def register(subparsers) -> None:
    parser = subparsers.add_parser("console", help="the live terminal console (also: pltui FLEET)")
    add_fleet_arg(parser)
    add_selection_args(parser)
    parser.add_argument("--readonly", action="store_true", help="disable every action that changes nodes")
    parser.add_argument("--no-mouse", action="store_true", help="keyboard only (leave the mouse to the terminal)")
    parser.add_argument("--theme", metavar="NAME", help="theme for this run (default: the last one chosen)")
    parser.set_defaults(func=run_console)


async def _run(args, fleet, names) -> int:
    from pltui.sweep import Engine
    from pltui.tui.app import ConsoleApp

    engine = Engine(fleet, state_dir=args.state, nodes=names)
    try:
        app = ConsoleApp(engine, readonly=args.readonly, theme=args.theme, state_dir=args.state)
        if engine.store_error:
            app.add_startup_note("error", f"history disabled: {engine.store_error}")
        if engine.transport.nofile_warning:
            app.add_startup_note("warning", engine.transport.nofile_warning)
        await app.run_async(mouse=not args.no_mouse)
        return app.return_code or 0
    finally:
        await engine.close()


def run_console(args) -> int:
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    try:
        return asyncio.run(_run(args, fleet, names))
    except KeyboardInterrupt:
        err("pltui: interrupted")
        return 130
