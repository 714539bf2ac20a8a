"""`:rollouts` (or `o` then rollouts): past and interrupted rollouts from the state database,
with resume (`R`) and roll back (`B`), the same saved state and engine APIs as the CLI's
`pltui rollout --status / --resume / --rollback`."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from pltui.sanitize import clean_line
from pltui.tui.screens.once import dismiss_once

RESUMABLE = ("halted", "paused", "interrupted", "stopped", "failed", "running")


def saved_rollouts(store, limit: int = 50) -> list[dict]:
    """One JSON-ready line per saved rollout, newest first (pltui.actions.rollout.describe)."""
    from pltui.actions.rollout import describe

    out = []
    for saved in store.actions(kind="rollout", limit=limit):
        if not saved:
            continue
        try:
            doc = describe(saved)
        except (KeyError, TypeError, ValueError, IndexError) as exc:   # another version's state
            out.append({"action_id": saved.get("id", "?"), "status": "unreadable", "error": str(exc)})
            continue
        out.append(doc)
    return out


class RolloutsScreen(Screen):
    BINDINGS = [
        Binding("R", "resume", "Resume"),
        Binding("B", "rollback", "Roll back"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="rollouts-head")
        yield DataTable(id="rollouts-table", cursor_type="row", show_row_labels=False)
        yield Static(id="rollouts-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # 78 columns with the cell padding: the saved time is whole at 80x24
        for key, label, width in (("id", "rollout", 30), ("status", "status", 11), ("version", "version", 8),
                                  ("nodes", "nodes", 5), ("updated", "saved", 14)):
            table.add_column(Text(label, style="bold"), key=key, width=width)
        self.docs: dict[str, dict] = {}
        store = self.app.view.engine.store
        head = self.query_one("#rollouts-head", Static)
        if store is None:
            head.update(Text("no state database: no saved rollouts", end=""))
        else:
            try:
                docs = saved_rollouts(store)
            except Exception as exc:  # a broken database must not take the console down
                docs = []
                head.update(Text(clean_line(f"cannot read saved rollouts: {exc}", 200), end=""))
            else:
                head.update(Text(f"{len(docs)} saved rollout{'s' if len(docs) != 1 else ''}; "
                                 "R resumes, B rolls back the one under the cursor", end=""))
            for doc in docs:
                action_id = str(doc.get("action_id"))
                self.docs[action_id] = doc
                nodes = sum(info.get("count", 0) for info in (doc.get("phases") or {}).values())
                updated = doc.get("updated")
                table.add_row(Text(clean_line(action_id, 60), end=""), Text(clean_line(str(doc.get("status")), 20)),
                              Text(clean_line(str((doc.get("bundle") or {}).get("version", "-")), 30)),
                              Text(str(nodes)),
                              Text(time.strftime("%m-%d %H:%M:%S", time.localtime(updated)) if updated else "-"),
                              key=action_id)
        table.focus()
        self._show_detail()
        self.app.release_keys()

    @property
    def current(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        doc = self.docs.get(self.current or "")
        out = Text(end="")
        if doc:
            if doc.get("stopped_because"):
                out.append(f"stopped because: {clean_line(str(doc['stopped_because']), 200)}\n")
            for phase, info in (doc.get("phases") or {}).items():
                out.append(f"{clean_line(phase, 20)} ({info.get('count')}): {clean_line(str(info.get('nodes')), 200)}\n")
            out.append(f"CLI: pltui rollout FLEET --status {clean_line(str(doc.get('action_id')), 80)}", "dim")
        self.query_one("#rollouts-detail", Static).update(out)

    def action_resume(self) -> None:
        if self.current:
            self.app.start_saved_rollout(self.current, "resume")

    def action_rollback(self) -> None:
        if self.current:
            self.app.start_saved_rollout(self.current, "rollback")

    def action_back(self) -> None:
        dismiss_once(self)
