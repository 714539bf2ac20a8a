"""`pltui serve FLEET`: the fleet's headless sweeper (systemd, cron, or a terminal).

It owns the fleet's sweep lock (a second sweeper is refused, exit 2, naming the holder), sweeps
on the fleet's interval, heals per policy and writes the store; consoles and CLI commands on
this host follow it and ask it for sweeps. SIGTERM/SIGINT: the running sweep is cancelled, the
lock released, exit 0. Process-wide settings (open-file limit, pid file, log file) are made
here, in the entry point, never in the engine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from pltui.cli import EXIT_OK, UsageError, add_fleet_arg, load_fleet


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the fleet's sweeps headless (consoles follow it)")
    add_fleet_arg(parser)
    parser.add_argument("--heal", choices=("off", "monitor"), help="override the fleet's heal policy")
    parser.add_argument("--pidfile", metavar="FILE", help="write this process's pid there (removed at exit)")
    parser.add_argument("--log", metavar="FILE", help="append one line per event there (default: stderr)")
    parser.add_argument("--once", action="store_true", help="one sweep, then exit (for cron)")
    parser.add_argument("--checksums", action="store_true", help="with --once: a checksum sweep even if not due")
    parser.add_argument("--metrics", metavar="[HOST:]PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST defaults to 127.0.0.1)")
    parser.set_defaults(func=run_serve)


def _write_pidfile(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--pidfile {path}: {exc.strerror or exc}") from None


def _remove_pidfile(path: Path) -> None:
    """Only our own: a pid file another server has since written stays."""
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def _open_log(name: str | None):
    if name is None:
        return sys.stderr
    try:
        return open(name, "a", encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise UsageError(f"--log {name}: {exc.strerror or exc}") from None


def _raise_open_files(fleet) -> None:
    """One connection per node stays open between sweeps: raise RLIMIT_NOFILE toward that."""
    from pltui.limits import raise_nofile_limit
    from pltui.ssh import FD_RESERVE

    raise_nofile_limit(fleet.ssh.fanout * 2 + len(fleet.nodes) + FD_RESERVE + 128)


def _hooks(args, fleet) -> list:
    """What runs beside the sweeps: the metrics endpoint (if asked) and the fleet's [alerts]."""
    hooks = []
    if args.metrics:
        from pltui.metrics import MetricsError, parse_address, start_http

        try:
            host, port = parse_address(args.metrics)
        except MetricsError as exc:
            raise UsageError(f"--metrics: {exc}") from None

        async def metrics(engine) -> None:
            served = start_http(engine, host, port)  # MetricsError (port taken) ends the server
            try:
                await asyncio.Event().wait()
            finally:
                await served.close()

        metrics.required = True  # the operator asked for it: a port in use is an error, exit 2
        hooks.append(metrics)
    if fleet.alerts is not None and fleet.alerts.enabled:
        from pltui import alerts

        async def alerting(engine) -> None:
            alerter = alerts.attach(engine)
            try:
                await asyncio.Event().wait()
            finally:
                if alerter is not None:
                    await alerter.close()

        hooks.append(alerting)
    return hooks


def run_serve(args) -> int:
    from pltui.server import EventLog, ServeError, Server

    if args.checksums and not args.once:
        raise UsageError("--checksums goes with --once (a serving sweeper follows the fleet's checksum_interval)")
    fleet = load_fleet(args.fleet)
    _raise_open_files(fleet)
    # A server outlives its terminal: SIGHUP must not kill it (systemd sends none; nohup-like).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stream = _open_log(args.log)
    pidfile = Path(args.pidfile).absolute() if args.pidfile else None
    server = Server(fleet, log=EventLog(stream), state_dir=args.state, heal=args.heal, once=args.once,
                    checksums=args.checksums, started=(lambda: _write_pidfile(pidfile)) if pidfile else None,
                    hooks=_hooks(args, fleet))
    try:
        asyncio.run(server.run())
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if pidfile:
            _remove_pidfile(pidfile)  # only if it holds our pid
        if stream is not sys.stderr:
            stream.close()
    if server.failed:
        raise UsageError(server.failed)
    return EXIT_OK

