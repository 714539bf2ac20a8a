"""The header: fleet, sweep state, health counts, protocol cohorts, checksum quorum, marks.

Rebuilt from the engine on each flush and by a 1 s clock (for "12s ago" / "next in 4m"); the
widget is only touched when its text actually changed.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from rich.cells import cell_len
from textual.widget import Widget

from pltui.durations import format_duration
from pltui.model import Health
from pltui.sanitize import clean_line
from pltui.tui.cells import HEALTH_SYMBOL, HEALTH_VAR
from pltui.tui.view import ConsoleView


def _ago(seconds: float) -> str:
    return format_duration(seconds if seconds < 60 else (seconds // 60) * 60)


def header_text(view: ConsoleView, *, events_unseen: int = 0, running: list[str] | None = None,
                changes_unseen: int = 0) -> Text:
    engine = view.engine
    now = view.clock()
    ctx_style = view.styles.get
    out = Text(no_wrap=False, end="")
    out.append(" pltui ", "reverse bold")
    out.append(" " + clean_line(view.fleet.name, 40) + " ", "bold")
    if view.readonly:
        out.append(" read-only ", "reverse")
        out.append(" ")
    if view.paused:
        out.append(" PAUSED (Z) ", "reverse bold")
        out.append(" ")
    if engine.sweeping:
        done, total = engine.progress
        out.append(f"sweeping {done}/{total}", "bold")
    elif engine.last_sweep_end:
        out.append(f"swept {_ago(max(0.0, now - engine.last_sweep_end))} ago")
    else:
        out.append("not swept yet", ctx_style("muted") or "")
    if engine.next_sweep_at and not engine.sweeping:
        left = engine.next_sweep_at - now
        out.append(f", next in {_ago(left)}" if left >= 1 else ", next due now")
    if running:
        out.append("  ")
        out.append(" " + clean_line(", ".join(running), 80) + " (A) ", "reverse")
    out.append("\n")
    counts = view.health_counts()
    for health, word in ((Health.UP, "up"), (Health.DEGRADED, "degraded"), (Health.DOWN, "down"),
                         (Health.UNKNOWN, "unknown")):
        n = counts.get(health, 0)
        style = ctx_style(HEALTH_VAR[health]) if n else ctx_style("muted")
        out.append(f"{HEALTH_SYMBOL[health]} {n} {word}", style or "")
        out.append("  ")
    consensus = view.consensus
    out.append("│ ", ctx_style("muted") or "")
    if consensus.largest_cohort is not None:
        largest = consensus.cohorts.get(consensus.largest_cohort, [])
        out.append(f"proto {clean_line(consensus.largest_cohort, 16)} ({len(largest)})")
        if consensus.isolated:
            out.append(f" {len(consensus.isolated)} isolated!", (ctx_style("isolated") or Style()) + Style(bold=True))
    else:
        out.append("proto -", ctx_style("muted") or "")
    out.append("  │ ", ctx_style("muted") or "")
    if not consensus.checked:
        out.append("sums -", ctx_style("muted") or "")
    else:
        drifted = len(consensus.drift)
        noq = sum(len(v) for v in consensus.no_quorum.values())
        if drifted:
            out.append(f"sums: {drifted} drifted", ctx_style("drift") or "bold")
        else:
            out.append("sums ok", ctx_style("node-up") or "")
        if noq:
            out.append(f", {noq} no quorum", ctx_style("node-degraded") or "")
    out.append("  │ ", ctx_style("muted") or "")
    marked = len(view.marks)
    out.append(f"{marked} marked", (ctx_style("marked") or "") if marked else (ctx_style("muted") or ""))
    if view.filter is not None:
        out.append("  │ filter ")
        out.append(clean_line(view.filter.expr, 40), "bold")
    if changes_unseen:
        out.append(f"  │ {changes_unseen} change{'s' if changes_unseen > 1 else ''} (e)",
                   (ctx_style("node-degraded") or Style()) + Style(bold=True))
    if events_unseen:
        out.append(f"  │ {events_unseen} new event{'s' if events_unseen > 1 else ''} (e)", ctx_style("node-degraded") or "")
    return out


class HeaderBar(Widget):
    """Two lines at the top of the main screen. Repainted only when its text changed, and laid
    out again only when its number of lines did (the 1 s clock must not re-layout the screen)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._text = Text("")
        self._last: tuple | None = None
        self._lines = 0

    def render(self) -> Text:
        return self._text

    def _line_count(self, text: Text) -> int:
        width = max(1, self.size.width or 80)
        return sum(max(1, -(-cell_len(line) // width)) for line in text.plain.split("\n"))

    def show(self, text: Text) -> None:
        signature = (text.plain, tuple(text.spans))
        if signature == self._last:
            return
        self._last = signature
        self._text = text
        lines = self._line_count(text)
        self.refresh(layout=lines != self._lines)
        self._lines = lines

    def on_resize(self) -> None:
        self._lines = self._line_count(self._text)
        self.refresh(layout=True)
