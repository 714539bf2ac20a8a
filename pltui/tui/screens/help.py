"""`?`: every key, the filter syntax and the `:` commands, on one scrollable page."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# (key, what, mutating)
KEYS: list[tuple[str, list[tuple[str, str, bool]]]] = [
    ("Moving and selecting", [
        ("↑ ↓ j k  PgUp PgDn  Home End", "move the cursor", False),
        ("space", "mark / unmark the node (and move down)", False),
        ("g", "mark a group", False),
        ("m", "mark by state: down, degraded, drifted, isolated, version X...", False),
        ("u", "clear all marks", False),
        ("/", "filter the rows (see below); esc clears it", False),
        ("< >", "sort by the previous / next column", False),
        ("I", "invert the sort order", False),
        ("enter", "node detail (shell with !)", False),
        ("e", "show / hide the event pane", False),
        ("Z", "pause: freeze the view (updates keep arriving)", False),
        ("A", "show the running action", False),
        (":", "command line", False),
        ("ctrl+p", "command palette", False),
        ("t", "choose a theme", False),
        ("?", "this help", False),
        ("esc", "back out (close, clear the filter)", False),
        ("q", "quit (asks while an action runs)", False),
    ]),
    ("Actions (on the marked nodes, else the cursor's node)", [
        ("s", "sweep now", False),
        ("S", "checksum sweep now", False),
        ("h", "heal now: restart dead node monitors", True),
        ("r", "roll out a bundle (plan, confirm, progress)", True),
        ("R", "restart the service", True),
        ("l", "collect logs", False),
        ("c", "capture state", False),
        ("x", "exec a command (output grouped by result)", True),
        ("F", "fix drift: repair drifted files", True),
    ]),
]

FILTER_HELP = [
    ("word", "substring of any cell (node, group, ssh state, version...)"),
    ("~regex", "regular expression over the row"),
    ("@group", "a node set starting with a group: @alpha, @edu!@alpha"),
    ("=nodeset", "a node set: =pl[1-20].cs.example.edu"),
    ("pl[1-20]*", "a name pattern: ranges plus * and ? globs"),
    ("!term", "invert a term; several terms must all match: down @alpha"),
]

COMMAND_HELP = [
    (":sweep  :checksums  :heal", "as s, S, h"),
    (":rollout [BUNDLE]  :restart  :logs  :capture  :repair", "actions on the selection"),
    (":exec COMMAND", "run a command on the selection"),
    (":mark NODESET  :unmark NODESET", "mark by node-set expression"),
    (":group save NAME", "save the marked nodes as a group in the fleet file"),
    (":filter EXPR  :sort COLUMN [desc]", "filter and sort"),
    (":theme NAME  :events  :pause  :help  :q", ""),
]


def help_text(readonly: bool) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for title, rows in KEYS:
        table.add_row(Text(title, style="bold underline"), "")
        for key, what, mutating in rows:
            note = Text(what)
            if readonly and mutating:
                note.append("  (disabled: read-only)", style="bold reverse")
            table.add_row(key, note)
        table.add_row("", "")
    table.add_row(Text("Filter syntax", style="bold underline"), "")
    for key, what in FILTER_HELP:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row(Text("Commands (:)", style="bold underline"), "")
    for key, what in COMMAND_HELP:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("q", "close", "Back", show=False),
        Binding("question_mark", "close", "Back", show=False),
    ]

    def __init__(self, readonly: bool = False):
        super().__init__()
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box help-box"):
            yield Static(Text("pltui keys" + ("  (read-only console)" if self.readonly else ""), style="bold"))
            with VerticalScroll(id="help-scroll"):
                yield Static(help_text(self.readonly))
            yield Static(Text("esc / q / ? close", end=""), classes="hint")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
        self.app.release_keys()

    def action_close(self) -> None:
        self.dismiss(None)
