"""`pltui demo [--nodes N] [--dir DIR] [--chaos] [--serve] [--state DIR]`: a living fleet on this
machine (real SSH on loopback, real processes, the real node monitor, planted trouble).

Without --serve the console opens on the demo fleet; quitting it stops every demo process.
With --serve the nodes run until SIGINT/SIGTERM; stdout gets exactly one line, the fleet file's
path (so `FLEET=$(...)`-style scripts and tests can read it), everything else goes to stderr.
The nodes run on their own event loop in a thread, so a busy console never stalls them.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from pltui.cli import EXIT_OK, EXIT_UNHEALTHY, UsageError, err

STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="start a demo fleet on this machine (real SSH, real processes, planted trouble) and open the console",
        description="Start N SSH nodes on 127.0.0.1, each running a small real service under the real node monitor, "
                    "with planted trouble (an alpha group a release ahead, a drifted file, a crash loop, a dead monitor, "
                    "a node refusing connections, one that never speaks SSH, one printing garbage), then open the "
                    "console on them. Quitting stops every demo process.")
    parser.add_argument("--nodes", type=int, default=24, metavar="N", help="how many nodes (default 24; 10 to 5000)")
    parser.add_argument("--dir", metavar="DIR", help="where the nodes live (new, empty, or an old demo directory; "
                                                     "default: a fresh one under STATE/demo/)")
    parser.add_argument("--chaos", action="store_true",
                        help="keep killing random processes and monitors, and take nodes down and up again")
    parser.add_argument("--serve", action="store_true",
                        help="only run the nodes (print the fleet file path) until interrupted, for the CLI, tests, benchmarks")
    parser.add_argument("--state", metavar="DIR", help="state directory (default: $XDG_STATE_HOME/pltui)")
    parser.set_defaults(func=run)


class _Stop(BaseException):
    """A stop signal arrived (SIGINT, SIGTERM, SIGHUP)."""


def run(args) -> int:
    from pltui import demo as demo_mod
    from pltui.paths import state_root

    if not demo_mod.MIN_NODES <= args.nodes <= demo_mod.MAX_NODES:
        raise UsageError(f"--nodes must be between {demo_mod.MIN_NODES} and {demo_mod.MAX_NODES}, got {args.nodes}")
    serve = args.serve
    if not serve and not _console_available():
        raise UsageError("the console is not part of this pltui yet: run `pltui demo --serve` and use the CLI "
                         "(pltui sweep FLEET ...) meanwhile")
    try:
        base = Path(args.dir).expanduser() if args.dir else demo_mod.default_dir(state_root(args.state))
    except OSError as exc:
        raise UsageError(f"cannot make the demo directory: {exc}") from None

    signalled: list[int] = []

    def on_signal(signum, frame):
        signalled.append(signum)
        raise _Stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    runner = demo_mod.DemoThread(args.nodes, base, chaos=args.chaos, on_chaos=err if serve else None,
                                 progress=lambda line: err(f"pltui demo: {line} ..."))
    rc = EXIT_OK
    try:
        try:
            err(f"pltui demo: starting {args.nodes} nodes in {base} ...")
            demo = runner.start()
        except demo_mod.DemoError as exc:
            raise UsageError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"the demo could not start: {exc}") from None
        err(f"pltui demo: {args.nodes} nodes up in {demo.startup_seconds:.1f}s")
        for line in demo.legend():
            err("  " + line)
        if serve:
            _serve(demo)
        else:
            rc = _console(demo, args.state)
    except _Stop:
        rc = EXIT_OK if serve and runner.demo is not None else 130
    finally:
        left = _stop(runner, signalled)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if left:
        err(f"pltui demo: processes {left} would not die")
        return EXIT_UNHEALTHY
    return rc


def _serve(demo) -> None:
    sys.stdout.write(f"{demo.fleet_path}\n")
    sys.stdout.flush()
    err(f"pltui demo: fleet file {demo.fleet_path}")
    err(f"  try: pltui sweep {demo.fleet_path}   (more in {demo.base_dir / 'LEGEND.txt'})")
    err(f"  bundle for `pltui rollout`: {demo.bundle_dir}")
    if demo.chaos_log is not None:
        err(f"  chaos is on (log: {demo.chaos_log})")
    err("pltui demo: serving until Ctrl-C or SIGTERM")
    while True:
        time.sleep(3600)


def _console_available() -> bool:
    from pltui import cli

    parser = cli.build_parser()
    return "console" in parser._subparsers._group_actions[0].choices


def _console(demo, state: str | None) -> int:
    """The console on the demo fleet, through the CLI's own entry (`pltui console FLEET`)."""
    from pltui import cli

    argv = ["console", str(demo.fleet_path)] + (["--state", state] if state else [])
    # The console owns SIGINT (a key in the TUI) while it runs; SIGTERM and SIGHUP still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        return 130


def _stop(runner, signalled: list[int]) -> list[int]:
    """Stop everything; further stop signals only say that we are at it (bounded anyway)."""
    def on_signal(signum, frame):
        if signum not in signalled:
            signalled.append(signum)
        _say("pltui demo: stopping the demo nodes, a moment ...")

    while True:
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, on_signal)
            break
        except _Stop:
            continue
    demo = runner.demo
    left = runner.stop()
    if demo is not None:
        _say(f"pltui demo: stopped ({len(demo._seen)} node processes ended; files kept in {demo.base_dir})")
    else:
        _say("pltui demo: stopped")
    return left


def _say(text: str) -> None:
    """stderr, unless it is gone (a closed terminal must not keep us from cleaning up)."""
    try:
        err(text)
    except (OSError, ValueError):
        pass
