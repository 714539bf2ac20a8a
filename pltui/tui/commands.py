"""The `:` command line (parsed here, carried out by the app's methods) and the pltui entries of
the command palette (Ctrl+P).

`:rollout [BUNDLE [--reload --failhard --batch B --parallel N --max-fail F]]`, `:rollouts`,
`:restart`, `:start`, `:stop`, `:reload`, `:reboot` (typed confirmation), `:copy`, `:export FILE`,
`:bell [on|off]`, `:logs`, `:capture`, `:exec COMMAND...`, `:repair`, `:heal`,
`:sweep`, `:checksums`, `:mark NODESET`, `:unmark NODESET`, `:group save NAME`, `:filter EXPR`,
`:sort COLUMN [desc]`, `:theme NAME`, `:events`, `:pause`, `:help`, `:q`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Iterable

from textual.app import SystemCommand
from textual.screen import Screen

from pltui.tui.cells import SORTABLE
from pltui.tui.dispatch import SPECS

ALIASES = {"q": "quit", "quit": "quit", "exit": "quit", "checksum": "checksums", "x": "exec",
           "fix": "repair", "log": "logs", "h": "help", "?": "help"}
NAMES = ("rollout", "restart", "start", "stop", "reload", "reboot", "logs", "capture", "exec", "repair", "heal",
         "sweep", "checksums", "mark", "unmark", "group", "filter", "sort", "theme", "events", "pause", "help",
         "quit", "progress", "copy", "export", "bell", "rollouts")


class CommandError(ValueError):
    """A command line that cannot be run; the message says how to write it."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    rest: str        # everything after the command word, as typed (for exec and filter)


def parse(line: str) -> Command | None:
    line = line.strip().lstrip(":").strip()
    if not line:
        return None
    word, _, rest = line.partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name not in NAMES:
        import difflib

        hint = difflib.get_close_matches(name, NAMES, n=1)
        raise CommandError(f"unknown command :{word}" + (f" (did you mean :{hint[0]}?)" if hint else "") +
                           "; ? lists them")
    try:
        args = tuple(shlex.split(rest))
    except ValueError as exc:
        raise CommandError(f":{name}: {exc}") from None
    if name == "group" and (len(args) != 2 or args[0] != "save"):
        raise CommandError("usage: :group save NAME  (saves the marked nodes as a group)")
    if name in ("mark", "unmark") and not rest.strip():
        raise CommandError(f"usage: :{name} NODESET  (e.g. @alpha or pl[1-4])")
    if name == "exec" and not rest.strip():
        raise CommandError("usage: :exec COMMAND")
    if name == "bell" and (len(args) > 1 or (args and args[0] not in ("on", "off"))):
        raise CommandError("usage: :bell [on|off]  (ring when a node goes down or crash-loops)")
    if name == "export" and len(args) != 1:
        raise CommandError("usage: :export FILE  (.json, else CSV: the rows shown)")
    if name == "theme" and len(args) > 1:
        raise CommandError("usage: :theme [NAME]")
    if name == "sort" and (not args or len(args) > 2 or (len(args) == 2 and args[1] not in ("asc", "desc"))):
        raise CommandError("usage: :sort COLUMN [asc|desc]")
    return Command(name, args, rest.strip())


class CommandLine:
    """Mixin for ConsoleApp: one method per way of asking (`:` line, palette)."""

    def run_command(self, line: str) -> None:
        try:
            command = parse(line)
        except CommandError as exc:
            self.notify(str(exc), severity="error")
            return
        if command is None:
            return
        main = self.main
        name, args = command.name, command.args
        if name in SPECS:
            self.start_action(name, command.rest or None)
        elif name == "heal":
            self.start_heal()
        elif name == "sweep":
            self.sweep_now(False)
        elif name == "checksums":
            self.sweep_now(True)
        elif name in ("mark", "unmark") and main is not None:
            main.mark_expr(command.rest, name == "mark")
        elif name == "group":
            self.save_marked_group(args[1])
        elif name == "filter" and main is not None:
            main.apply_filter(command.rest)
        elif name == "sort" and main is not None:
            column = {"proto": "protocol", "sums": "checksums", "name": "node", "worst": "status",
                      "health": "status"}.get(args[0], args[0])
            if column not in SORTABLE:
                self.notify(f"no column {args[0]!r}; one of {', '.join(SORTABLE)}", severity="error")
            else:
                main.set_sort(column, len(args) > 1 and args[1] == "desc")
        elif name == "rollouts":
            self.show_rollouts()
        elif name == "bell":
            self.set_bell(args[0] == "on" if args else not self.bell_on_trouble)
        elif name == "copy" and main is not None:
            main.action_copy_set()
        elif name == "export" and main is not None:
            self.export_rows(args[0])
        elif name == "theme":
            if args:
                self.set_theme(args[0])
            else:
                self.action_choose_theme()
        elif name == "events" and main is not None:
            main.action_toggle_events()
        elif name == "pause":
            self.set_paused(not self.view.paused)
        elif name == "help":
            self.action_help()
        elif name == "progress":
            self.show_progress()
        elif name == "quit":
            self.action_quit_console()

    def export_rows(self, path: str) -> None:
        from pltui.tui.export import export_table

        names = self.main.table.shown
        try:
            target = export_table(self.view, names, path)
        except (OSError, RuntimeError, ValueError) as exc:
            self.notify(f"{path}: {exc}", title="export failed", severity="error")
            return
        self.notify(f"exported {len(names)} rows to {target}")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("pltui: sweep now", "Sweep every node now (s)", lambda: self.sweep_now(False))
        yield SystemCommand("pltui: checksum sweep now", "Sweep with file checksums (S)", lambda: self.sweep_now(True))
        yield SystemCommand("pltui: choose theme", "Switch the console's theme (t)", self.action_choose_theme)
        yield SystemCommand("pltui: help", "Every key and command (?)", self.action_help)
        yield SystemCommand("pltui: toggle event pane", "Notices, heals, actions, errors (e)",
                            lambda: self.run_command("events"))
        yield SystemCommand("pltui: pause / unpause the view", "Freeze the table (Z)", lambda: self.run_command("pause"))
        if not self.view.readonly:
            yield SystemCommand("pltui: heal now", "Restart dead node monitors on the selection (h)", self.start_heal)
        for spec in SPECS.values():
            if self.view.readonly and spec.mutating:
                continue
            yield SystemCommand(f"pltui: {spec.name}", f"{spec.title} the selection ({spec.key})",
                                lambda name=spec.name: self.start_action(name))
        for name in self.pltui_themes:
            yield SystemCommand(f"pltui: theme {name}", "Switch theme", lambda n=name: self.set_theme(n))
