"""The node table: one row per node, updated in place, sorted and filtered without losing the
cursor's node.

Row keys are node names. The table never re-renders per event: the app hands it a batch of
changed nodes a few times a second (`refresh_nodes`), and only cells whose text or style changed
are written. After a sort or a membership change the cursor is re-found by row key, because
`DataTable.sort()` keeps the cursor's *index*.

Why cells are not written with `DataTable.update_cell`: every call bumps the table's update
counter, which keys all of its render caches, so one changed cell re-renders every visible cell
(about 100 ms per flush at 160x50, with the key presses waiting behind it). Instead the changed
rows' data is written and only their cache entries are evicted and their lines repainted; the
rest of the screen stays cached. When the DataTable internals this relies on are missing (another
Textual version), the table falls back to `update_cell`.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from pltui.tui.cells import Column, cell, fit_columns
from pltui.tui.view import ConsoleView

REBUILD_ABOVE = 64   # membership changes beyond this rebuild the table instead of row by row


class NodeCell(Text):
    """The node column's Text, carrying its node name so sorting can find the row's node."""

    __slots__ = ("node",)


def _signature(text: Text) -> tuple:
    return text.plain, text.style, tuple(text.spans)


class NodeTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "select_cursor", "Detail"),
        Binding("home", "scroll_top", "First node", show=False),   # rows, not columns (htop, k9s)
        Binding("end", "scroll_bottom", "Last node", show=False),
    ]

    def __init__(self, view: ConsoleView, **kwargs):
        super().__init__(cursor_type="row", show_row_labels=False, **kwargs)
        self.view = view
        self._cells: dict[str, dict[str, Text]] = {}
        self._row_text: dict[str, str] = {}
        self._shown: set[str] = set()
        self._layout: list[Column] = []
        self.node_width = min(max((len(n) for n in view.names), default=8) + 2, 30)
        self._fast = all(hasattr(self, a) for a in ("_data", "_cell_render_cache", "_row_render_cache",
                                                     "_row_renderable_cache", "_line_cache", "_row_locations"))
        self._stale: set[str] = set()

    # -- queries ----------------------------------------------------------------------------

    @property
    def cursor_node(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    @property
    def shown(self) -> list[str]:
        """Node names in display order."""
        return [row.key.value for row in self.ordered_rows]

    def in_view(self) -> list[str]:
        """Names of the rows on screen now (for flushing those first)."""
        top = int(self.scroll_offset.y)
        end = min(self.row_count, top + self.size.height)
        get = self._row_locations.get_key if self._fast else None
        if get is None:
            return self.shown[top:end]
        return [get(i).value for i in range(top, end)]

    @property
    def visible_columns(self) -> list[str]:
        return [c.key for c in self._layout]

    def go_to(self, name: str | None) -> bool:
        if name is None or name not in self._shown:
            return False
        try:
            index = self.get_row_index(name)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    # -- building ---------------------------------------------------------------------------

    def _compute(self, names, ctx) -> None:
        for name in names:
            cells = self.view.cells(name, ctx)
            node = NodeCell(end="", no_wrap=True, overflow="ellipsis")
            node.node = name
            node.append_text(cells["node"])
            cells["node"] = node
            self._cells[name] = cells
            self._row_text[name] = " ".join(c.plain for c in cells.values())

    def _wanted(self, name: str) -> bool:
        flt = self.view.filter
        return flt is None or flt(name, self._row_text[name])

    def _layout_for(self, width: int) -> list[Column]:
        node_width = self.node_width if width >= 100 else min(self.node_width, 18)
        return fit_columns(width or 80, node_width, self.cell_padding)

    def _label(self, column: Column) -> Text:
        if column.key == "node" and self.view.sort_column == "status":     # fits the narrowest node column
            return Text("best ▲" if self.view.sort_reverse else "worst ▲", style="bold", end="")
        label = Text(column.label, style="bold", end="")
        if column.key == self.view.sort_column and column.key != "mark":
            label.append(" ▼" if self.view.sort_reverse else " ▲")
        return label

    def rebuild(self) -> None:
        """Columns for the current width, rows for the current filter, in sort order."""
        cursor = self.cursor_node
        ctx = self.view.context()
        self._compute([n for n in self.view.names if n not in self._cells], ctx)
        self._layout = self._layout_for(self.size.width)
        self.clear(columns=True)
        for column in self._layout:
            self.add_column(self._label(column), width=column.width, key=column.key)
        wanted = [n for n in self.view.names if self._wanted(n)]
        if self.view.sort_column != "node" or self.view.sort_reverse:
            keys = {n: self.view.row_key(n, ctx) for n in wanted}
            wanted.sort(key=keys.__getitem__, reverse=self.view.sort_reverse)
        keys_in_row = self.visible_columns
        for name in wanted:
            cells = self._cells[name]
            self.add_row(*(cells[k] for k in keys_in_row), key=name)
        self._shown = set(wanted)
        if not self.go_to(cursor) and wanted:
            self.move_cursor(row=0, animate=False)

    def restyle(self) -> None:
        """Recompute every cell (theme change): styles live in the cells."""
        self._cells.clear()
        self.rebuild()

    def on_resize(self, event: Resize) -> None:
        if [c.key for c in self._layout_for(event.size.width)] != self.visible_columns:
            self.rebuild()

    # -- live updates -----------------------------------------------------------------------

    def refresh_nodes(self, names, *, resort: bool | None = None) -> None:
        """Recompute the rows of `names`; update changed cells in place; keep the cursor's node."""
        ctx = self.view.context()
        keys = self.visible_columns
        add, remove = [], []
        for name in names:
            old = self._cells.get(name)
            self._compute([name], ctx)
            new = self._cells[name]
            wanted = self._wanted(name)
            if name in self._shown:
                if not wanted:
                    remove.append(name)
                    continue
                changed = {key: new[key] for key in keys
                           if old is None or _signature(old[key]) != _signature(new[key])}
                if changed:
                    self._write(name, changed)
            elif wanted:
                add.append(name)
        self._repaint_stale()
        if len(add) + len(remove) > REBUILD_ABOVE:
            self.rebuild()
            return
        cursor = self.cursor_node
        for name in remove:
            self.remove_row(name)
            self._shown.discard(name)
        for name in add:
            cells = self._cells[name]
            self.add_row(*(cells[k] for k in keys), key=name)
            self._shown.add(name)
        dynamic = self.view.sort_column not in ("node",) or self.view.sort_reverse
        if resort or (resort is None and (add or (dynamic and names))):
            self.resort(cursor)
        elif remove and cursor in self._shown:
            self.go_to(cursor)

    def _write(self, name: str, changed: dict[str, Text]) -> None:
        if not self._fast:
            for key, value in changed.items():
                self.update_cell(name, key, value)
            return
        self._data[RowKey(name)].update({ColumnKey(k): v for k, v in changed.items()})
        self._stale.add(name)

    def _repaint_stale(self) -> None:
        """Evict the render caches of the rows written by `_write`, and repaint just those rows."""
        if not self._stale:
            return
        stale, self._stale = {RowKey(n) for n in self._stale}, set()
        indices = {self._row_locations.get(key) for key in stale} - {None}
        header = self.header_height if self.show_header else 0
        lines = {header + i for i in indices}   # rows are one line high
        for cache, match in ((self._cell_render_cache, lambda k: k[0] in stale),
                             (self._row_render_cache, lambda k: k[0] in stale),
                             (self._row_renderable_cache, lambda k: k[1] in indices),
                             (self._line_cache, lambda k: k[0] in lines)):
            for key in [k for k in cache.keys() if match(k)]:
                cache.discard(key)
        top = self.scroll_offset.y
        bottom = top + self.size.height
        for index in indices:
            if top <= index + header < bottom + 1:
                self.refresh_row(index)

    def refresh_ages(self) -> None:
        """Recompute the "seen" column alone (ages move while nothing else does)."""
        if "seen" not in self.visible_columns:
            return
        ctx = self.view.context()
        statuses = self.view.statuses
        for name in self._shown:
            new = cell("seen", statuses[name], ctx)
            cells = self._cells[name]
            if _signature(new) != _signature(cells["seen"]):
                cells["seen"] = new
                self._write(name, {"seen": new})
        self._repaint_stale()
        if self.view.sort_column == "seen":
            self.resort()

    def resort(self, cursor: str | None = None) -> None:
        """Order rows by the view's sort column, then put the cursor back on its node."""
        cursor = cursor if cursor is not None else self.cursor_node
        ctx = self.view.context()
        keys = {n: self.view.row_key(n, ctx) for n in self._shown}
        self.sort("node", key=lambda cell: keys[cell.node], reverse=self.view.sort_reverse)
        self.relabel()
        self.go_to(cursor)

    def relabel(self) -> None:
        for column in self._layout:
            col = self.columns.get(column.key)
            if col is not None:
                col.label = self._label(column)
        self.refresh()
