"""The main screen: header, node table, event pane, footer; selection, filter and sort keys.

Action keys (s, S, h, r, R, l, c, x, F) are bound here and carried out by the app, which also
serves the `:` command line and the command palette with the same methods.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from pltui.nodesets import NodeSetError, fold
from pltui.sanitize import clean_line
from pltui.tui.cells import SORTABLE
from pltui.tui.filters import STATE_CHOICES, FilterError, compile_filter, nodes_in_state, version_choices
from pltui.tui.screens.prompt import ChoiceScreen, PromptScreen
from pltui.tui.widgets.event_pane import EventPane
from pltui.tui.widgets.header_bar import HeaderBar
from pltui.tui.widgets.node_table import NodeTable

FILTER_HINT = ("down degraded trouble drift isolated stale marked dead backoff version=X proto=N  "
               "word ~regex @group =nodeset pl[1-20]*  !term inverts; terms are ANDed; "
               "applies as you type; esc restores")
MUTATING = {"heal", "rollout", "restart", "exec", "repair"}


class MainScreen(Screen):
    BINDINGS = [
        Binding("space", "mark", "Mark"),
        # Priority (these and every key that opens a screen): run in the app's task as the key
        # arrives, so the screen is pushed (and the keys after it held for it) before the next
        # key of a burst is dispatched to the table.
        Binding("slash", "filter", "Filter", priority=True),
        Binding("colon", "command_line", "Cmd", priority=True),
        Binding("s", "sweep", "Sweep"),
        Binding("g", "mark_group", "Mark group", show=False, priority=True),
        Binding("m", "mark_state", "Mark by state", show=False, priority=True),
        Binding("u", "clear_marks", "Clear marks", show=False),
        Binding("less_than_sign", "sort(-1)", "Sort column left", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort column right", show=False),
        Binding("I", "invert_sort", "Invert sort", show=False),
        Binding("W", "sort_worst", "Worst first", show=False),
        Binding("n", "next_trouble(1)", "Next trouble", show=False),
        Binding("N", "next_trouble(-1)", "Previous trouble", show=False),
        Binding("y", "copy_set", "Copy set", show=False),
        Binding("e", "toggle_events", "Events", show=False),
        Binding("Z", "pause", "Pause view", show=False),
        Binding("A", "show_action", "Running action", show=False),
        Binding("escape", "back_out", "Back", show=False),
        Binding("S", "checksum_sweep", "Checksum sweep", show=False),
        Binding("h", "heal", "Heal", show=False, priority=True),
        Binding("r", "act('rollout')", "Rollout", show=False, priority=True),
        Binding("R", "act('restart')", "Restart", show=False, priority=True),
        Binding("l", "act('logs')", "Logs", show=False, priority=True),
        Binding("c", "act('capture')", "Capture", show=False, priority=True),
        Binding("x", "act('exec')", "Exec", show=False, priority=True),
        Binding("F", "act('repair')", "Repair drift", show=False, priority=True),
        Binding("o", "service_menu", "Service", show=False, priority=True),
    ]

    def compose(self) -> ComposeResult:
        view = self.app.view
        yield HeaderBar(id="header")
        yield NodeTable(view, id="nodes")
        yield EventPane(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.table.rebuild()
        self.table.focus()
        self.call_after_refresh(self.app.refresh_header)   # is_mounted is only true after on_mount
        self.app.release_keys()

    @property
    def table(self) -> NodeTable:
        return self.query_one(NodeTable)

    @property
    def header(self) -> HeaderBar:
        return self.query_one(HeaderBar)

    @property
    def events(self) -> EventPane:
        return self.query_one(EventPane)

    # -- readonly ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters) -> bool | None:
        if not self.app.view.readonly:
            return True
        if action == "heal":
            return False
        if action == "act" and parameters and self.app.action_is_mutating(parameters[0]):
            return False
        return True

    # -- navigation -------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.open_detail(event.row_key.value)

    def action_back_out(self) -> None:
        view = self.app.view
        if view.filter is not None:
            self.apply_filter("")
        elif self.events.display:
            self.action_toggle_events()

    def action_toggle_events(self) -> None:
        pane = self.events
        pane.display = not pane.display
        if pane.display:
            self.app.events_unseen = 0
            self.app.changes_unseen = 0
        self.app.refresh_header()

    def action_pause(self) -> None:
        self.app.set_paused(not self.app.view.paused)

    def action_show_action(self) -> None:
        self.app.show_progress()

    # -- marks ------------------------------------------------------------------------------

    def set_marks(self, names, on: bool = True) -> None:
        view = self.app.view
        changed = [n for n in names if (n in view.marks) != on]
        if on:
            view.marks.update(changed)
        else:
            view.marks.difference_update(changed)
        self.table.refresh_nodes(changed, resort=view.sort_column == "mark")
        self.app.refresh_header()

    def action_mark(self) -> None:
        name = self.table.cursor_node
        if name is None:
            return
        self.set_marks([name], name not in self.app.view.marks)
        self.table.action_cursor_down()

    def action_clear_marks(self) -> None:
        self.set_marks(list(self.app.view.marks), False)

    def action_mark_group(self) -> None:
        fleet = self.app.view.fleet
        groups = sorted(g for g in fleet.group_members if g != "all") + ["all"]
        choices = [(g, Text(f"@{g}  ({len(fleet.group_members[g])} nodes)", end="")) for g in groups]

        def chosen(group: str | None) -> None:
            if group:
                names = [n for n in fleet.group_members[group] if n in self.app.view.index]
                self.set_marks(names, True)
                self.app.notify(f"marked @{group}: {len(names)} nodes")

        self.app.push_screen(ChoiceScreen("Mark a group", choices), chosen)

    def action_mark_state(self) -> None:
        view = self.app.view
        choices = [(k, label) for k, label in STATE_CHOICES] + version_choices(view.statuses)

        def chosen(choice: str | None) -> None:
            if not choice:
                return
            if choice == "clear":
                self.action_clear_marks()
            elif choice == "invert":
                marked = set(view.marks)
                self.set_marks(marked, False)
                self.set_marks([n for n in view.names if n not in marked], True)
            elif choice == "visible":
                self.set_marks(self.table.shown, True)
            else:
                names = nodes_in_state(choice, view.statuses, view.consensus, view.names)
                self.set_marks(names, True)
                self.app.notify(f"marked {len(names)} node{'s' if len(names) != 1 else ''}: {choice}")

        self.app.push_screen(ChoiceScreen("Mark by state", choices), chosen)

    def mark_expr(self, expr: str, on: bool = True) -> None:
        try:
            names = self.app.view.selector.parse(expr)
        except NodeSetError as exc:
            self.app.notify(str(exc), severity="error")
            return
        self.set_marks(names, on)
        self.app.notify(f"{'marked' if on else 'unmarked'} {len(names)} nodes")

    # -- filter and sort --------------------------------------------------------------------

    def action_filter(self) -> None:
        current = self.app.view.filter.expr if self.app.view.filter else ""

        def chosen(expr: str | None) -> None:
            self.apply_filter(current if expr is None else expr)     # esc: back to the old filter

        self.app.push_screen(PromptScreen("Filter rows", value=current, placeholder="e.g. down @alpha",
                                          hint=FILTER_HINT, on_change=self._filter_typed), chosen)

    def _filter_typed(self, expr: str) -> None:
        """Incremental: each keystroke filters the table; a half-typed term that does not parse
        yet (`~(`, `pl[1-`) leaves the table as it was, without a toast per key."""
        self.apply_filter(expr, quiet=True)

    def apply_filter(self, expr: str, quiet: bool = False) -> bool:
        view = self.app.view
        old = view.filter.expr if view.filter else ""
        try:
            view.filter = compile_filter(expr, view.selector, view.states_of)
        except FilterError as exc:
            if not quiet:
                self.app.notify(str(exc), title="filter not applied", severity="error")
            return False
        if quiet and (view.filter.expr if view.filter else "") == old:
            return True
        self.table.rebuild()
        self.app.refresh_header()
        if view.filter is not None and not self.table.row_count and not quiet:
            self.app.notify("no node matches the filter (esc clears it)", severity="warning")
        return True

    def action_sort(self, step: int) -> None:
        view = self.app.view
        keys = ["status"] + [k for k in SORTABLE if k in self.table.visible_columns]
        index = keys.index(view.sort_column) if view.sort_column in keys else 0
        self.set_sort(keys[(index + step) % len(keys)], view.sort_reverse)

    def action_sort_worst(self) -> None:
        self.set_sort("status", False)

    def action_next_trouble(self, step: int) -> None:
        """Move the cursor to the next (step 1) or previous (-1) node in trouble (down, degraded,
        unknown, drifted, isolated, stale), wrapping around, in display order."""
        table, view = self.table, self.app.view
        shown = table.shown
        if not shown:
            return
        cursor = table.cursor_node
        start = shown.index(cursor) if cursor in shown else -1
        for i in range(1, len(shown) + 1):
            name = shown[(start + i * step) % len(shown)]
            if view.troubled(name):
                table.go_to(name)
                return
        self.app.notify("no node in trouble among the rows shown")

    def selection_set(self) -> tuple[list[str], str]:
        """The marked nodes, else the rows the filter shows: (names, what they are)."""
        view = self.app.view
        marked = view.marked()
        if marked:
            return marked, "marked"
        return [n for n in view.names if n in set(self.table.shown)], ("filtered" if view.filter else "all")

    def action_copy_set(self) -> None:
        """The marked (else shown) nodes as one folded node set, to the clipboard (OSC 52) and on
        screen, ready for `pltui ... -w` or clush."""
        names, what = self.selection_set()
        if not names:
            self.app.notify("no node to copy", severity="warning")
            return
        folded = fold(names)
        self.app.copy_to_clipboard(folded)
        self.app.notify(f"copied {len(names)} {what} node{'s' if len(names) != 1 else ''}: {folded}")

    def action_invert_sort(self) -> None:
        self.set_sort(self.app.view.sort_column, not self.app.view.sort_reverse)

    def set_sort(self, column: str, reverse: bool) -> None:
        view = self.app.view
        view.sort_column, view.sort_reverse = column, reverse
        self.table.resort()

    # -- actions ----------------------------------------------------------------------------

    def action_command_line(self) -> None:
        from pltui.tui.commands import NAMES

        self.app.push_screen(PromptScreen(":", placeholder="command (e.g. sweep, mark @alpha, group save NAME)",
                                          suggestions=sorted(NAMES)), self._command_chosen)

    def _command_chosen(self, line: str | None) -> None:
        if line:
            self.app.run_command(line)

    def action_sweep(self) -> None:
        self.app.sweep_now(False)

    def action_checksum_sweep(self) -> None:
        self.app.sweep_now(True)

    def action_heal(self) -> None:
        self.app.hold_keys()               # what is typed next belongs to the question it opens
        self.app.start_heal()

    def action_service_menu(self) -> None:
        """`o`: the service's lifecycle on the selection, and the rollouts screen."""
        choices = [("start", "start the service's processes"), ("stop", "stop them (on purpose: they stay stopped)"),
                   ("restart", "restart them (R)"), ("reload", "reload them without a restart"),
                   ("reboot", "reboot the nodes (you type the node count to confirm)"),
                   ("rollouts", "past and interrupted rollouts: resume, roll back")]
        if self.app.view.readonly:
            choices = [c for c in choices if c[0] == "rollouts"]

        def chosen(choice: str | None) -> None:
            if choice:
                self.app.run_command(choice)

        self.app.push_screen(ChoiceScreen(clean_line(f"Service on {self.app.view.describe(self.app.targets())}", 70), choices),
                             chosen)

    def action_act(self, name: str) -> None:
        self.app.hold_keys()               # e.g. `r/srv/b.tgz` typed in one burst: the path goes
        self.app.start_action(name)        # to the bundle prompt, not `s` to sweep, `r` to rollout
