"""The headless face: `pltui SUBCOMMAND ...`, human output by default, `--json` for scripts.

Subcommands live in `pltui/commands/*.py`, each exposing `register(subparsers)`; they are found
automatically. Exit codes everywhere: 0 all selected nodes healthy / action fully done, 1 some
node not, 2 usage, fleet-file or local errors (one clear line on stderr each).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import pkgutil
import sys
import warnings
from typing import Any, Sequence

from pltui import __version__
from pltui.fleet import Fleet, FleetError, load
from pltui.limits import raise_nofile_limit
from pltui.nodesets import NodeSetError, Selector
from pltui.sanitize import clean

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
# Local trouble an operator fixes on the management host (full, read-only, over quota).
LOCAL_DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
# The contract, word for word as README.md states it (a test holds the two together); every
# subcommand's --help ends with it.
EXIT_CODES = ("Exit codes: 0 every selected node healthy / the action fully done, 1 some node is not, "
              "2 usage, fleet-file or local errors (one line each, naming what and where; a full or "
              "unwritable local destination is a local error), 130 interrupted.")


class UsageError(Exception):
    """Bad operator input: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 already; keep its one-line style
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"pltui: error: {message}\n")


def add_fleet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fleet", metavar="FLEET", help="the fleet file (TOML)")
    parser.add_argument("--state", metavar="DIR", help="state directory (default: $XDG_STATE_HOME/pltui)")


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """clush-style selection options."""
    group = parser.add_argument_group("node selection (ClusterShell node-set syntax)")
    group.add_argument("-w", dest="include", action="append", default=[], metavar="NODESET", help="nodes to include")
    group.add_argument("-g", dest="groups", action="append", default=[], metavar="GROUP", help="group to include")
    group.add_argument("-x", dest="exclude", action="append", default=[], metavar="NODESET", help="nodes to exclude")
    group.add_argument("-X", dest="exclude_groups", action="append", default=[], metavar="GROUP", help="group to exclude")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of a table")


def load_fleet(path: str) -> Fleet:
    try:
        return load(path)
    except FleetError as exc:
        raise UsageError("\n".join(exc.problems)) from None


def select(fleet: Fleet, args: argparse.Namespace) -> list[str]:
    try:
        return Selector.for_fleet(fleet).select(args.include, args.groups, args.exclude, args.exclude_groups)
    except NodeSetError as exc:
        raise UsageError(str(exc)) from None


def print_json(doc: Any) -> None:
    """JSON output: node strings are already sanitised; json.dumps escapes what is left."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str, ensure_ascii=True) + "\n")


def out(text: str = "") -> None:
    """Human output: never lets a control byte through to the terminal."""
    sys.stdout.write(clean(text, limit=1 << 20, newlines=True) + "\n")


def err(text: str) -> None:
    sys.stderr.write(clean(text, limit=1 << 16, newlines=True) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pltui", description="A live console for running a service on a fleet of SSH nodes.")
    parser.add_argument("--version", action="version", version=f"pltui {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    import pltui.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue  # shared helpers, not subcommands
        module = importlib.import_module(f"pltui.commands.{info.name}")
        module.register(subparsers)
    for sub in subparsers.choices.values():
        sub.epilog = f"{sub.epilog}\n\n{EXIT_CODES}" if sub.epilog else EXIT_CODES
    return parser


def quiet_third_party_warnings() -> None:
    """Keep library warnings off the operator's terminal (and out of `--json` on stdout).

    asyncssh's import makes cryptography >= 47 print a DSA CryptographyDeprecationWarning per
    use site; an operator can do nothing about those. An explicit `-W`/PYTHONWARNINGS still
    wins, so a developer can see them. Process-wide, so it is done here, in the entry point.
    """
    if not sys.warnoptions:
        warnings.simplefilter("ignore")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_third_party_warnings()
    raise_nofile_limit()  # one fd per pooled connection; process-wide, so here (pltui.limits)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `pltui FLEET [options]` opens the console on that fleet.
    if argv and not argv[0].startswith("-") and argv[0] not in parser._subparsers._group_actions[0].choices:
        argv = ["console"] + argv
    args, extra = parser.parse_known_args(argv)
    # argparse cannot give an optional second positional after options (`rollout FLEET --yes
    # BUNDLE`): take a single leftover word as that positional, refuse anything else.
    if len(extra) == 1 and not extra[0].startswith("-") and getattr(args, "bundle", "") is None:
        args.bundle = extra[0]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        err(f"pltui: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("pltui: interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:
        if exc.errno not in LOCAL_DISK_ERRORS:
            raise
        # last resort for a full or read-only state directory: one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        err(f"pltui: {where}{exc.strerror or exc}")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
