"""The event pane: Notices, heals, action progress and errors as one line each (toggle `e`).

Lines are queued by the app and written in its flush, never per event; `RichLog` is given
`Text` objects only, so node strings are never parsed as markup.
"""

from __future__ import annotations

import time

from rich.style import Style
from rich.text import Text
from textual.widgets import RichLog

from pltui.sanitize import clean_line

LEVEL_VAR = {"error": "node-down", "warning": "node-degraded", "info": "muted", "ok": "node-up"}
LEVEL_WORD = {"error": "ERR ", "warning": "WARN", "info": "info", "ok": "ok  "}


def event_line(when: float, level: str, message: str, node: str | None, styles: dict[str, Style]) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    line.append(time.strftime("%H:%M:%S ", time.localtime(when)), styles.get("muted", Style()))
    line.append(LEVEL_WORD.get(level, "info") + " ", styles.get(LEVEL_VAR.get(level, "muted"), Style()))
    if node:
        line.append(clean_line(node, 64) + ": ", Style(bold=True))
    line.append(clean_line(message, 500))
    return line


class EventPane(RichLog):
    def __init__(self, **kwargs):
        super().__init__(max_lines=1000, wrap=False, markup=False, highlight=False, auto_scroll=True, **kwargs)
        self.can_focus = False
