"""`?`: every key, the filter syntax and the `:` commands, on one scrollable page."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from pltui.tui.screens.once import dismiss_once

KEY_WIDTH = 20
# (key, what, mutating)
KEYS: list[tuple[str, list[tuple[str, str, bool]]]] = [
    ("Moving and selecting", [
        ("↑ ↓ j k", "move the cursor (PgUp PgDn Home End too)", False),
        ("space", "mark / unmark the node (and move down)", False),
        ("g  m  u", "mark a group; mark by state; clear all marks", False),
        ("/", "filter as you type (see below); esc clears it", False),
        ("n  N", "next / previous node in trouble", False),
        ("< >  I", "sort by the previous / next column; invert", False),
        ("W", "sort worst first (down, degraded, unknown...)", False),
        ("y", "copy the marked (else shown) nodes as a node set", False),
        ("enter", "node detail (shell with !)", False),
        ("e", "event pane: changes, notices, actions", False),
        ("Z", "pause: freeze the view (updates keep arriving)", False),
        ("A", "show the running action", False),
        (":  ctrl+p", "command line; command palette", False),
        ("t  ?", "choose a theme; this help", False),
        ("esc  q", "back out (close, clear the filter); quit", False),
    ]),
    ("Actions (on the marked nodes, else the cursor's)", [
        ("s  S", "sweep now; checksum sweep now", False),
        ("h", "heal: restart dead node monitors", True),
        ("r", "roll out a bundle (plan, confirm, progress)", True),
        ("R", "restart the service", True),
        ("o", "service: start stop restart reload reboot, rollouts", True),
        ("l  c", "collect logs; capture state", False),
        ("x", "exec a command (output grouped by result)", True),
        ("F", "fix drift: repair drifted files", True),
    ]),
]

FILTER_HELP = [
    ("down", "state words: down degraded up unknown trouble drift isolated stale marked "
             "dead backoff noquorum; version=X proto=N ssh=timeout; \"monitor dead\""),
    ("word", "substring of any cell (node, group, ssh state, version...)"),
    ("~regex", "regular expression over the row"),
    ("@group", "a node set starting with a group: @alpha, @edu!@alpha"),
    ("=nodeset", "a node set: =pl[1-20].cs.example.edu"),
    ("pl[1-20]*", "a name pattern: ranges plus * and ? globs"),
    ("!term", "invert a term; several terms must all match: down @alpha"),
]

COMMAND_HELP = [
    (":sweep :checksums", "as s, S"),
    (":heal", "as h"),
    (":rollout BUNDLE", "options after it, or in the review: e reload f failhard b batch p parallel m max_fail"),
    (":rollouts", "past and interrupted rollouts: R resume, B roll back"),
    (":start :stop", "start / stop the service's processes"),
    (":restart :reload", "restart them; reload without a restart"),
    (":reboot", "reboot the nodes (type the node count to confirm)"),
    (":logs :capture", "collect logs; capture state"),
    (":repair", "repair drifted files"),
    (":exec COMMAND", "run a command on the selection"),
    (":mark :unmark SET", "mark by node-set expression"),
    (":group save NAME", "save the marked nodes as a group in the fleet file"),
    (":filter EXPR", "filter (as /)"),
    (":sort COLUMN [desc]", "sort; COLUMN status (or worst) is worst first"),
    (":copy", "copy the marked or shown nodes (as y)"),
    (":export FILE", "the rows shown as .json, else CSV"),
    (":bell [on|off]", "ring when a node goes down or crash-loops"),
    (":theme :events", "choose a theme; toggle the event pane"),
    (":pause :help :q", ""),
]


def _grid() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, max_width=KEY_WIDTH)   # descriptions get the rest
    table.add_column(ratio=1)
    return table


def help_text(readonly: bool) -> Group:
    """Sections as a heading line over a two-column grid: keys at most KEY_WIDTH wide, so the
    descriptions keep the rest of an 80-column terminal."""
    parts: list = []
    for title, rows in KEYS:
        table = _grid()
        for key, what, mutating in rows:
            note = Text(what)
            if readonly and mutating:
                note.append("  (disabled: read-only)", style="bold reverse")
            table.add_row(Text(key), note)
        parts += [Text(title, style="bold underline"), table, Text("")]
    for title, rows in (("Filter syntax", FILTER_HELP), ("Commands (:)", COMMAND_HELP)):
        table = _grid()
        for key, what in rows:
            table.add_row(Text(key), Text(what))
        parts += [Text(title, style="bold underline"), table, Text("")]
    return Group(*parts)


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
        dismiss_once(self, None)
