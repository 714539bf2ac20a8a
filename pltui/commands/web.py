"""`pltui web FLEET`: serve the console to a browser (textual-serve); read-only unless
--allow-actions; 127.0.0.1 unless told otherwise (see README: SSH tunnel or reverse proxy)."""

from __future__ import annotations

import os

from pltui.cli import UsageError, add_fleet_arg, add_selection_args, err, load_fleet, out, select


def register(subparsers) -> None:
    parser = subparsers.add_parser("web", help="serve the console to a browser (read-only by default)")
    add_fleet_arg(parser)
    add_selection_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this host only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--allow-actions", action="store_true",
                        help="let browser users run actions (rollout, restart, exec...); default read-only")
    parser.add_argument("--public-url", metavar="URL",
                        help="the address browsers use, when behind a reverse proxy (e.g. https://ops.example.com/pltui)")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        from pltui import web
    except ImportError:  # pragma: no cover - textual-serve is the `web` extra
        raise UsageError("pltui web needs textual-serve: pip install 'pltui[web]'") from None
    fleet = load_fleet(args.fleet)  # a broken fleet fails here, in one line, not in every tab
    select(fleet, args)
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 1-65535")
    if args.public_url and not args.public_url.startswith(("http://", "https://")):
        raise UsageError(f"--public-url {args.public_url!r}: expected an http:// or https:// URL")
    selection = []
    for flag, values in (("-w", args.include), ("-g", args.groups), ("-x", args.exclude), ("-X", args.exclude_groups)):
        for value in values:
            selection += [flag, value]
    command = web.console_command(os.path.abspath(args.fleet), allow_actions=args.allow_actions,
                                  state=os.path.abspath(args.state) if args.state else None, selection=selection)
    if not web.is_loopback(args.host):
        err(f"pltui: warning: serving on {args.host} with no authentication: anyone who can reach it sees the "
            "fleet" + (" and can run actions" if args.allow_actions else "")
            + "; prefer an SSH tunnel or a reverse proxy with auth (README)")
    out(f"pltui web: {fleet.name} on http://{args.host}:{args.port}/ "
        + ("(actions allowed)" if args.allow_actions else "(read-only)") + "; Ctrl+C stops")
    server = web.make_server(command, args.host, args.port, title=f"pltui {fleet.name}", public_url=args.public_url)
    try:
        server.serve()
    except OSError as exc:
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0
