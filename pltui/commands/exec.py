"""`pltui exec FLEET [selection] -- COMMAND`: run a command on nodes, gather identical answers.

The command words are joined with spaces into one shell command line, as `ssh` and `clush` do;
it runs under `/bin/sh -c` on every node (in the service root with `--in-root`). Nodes with the
same outcome and output are printed once, headed by their folded node set (`clush -b`), every
output line indented so that no node can print a line that reads as a header. Exit 0
when every node ran the command and it exited 0, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import asyncio

from pltui.actions.exec import ExecAction, render_groups, summary_line
from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err,
                       load_fleet, out, select)
from pltui.commands._actions import print_report_json, run_action
from pltui.durations import parse_duration


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "exec", help="run a shell command on the selected nodes (clush -b style output)",
        description="Run COMMAND (a shell command line; several words are joined with spaces) on every "
                    "selected node in parallel and print identical outputs once, headed by their node set.")
    add_fleet_arg(parser)
    add_selection_args(parser)
    add_json_arg(parser)
    parser.add_argument("-t", "--timeout", metavar="DURATION",
                        help="stop the command (on the node too) after this long (default: the fleet's command_timeout)")
    parser.add_argument("--in-root", action="store_true", help="run in each node's service root")
    parser.add_argument("--outdir", metavar="DIR", help="write each node's raw stdout, stderr and status to DIR/NODE/")
    parser.add_argument("--no-lock", action="store_true",
                        help="do not take node locks (for read-only commands while another action holds them)")
    parser.add_argument("command", nargs="*", metavar="-- COMMAND",
                        help="the command to run (put it after `--`)")
    parser.set_defaults(func=run)
    parser.__class__ = _split_at_dashes(parser.__class__)


def _split_at_dashes(base: type) -> type:
    """A parser class where the command starts at the first `--`, or else at the first word
    after FLEET that is not an option (as clush does); the command words are kept verbatim.
    (argparse alone cannot mix a trailing command with options and another positional.)"""

    class ExecParser(base):
        def parse_known_args(self, args=None, namespace=None):
            args = list(args) if args is not None else []
            takes_value = {opt for action in self._actions if action.option_strings and action.nargs != 0
                           for opt in action.option_strings}
            cut, skip, positionals = None, 0, 0
            for index, word in enumerate(args):
                if word == "--":
                    cut, skip = index, 1
                    break
                if word.startswith("-") and word != "-":
                    continue
                if index > 0 and args[index - 1] in takes_value:
                    continue  # the value of an option
                positionals += 1
                if positionals == 2:
                    cut = index
                    break
            if cut is None:
                return super().parse_known_args(args, namespace)
            ns, extras = super().parse_known_args(args[:cut], namespace)
            ns.command = list(ns.command or []) + args[cut + skip:]
            return ns, extras

    return ExecParser


def command_line(words: list[str]) -> str:
    line = " ".join(words)
    if not line.strip():
        raise UsageError("no command given (usage: pltui exec FLEET [selection] -- COMMAND)")
    return line


async def _run(args, fleet, names, command: str, timeout: float | None) -> int:
    def factory(*a, **k) -> ExecAction:
        return ExecAction(*a, command=command, timeout=timeout, in_root=args.in_root, outdir=args.outdir,
                          lock=not args.no_lock, **k)

    action, report = await run_action(fleet, names, args, factory)
    if args.json:
        print_report_json(report, fleet)
    else:
        for line in render_groups(action.groups(), action.timeout):
            out(line)
        out(summary_line(action.records.values()))
    for problem in report.summary.get("outdir_problems", {}).values():
        err(f"pltui: {problem}")
    return EXIT_OK if report.ok else EXIT_UNHEALTHY


def run(args) -> int:
    command = command_line(args.command)
    timeout = None
    if args.timeout is not None:
        try:
            timeout = parse_duration(args.timeout)
        except ValueError as exc:
            raise UsageError(f"--timeout: {exc}") from None
        if timeout <= 0:
            raise UsageError("--timeout must be positive")
    fleet = load_fleet(args.fleet)
    names = select(fleet, args)
    if args.outdir:
        from pathlib import Path

        try:
            Path(args.outdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--outdir {args.outdir}: {exc.strerror or exc}") from None
    return asyncio.run(_run(args, fleet, names, command, timeout))
