"""`enter`: everything known about one node: probe fields, processes, drifted files beside the
majority digest, a history strip and recent events; `!` opens a shell on the node."""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from pltui.durations import format_duration
from pltui.format import human_bytes
from pltui.model import Health, NodeStatus
from pltui.sanitize import clean_line
from pltui.store import StoreError
from pltui.tui.cells import HEALTH_SYMBOL, HEALTH_VAR, Context, cell, checksum_word, group_label
from pltui.tui.remote import (FILE_MAX, TAIL_EVERY, TAIL_MAX, RemoteError, cat_command, diff_text, fetch,
                              majority_holder,
                              tail_command, tail_text)
from pltui.tui.view import ConsoleView
from pltui.tui.screens.once import dismiss_once

STRIP_CELLS = 48
_WORST = {Health.DOWN: 3, Health.DEGRADED: 2, Health.UNKNOWN: 1, Health.UP: 0}


def _t(value: object, style="", limit: int = 256) -> Text:
    return Text(clean_line("-" if value is None else str(value), limit), style=style, end="")


def _clock(when: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-"


def history_strip(rows: list[dict], now: float, ctx: Context, cells: int = STRIP_CELLS) -> Text:
    """Health over time as one symbol per time slice (worst state seen in the slice)."""
    changes = [(r["time"], r["changes"]["health"]) for r in rows if "health" in r.get("changes", {})]
    out = Text()
    if not changes:
        out.append("no history yet", ctx.style("muted"))
        return out
    first = changes[0][0]
    span = min(max(now - first, 600.0), 7 * 86400.0)
    width = span / cells
    start = now - span
    out.append(f"last {format_duration(span)}: ", ctx.style("muted"))
    index = 0
    current: Health | None = None
    while index < len(changes) and changes[index][0] <= start:
        current = Health(changes[index][1])
        index += 1
    for i in range(cells):
        end = start + (i + 1) * width
        worst = current
        while index < len(changes) and changes[index][0] < end:
            current = Health(changes[index][1])
            if worst is None or _WORST[current] > _WORST[worst]:
                worst = current
            index += 1
        if worst is None:
            out.append("·", ctx.style("muted"))
        else:
            out.append(HEALTH_SYMBOL[worst], ctx.style(HEALTH_VAR[worst]))
    out.append(" now", ctx.style("muted"))
    return out


def detail_renderable(view: ConsoleView, name: str, history: list[dict], events: list[dict]) -> Group:
    status: NodeStatus = view.statuses[name]
    ctx = view.context()
    consensus = view.consensus
    node = view.fleet.nodes[name]
    now = view.clock()
    health = status.health

    title = Text()
    title.append(HEALTH_SYMBOL[health] + " ", ctx.style(HEALTH_VAR[health]))
    title.append(clean_line(name, 128), "bold")
    title.append(f"  {health.value}", ctx.style(HEALTH_VAR[health], bold=True))
    if name in view.marks:
        title.append("  marked", ctx.style("marked", bold=True))
    title.append(f"   {clean_line(group_label(view.fleet, name), 64)}   ", ctx.style("muted"))
    title.append(clean_line(f"{node.user + '@' if node.user else ''}{node.host}:{node.port or 22}  {node.root}", 200),
                 ctx.style("muted"))

    probe = Table.grid(padding=(0, 2))
    probe.add_column(style="bold", no_wrap=True)
    probe.add_column()
    probe.add_column(style="bold", no_wrap=True)
    probe.add_column()
    def when(t: float) -> str:
        return f"{_clock(t)} ({format_duration(max(0.0, now - t))} ago)" if t else "not since the console started"

    observed = when(status.observed) if status.observed else "never"
    answered = when(view.answered.get(name, 0.0) if not status.reachable else status.observed)
    ssh = cell("ssh", status, ctx) if not status.reachable else Text("ok", ctx.style("node-up"), end="")
    if status.latency_ms is not None:
        ssh.append(f", round trip {status.latency_ms:.0f}ms")
    if status.queue_ms is not None:
        ssh.append(f", queued {status.queue_ms:.0f}ms", ctx.style("muted"))
    monitor = cell("monitor", status, ctx)
    if status.monitor_pid:
        monitor.append(f"  pid {status.monitor_pid}")
    if status.heartbeat_age is not None:
        monitor.append(f"  heartbeat {format_duration(status.heartbeat_age)} ago")
    skew = "-"
    if status.clock_skew is not None:  # measured by the engine against the probe's start
        skew = f"{status.clock_skew:+.1f}s"
    elif status.clock is not None and status.observed:
        skew = f"{status.clock - status.observed:+.1f}s"
    rows = [
        ("ssh", ssh, "last probed", _t(observed)),
        ("", "", "last answered", _t(answered)),
        ("error", _t(status.error, ctx.style("node-down")), "monitor", monitor),
        ("version", _t(status.version), "protocol", cell("protocol", status, ctx)),
        ("load", cell("load", status, ctx), "uptime", _t(format_duration(status.uptime) if status.uptime is not None else None)),
        ("disk free", cell("disk", status, ctx), "logs", _t(human_bytes(status.log_bytes))),
        ("clock skew", _t(skew), "checksums", cell("checksums", status, ctx)),
        ("digest tool", _t(status.digest_tool), "digests at", _t(_clock(status.digests_time) if status.digests_time else None)),
    ]
    for a, b, c, d in rows:
        probe.add_row(a, b, c, d)
    if name in consensus.isolated:
        probe.add_row("cohort", _t(f"isolated: protocol {status.protocol} is not the largest cohort "
                                   f"({consensus.largest_cohort})", ctx.style("isolated", bold=True)), "", "")
    for warning in status.warnings[:20]:  # the probe's flags: odd bytes, special files, spec mismatch
        probe.add_row("warning", _t(warning, ctx.style("node-degraded")), "", "")

    procs = Table(title=None, box=None, padding=(0, 2), show_edge=False, header_style="bold", expand=False)
    for col in ("process", "state", "pid", "restarts", "last exit", "next try"):
        procs.add_column(col, no_wrap=True)
    for p in status.processes:
        state_style = ctx.style("node-up") if p.alive else ctx.style("node-degraded", bold=True)
        next_try = "-"
        if p.next_try is not None and status.clock is not None:
            next_try = f"in {format_duration(max(0.0, p.next_try - status.clock))}"
        procs.add_row(_t(p.name, limit=64), _t(("alive " if p.alive else "down ") + clean_line(p.state, 32), state_style),
                      _t(p.pid), _t(p.restarts), _t(p.last_exit), _t(next_try))
    if not status.processes:
        procs.add_row(_t("no processes reported", ctx.style("muted")), "", "", "", "", "")

    files = Table(box=None, padding=(0, 2), show_edge=False, header_style="bold")
    for col in ("drifted file", "this node", "majority", "share"):
        files.add_column(col, no_wrap=True)
    drifted = consensus.drift.get(name, [])
    for path in drifted[:200]:
        verdict = consensus.files.get((node.track, path))
        mine = (status.digests or {}).get(path)
        files.add_row(_t(path, limit=120), _t(mine[:16] if mine else "missing", ctx.style("drift", bold=True)),
                      _t((verdict.digest or "-")[:16] if verdict else "-"),
                      _t(f"{verdict.holders}/{verdict.answering}" if verdict else "-"))
    if len(drifted) > 200:
        files.add_row(_t(f"... and {len(drifted) - 200} more"), "", "", "")
    sums = Text(f"checksums: {checksum_word(name, ctx, status)}")
    noq = consensus.no_quorum.get(node.track, [])
    if noq:
        sums.append(f"   {len(noq)} file(s) of track {clean_line(node.track, 32)} without quorum", ctx.style("node-degraded"))

    strip = history_strip(history, now, ctx)

    log = Table.grid(padding=(0, 1))
    log.add_column(no_wrap=True, style=ctx.style("muted"))
    log.add_column(no_wrap=True)
    log.add_column()
    for event in events[-15:]:
        level = event.get("level", "info")
        style = ctx.style("node-down") if level == "error" else ctx.style("node-degraded") if level == "warning" else ""
        log.add_row(_t(_clock(event.get("time"))), _t(f"{level} {event.get('kind', '')}", style), _t(event.get("message"), limit=300))
    if not events:
        log.add_row(_t("no events"), "", "")

    def heading(label: str) -> Text:
        return Text(f"\n{label}", style="bold underline")

    parts = [title, heading("probe"), probe, heading("processes"), procs, heading("checksums"), sums]
    if drifted:
        parts.append(files)
    parts += [heading("history"), strip, heading("recent events"), log]
    return Group(*parts)


class DetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("exclamation_mark", "shell", "Shell"),
        Binding("h", "heal", "Heal"),
        Binding("t", "tail", "Live tail"),
        Binding("d", "diff", "Diff drift"),
    ]

    def __init__(self, node: str):
        super().__init__()
        self.node = node
        self._tail_timer = None
        self._tail_busy = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-scroll"):
            yield Static(id="detail-body")
            yield Static(id="detail-remote")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()
        self.render_node()
        self.app.release_keys()

    def render_node(self) -> None:
        app = self.app
        store = app.view.engine.store
        history: list[dict] = []
        events: list[dict] = []
        if store is not None:
            try:
                history = store.history([self.node], limit=2000)
                events = store.events(self.node, limit=15)
            except StoreError as exc:
                events = [{"time": None, "level": "error", "kind": "store", "message": str(exc)}]
        self.query_one("#detail-body", Static).update(detail_renderable(app.view, self.node, history, events))

    def nodes_changed(self, names) -> None:
        if self.node in names and self.is_mounted:
            self.render_node()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "heal" and self.app.view.readonly:
            return False
        return True

    def action_back(self) -> None:
        dismiss_once(self)

    # -- from the node: live tail, drift diff -----------------------------------------------

    def _remote(self, heading: str, body: Text, show: bool = False) -> None:
        out = Text(f"\n{heading}\n", style="bold underline", end="")
        out.append_text(body)
        widget = self.query_one("#detail-remote", Static)
        widget.update(out)
        if show:                           # bring it into view once (not on every refresh)
            self.call_after_refresh(widget.scroll_visible, top=True, animate=False)

    def action_tail(self) -> None:
        """Toggle a live tail of the monitor's events.log and the processes' output, refreshed
        every few seconds while this screen is open (bounded reads over the engine's transport)."""
        if self._tail_timer is not None:
            self._tail_timer.stop()
            self._tail_timer = None
            self._remote("live tail", Text("stopped (t starts it again)", end=""))
            return
        self._remote("live tail", Text("fetching...", end=""), show=True)
        self._fetch_tail()
        self._tail_timer = self.set_interval(TAIL_EVERY, self._fetch_tail, name="detail-tail")

    def _fetch_tail(self) -> None:
        # Never cancel a fetch in flight (a cancelled connect can leave the node's pooled
        # connection half made): a tick that finds one running is skipped.
        if not self._tail_busy:
            self._tail_busy = True
            self._tail_once()

    @work(group="detail-tail", exit_on_error=False)
    async def _tail_once(self) -> None:
        try:
            await self._tail_fetch()
        finally:
            self._tail_busy = False

    async def _tail_fetch(self) -> None:
        view = self.app.view
        node = view.fleet.nodes[self.node]
        try:
            command = tail_command(node.root, logs=view.fleet.service.logs)
            data = await fetch(view.engine.transport, node, command, TAIL_MAX)
            body = tail_text(data)
        except RemoteError as exc:
            body = Text(clean_line(str(exc), 300), style="bold", end="")
        except Exception as exc:  # never a silent stop: say what broke
            body = Text(clean_line(f"internal error: {type(exc).__name__}: {exc}", 300), end="")
        if self._tail_timer is not None and self.is_mounted:
            self._remote(f"live tail of {clean_line(self.node, 64)} (every {TAIL_EVERY:g}s; t stops)", body)

    def action_diff(self) -> None:
        view = self.app.view
        drifted = view.consensus.drift.get(self.node, [])
        if not drifted:
            self.app.notify(f"{self.node} has no drifted file (S runs a checksum sweep)")
            return
        self._fetch_diff(drifted[0])

    @work(group="detail-diff", exit_on_error=False)
    async def _fetch_diff(self, path: str) -> None:
        view = self.app.view
        fleet = view.fleet
        holder = majority_holder(self.node, path, fleet, view.statuses, view.consensus)
        heading = f"diff of {clean_line(path, 120)}"
        if holder is None:
            self._remote(heading, Text("no reachable node holds the majority's copy", end=""))
            return
        self._remote(heading, Text(f"fetching from {self.node} and {holder}...", end=""))
        try:
            mine = await fetch(view.engine.transport, fleet.nodes[self.node],
                               cat_command(fleet.nodes[self.node].root, path), FILE_MAX + 1)
            theirs = await fetch(view.engine.transport, fleet.nodes[holder],
                                 cat_command(fleet.nodes[holder].root, path), FILE_MAX + 1)
        except RemoteError as exc:
            self._remote(heading, Text(clean_line(str(exc), 300), style="bold", end=""))
            return
        except Exception as exc:  # never a silent hang: say what broke
            self._remote(heading, Text(clean_line(f"internal error: {type(exc).__name__}: {exc}", 300), end=""))
            return
        self._remote(heading, diff_text(mine, theirs, self.node, holder, path), show=True)

    def action_shell(self) -> None:
        self.app.open_shell(self.node)

    def action_heal(self) -> None:
        self.app.start_heal([self.node])
