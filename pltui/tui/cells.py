"""Table cells for one node: `rich.text.Text` only (never markup), styled by meaning.

Every value is cleaned again here (defence in depth) and every state carries a word or symbol
besides its colour, so the table reads the same in a 16-colour terminal or for colour-blind
operators. Pure functions of (status, context): the widget decides when to call them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.style import Style
from rich.text import Text

from pltui.consensus import Consensus
from pltui.durations import format_duration
from pltui.fleet import Fleet
from pltui.format import human_bytes, procs_cell
from pltui.model import Health, NodeStatus, SSHState
from pltui.sanitize import clean_line

HEALTH_SYMBOL = {Health.UP: "●", Health.DEGRADED: "◐", Health.DOWN: "×", Health.UNKNOWN: "?"}
HEALTH_VAR = {Health.UP: "node-up", Health.DEGRADED: "node-degraded", Health.DOWN: "node-down",
              Health.UNKNOWN: "node-unknown"}
LOW_DISK = 1 << 30        # under 1 GiB free: flagged
CRITICAL_DISK = 100 << 20


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    drop: int          # drop order when the terminal is narrow (higher goes first; 0 never)


COLUMNS: tuple[Column, ...] = (
    Column("mark", " ", 1, 0),
    Column("node", "node", 18, 0),
    Column("group", "group/track", 14, 8),
    Column("ssh", "ssh", 11, 0),        # "unreachable" whole
    Column("monitor", "monitor", 7, 7),
    Column("procs", "procs", 11, 0),
    Column("version", "version", 10, 0),
    Column("protocol", "proto", 6, 0),
    Column("checksums", "sums", 9, 0),
    Column("load", "load", 5, 4),
    Column("disk", "disk", 6, 5),
    Column("logs", "logs", 6, 6),
    Column("seen", "answered", 8, 3),   # last answered, not last probed
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
SORTABLE = ("status",) + tuple(c.key for c in COLUMNS)   # status: worst first, not a column of its own


def fit_columns(width: int, node_width: int, padding: int = 1) -> list[Column]:
    """The columns that fit `width` cells, dropping the least important first."""
    cols = [Column(c.key, c.label, node_width, 0) if c.key == "node" else c for c in COLUMNS]

    def total(cs: list[Column]) -> int:
        return sum(c.width + 2 * padding for c in cs) + 2  # + scrollbar

    while total(cols) > width:
        droppable = [c for c in cols if c.drop]
        if not droppable:
            break
        cols.remove(max(droppable, key=lambda c: c.drop))
    return cols


@dataclass
class Context:
    """What cells need besides the status: consensus, the fleet, marks, styles, the time now.
    Built once per flush; styles with attributes are cached (Style arithmetic is not free)."""

    fleet: Fleet
    consensus: Consensus
    marks: set[str]
    styles: dict[str, Style]
    now: float = field(default_factory=time.time)
    stale_after: float = 900.0
    _group_cache: dict[str, str] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)   # node -> when it last answered (OK)
    _style_cache: dict[tuple, Style] = field(default_factory=dict)

    def style(self, var: str, bold: bool = False, reverse: bool = False) -> Style:
        key = (var, bold, reverse)
        style = self._style_cache.get(key)
        if style is None:
            style = self.styles.get(var, Style())
            if bold or reverse:
                style = style + Style(bold=bold or None, reverse=reverse or None)
            self._style_cache[key] = style
        return style


def text(value: object, style: Style | str = "", limit: int = 256) -> Text:
    """A single-line, cleaned Text: no markup parsing, no control bytes, bounded length."""
    return Text(clean_line(str(value), limit), style=style, no_wrap=True, overflow="ellipsis", end="")


def group_label(fleet: Fleet, name: str) -> str:
    """`group`, `group/track` when they differ, the track alone, or `-`."""
    node = fleet.nodes.get(name)
    if node is None:
        return "-"
    groups = [g for g in node.groups if g != "all"]
    track = node.track
    if not groups:
        return track if track != "default" else "-"
    if track in ("default", groups[0]):
        return groups[0]
    return f"{groups[0]}/{track}"


def checksum_word(name: str, ctx: Context, status: NodeStatus | None = None) -> str:
    """ok, drift N, no quorum, `-`; `stale` for a node that does not answer now: its digests
    are from before it went down, so "ok" would be a claim about a node nobody can see."""
    state = ctx.consensus.checksum_state(name)
    if status is not None and state != "-" and status.ssh != SSHState.OK:
        return "stale"
    if state == "ok":
        node = ctx.fleet.nodes.get(name)
        if node is not None and ctx.consensus.no_quorum.get(node.track):
            return "no quorum"
    return state


AGE_TICK = 30.0   # the "seen" column is refreshed this often; its words change no faster


def last_answered(status: NodeStatus, ctx: "Context") -> float:
    """When the node last answered: its observation if it answers now, else what the console
    saw before (0.0: not since the console started). A failed probe is not "seen"."""
    if status.ssh == SSHState.OK:
        return status.observed
    return ctx.answered.get(status.node, 0.0)


def age(status: NodeStatus, now: float, when: float | None = None) -> str:
    """`<1m`, `4m`, `2h05m`, `3d1h` since `when` (default: the observation): minutes at best,
    so a 30 s refresh keeps it true."""
    when = status.observed if when is None else when
    if not when:
        return "-"
    seconds = max(0.0, now - when)
    if seconds < 60:
        return "<1m"
    return format_duration((seconds // 60) * 60)


def row_cells(status: NodeStatus, ctx: Context, keys) -> dict[str, Text]:
    """Every cell of one row (the node's health computed once)."""
    health = status.health
    return {key: cell(key, status, ctx, health) for key in keys}


def cell(key: str, status: NodeStatus, ctx: Context, health: Health | None = None) -> Text:
    """The cell of column `key` for one node."""
    name = status.node
    health = health if health is not None else status.health
    if key == "mark":
        return text("*", ctx.style("marked", bold=True)) if name in ctx.marks else text(" ")
    if key == "node":
        out = Text(no_wrap=True, overflow="ellipsis", end="")
        out.append(HEALTH_SYMBOL[health] + " ", ctx.style(HEALTH_VAR[health]))
        out.append(clean_line(name, 128), ctx.style("marked", bold=True) if name in ctx.marks else "")
        return out
    if key == "group":
        label = ctx._group_cache.get(name)
        if label is None:
            label = ctx._group_cache[name] = group_label(ctx.fleet, name)
        return text(label)
    if key == "ssh":
        if status.ssh == SSHState.OK:
            latency = f" {status.latency_ms:.0f}ms" if status.latency_ms is not None else ""
            return text("ok" + latency, ctx.style("node-up"))
        if status.ssh == SSHState.UNKNOWN:
            return text("?", ctx.style("node-unknown"))
        return text(status.ssh.value, ctx.style("node-down", bold=True))
    if key == "monitor":
        word = status.monitor or "-"
        var = {"alive": "node-up", "dead": "node-down", "absent": "node-degraded"}.get(word, "muted")
        return text(word, ctx.style(var, bold=word == "dead"))
    if key == "procs":
        word = procs_cell(status)
        if word == "-":
            return text("-", ctx.style("muted"))
        ok = status.procs_alive == len(status.processes)
        return text(word, ctx.style("node-up" if ok else "node-degraded", bold=not ok))
    if key == "version":
        return text(status.version or "-", ctx.style("muted") if not status.version else "", 64)
    if key == "protocol":
        if status.protocol is None:
            return text("-", ctx.style("muted"))
        if name in ctx.consensus.isolated:
            return text(f"{clean_line(status.protocol, 32)}!", ctx.style("isolated", bold=True, reverse=True))
        return text(status.protocol, "", 32)
    if key == "checksums":
        word = checksum_word(name, ctx, status)
        var = "node-up" if word == "ok" else "drift" if word.startswith("drift") else \
            "node-degraded" if word == "no quorum" else "muted"
        return text(word, ctx.style(var, bold=word.startswith("drift")))
    if key == "load":
        return text(f"{status.load:.2f}" if status.load is not None else "-", "" if status.load is not None else ctx.style("muted"))
    if key == "disk":
        free = status.disk_free
        if free is None:
            return text("-", ctx.style("muted"))
        if free < CRITICAL_DISK:
            return text(human_bytes(free) + "!", ctx.style("node-down", bold=True))
        if free < LOW_DISK:
            return text(human_bytes(free) + "!", ctx.style("node-degraded"))
        return text(human_bytes(free))
    if key == "logs":
        return text(human_bytes(status.log_bytes), "" if status.log_bytes is not None else ctx.style("muted"))
    if key == "seen":
        now = ctx.now
        when = last_answered(status, ctx)
        if status.ssh in (SSHState.OK, SSHState.UNKNOWN) or when:
            stale = when and now - when > ctx.stale_after
            return text(age(status, now, when), ctx.style("node-degraded" if stale else "muted"))
        return text("-", ctx.style("node-down"))         # down, and not seen answering
    raise KeyError(key)


_SSH_ORDER = {s: i for i, s in enumerate([SSHState.OK, SSHState.GARBLED, SSHState.TIMEOUT, SSHState.ERROR,
                                          SSHState.AUTH, SSHState.HOSTKEY, SSHState.REFUSED,
                                          SSHState.UNREACHABLE, SSHState.UNKNOWN])}
_HEALTH_ORDER = {Health.DOWN: 0, Health.DEGRADED: 1, Health.UNKNOWN: 2, Health.UP: 3}


def sort_key(key: str, status: NodeStatus, ctx: Context, index: int) -> tuple:
    """A total order per column (missing values last); `index` (fleet order) breaks ties."""
    name = status.node
    missing = (1,)
    if key == "mark":
        value = (0 if name in ctx.marks else 1,)
    elif key == "node":
        value = ()
    elif key == "status":
        # Worst first: down, degraded, unknown, then up nodes that still need a look (isolated,
        # drifted, no answer for a while), then the healthy ones.
        when = last_answered(status, ctx)
        stale = bool(when) and ctx.now - when > ctx.stale_after
        value = (_HEALTH_ORDER[status.health], 0 if name in ctx.consensus.isolated else 1,
                 -len(ctx.consensus.drift.get(name, ())), 0 if stale else 1)
    elif key == "group":
        value = (group_label(ctx.fleet, name),)
    elif key == "ssh":
        value = (_SSH_ORDER.get(status.ssh, 99), status.latency_ms if status.latency_ms is not None else 1e12)
    elif key == "monitor":
        value = ({"dead": 0, "absent": 1, "alive": 2}.get(status.monitor or "", 3),)
    elif key == "procs":
        value = (_HEALTH_ORDER[status.health], status.procs_alive - len(status.processes))
    elif key == "version":
        value = (0, status.version) if status.version else missing
    elif key == "protocol":
        value = (0 if name in ctx.consensus.isolated else 1, status.protocol) if status.protocol else (2,)
    elif key == "checksums":
        word = checksum_word(name, ctx)
        value = (-len(ctx.consensus.drift.get(name, ())), {"no quorum": 0, "ok": 1, "-": 2}.get(word, 0))
    elif key in ("load", "disk", "logs"):
        number = {"load": status.load, "disk": status.disk_free, "logs": status.log_bytes}[key]
        if number is None:
            value = missing
        else:
            value = (0, -number if key != "disk" else number)  # busiest, fullest, biggest first
    elif key == "seen":
        value = (0, status.observed) if status.observed else missing
    else:
        raise KeyError(key)
    return value + (index,)
