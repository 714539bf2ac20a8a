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


TRANSITION_WORDS = {"went-down": "went down", "came-back": "came back", "new-drift": "new drift",
                    "repaired": "repaired", "version-changed": "version changed",
                    "protocol-changed": "protocol changed", "monitor-healed": "monitor healed",
                    "crash-looping": "process crash-looping"}
TRANSITION_LEVEL = {"went-down": "error", "crash-looping": "error", "new-drift": "warning",
                    "protocol-changed": "warning", "came-back": "ok", "repaired": "ok", "monitor-healed": "ok",
                    "version-changed": "info"}


def transition_message(event) -> str:
    """`went down: timeout (since 10:42:05)`; the node name is the line's own prefix."""
    word = TRANSITION_WORDS.get(event.kind, clean_line(event.kind, 32).replace("-", " "))
    out = word + (f": {clean_line(event.detail, 300)}" if event.detail else "")
    if event.since:
        out += time.strftime(" (since %H:%M:%S)", time.localtime(event.since))
    return out


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
