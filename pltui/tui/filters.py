"""The `/` filter and the `m` mark-by-state menu: which nodes an operator means.

Filter syntax (space-separated terms, all must match; a leading `!` inverts a term):

    word        case-insensitive substring of any cell of the row (node, group, ssh, version...)
    ~regex      case-insensitive regular expression, searched in the node name and in the row
    @group...   a ClusterShell node set starting with a group: `@alpha`, `@edu!@alpha`
    =nodeset    a ClusterShell node set: `=pl[1-20].cs.example.edu`, `=sim[001-005,009]`
    pat[1-20]*  a name pattern: ClusterShell-style ranges plus `*` and `?` globs
    down        a state word (see STATE_WORDS): down, degraded, up, unknown, trouble, drift,
                isolated, stale, marked, dead (monitor dead), backoff, noquorum; and
                version=X, proto=N, monitor=dead, ssh=timeout; "monitor dead" reads as monitor=dead

Pure functions over names and row texts; no Textual here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from pltui.consensus import Consensus
from pltui.model import Health, NodeStatus
from pltui.nodesets import NodeSetError, Selector

MAX_ALTERNATIVES = 20000
_RANGE = re.compile(r"\[([0-9,\- ]+)\]")


class FilterError(ValueError):
    """The filter expression cannot be used; the message says why."""


STATE_WORDS = ("down", "degraded", "up", "unknown", "trouble", "drift", "drifted", "isolated", "stale",
               "marked", "dead", "backoff", "noquorum")
STATE_KEYS = ("version", "proto", "protocol", "monitor", "ssh", "health")
_MONITOR_WORDS = re.compile(r"\bmonitor\s+(dead|alive|absent)\b", re.IGNORECASE)

StatesOf = Callable[[str], frozenset]


@dataclass(frozen=True)
class Filter:
    expr: str
    test: Callable[[str, str], bool]   # (node name, row text) -> keep?

    def __call__(self, name: str, row_text: str) -> bool:
        return self.test(name, row_text)


def node_states(name: str, status: NodeStatus, consensus: Consensus, marks, now: float,
                stale_after: float, track: str | None = None, answered: float = 0.0) -> frozenset:
    """The state words a node answers to in the filter (`down`, `drift`, `version=2.4.1`...).

    Health words come from the status itself, never from a cell's text: a node named
    `download01` is not `down`, and a down node is never `up` because an old cell said so."""
    health = status.health
    words = {health.value, f"health={health.value}", f"ssh={status.ssh.value}"}
    if health != Health.UP:
        words.add("trouble")
    if consensus.drift.get(name):
        words |= {"drift", "drifted", "trouble"}
    if name in consensus.isolated:
        words |= {"isolated", "trouble"}
    if track is not None and consensus.no_quorum.get(track):
        words.add("noquorum")
    when = status.observed if status.reachable else answered     # last answered, not last probed
    if when and now - when > stale_after:
        words |= {"stale", "trouble"}
    if name in marks:
        words.add("marked")
    if status.monitor:
        words.add(f"monitor={status.monitor.lower()}")
        if status.monitor == "dead":
            words.add("dead")
    if any(p.state == "backoff" for p in status.processes):
        words.add("backoff")
    if status.version:
        words.add(f"version={status.version.lower()}")
    if status.protocol:
        words |= {f"proto={status.protocol.lower()}", f"protocol={status.protocol.lower()}"}
    return frozenset(words)


def _range_alternatives(body: str) -> list[str]:
    out: list[str] = []
    for part in body.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise FilterError(f"bad range [{body}]")
        if not hi:
            out.append(lo)
            continue
        a, b = int(lo), int(hi)
        if b < a:
            raise FilterError(f"bad range [{body}]: {lo} > {hi}")
        if len(out) + b - a + 1 > MAX_ALTERNATIVES:
            raise FilterError(f"range [{body}] is too large")
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        out.extend(str(i).zfill(width) for i in range(a, b + 1))
    if not out:
        raise FilterError("empty range []")
    return out


def pattern_regex(pattern: str) -> re.Pattern:
    """A name pattern (`pl[1-20]*`, `node?.lab`) as an anchored regex."""
    parts: list[str] = []
    pos = 0
    for match in _RANGE.finditer(pattern):
        parts.append(_glob(pattern[pos:match.start()]))
        parts.append("(?:" + "|".join(re.escape(a) for a in _range_alternatives(match.group(1))) + ")")
        pos = match.end()
    parts.append(_glob(pattern[pos:]))
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE)


def _glob(chunk: str) -> str:
    if "[" in chunk or "]" in chunk:
        raise FilterError(f"bad bracket in {chunk!r}: ranges look like [1-20] or [01-10,15]")
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in chunk)


def _term(term: str, selector: Selector, states: StatesOf | None) -> Callable[[str, str], bool]:
    lowered = term.lower()
    if states is not None and (lowered in STATE_WORDS or lowered.partition("=")[0] in STATE_KEYS and "=" in lowered):
        if lowered == "drifted":
            lowered = "drift"
        return lambda name, row: lowered in states(name)
    if term.startswith("~"):
        try:
            rx = re.compile(term[1:], re.IGNORECASE)
        except re.error as exc:
            raise FilterError(f"bad regular expression {term[1:]!r}: {exc}") from None
        return lambda name, row: rx.search(name) is not None or rx.search(row) is not None
    if term.startswith("@") or term.startswith("="):
        try:
            names = frozenset(selector.parse(term.lstrip("=")))
        except NodeSetError as exc:
            raise FilterError(str(exc)) from None
        return lambda name, row: name in names
    if any(c in term for c in "[]*?"):
        rx = pattern_regex(term)
        return lambda name, row: rx.match(name) is not None
    needle = term.lower()
    return lambda name, row: needle in row.lower()


def compile_filter(expr: str, selector: Selector, states: StatesOf | None = None) -> Filter | None:
    """A Filter for `expr`, or None for an empty expression; FilterError when malformed.
    `states(name)` gives a node's state words (node_states); without it state words are
    plain substrings."""
    expr = expr.strip()
    if not expr:
        return None
    tests: list[tuple[bool, Callable[[str, str], bool]]] = []
    for term in _MONITOR_WORDS.sub(lambda m: "monitor=" + m.group(1).lower(), expr).split():
        invert = term.startswith("!")
        term = term[1:] if invert else term
        if not term:
            raise FilterError("`!` needs a term after it (e.g. !down)")
        tests.append((invert, _term(term, selector, states)))

    def test(name: str, row: str) -> bool:
        return all(fn(name, row) != invert for invert, fn in tests)

    return Filter(expr, test)


# -- marking by observed state ------------------------------------------------------------------

STATE_CHOICES = (
    ("down", "all down (SSH failed)"),
    ("degraded", "all degraded (monitor or processes dead)"),
    ("unknown", "all not yet swept"),
    ("unhealthy", "all not up (down, degraded or unknown)"),
    ("drifted", "all with drifted files"),
    ("isolated", "all on an isolated protocol cohort"),
    ("visible", "all rows shown (the filter's result)"),
    ("invert", "invert the marks"),
    ("clear", "clear all marks"),
)


def version_choices(statuses: Mapping[str, NodeStatus]) -> list[tuple[str, str]]:
    counts = Counter(s.version for s in statuses.values() if s.version)
    return [(f"version={v}", f"all on version {v} ({n})") for v, n in counts.most_common(20)]


def nodes_in_state(choice: str, statuses: Mapping[str, NodeStatus], consensus: Consensus,
                   order: Iterable[str]) -> list[str]:
    """Nodes (in `order`) matching a state choice: down, degraded, drifted, version=X, ..."""
    order = list(order)
    if choice in ("down", "degraded", "unknown", "up"):
        health = Health(choice)
        return [n for n in order if statuses[n].health == health]
    if choice == "unhealthy":
        return [n for n in order if statuses[n].health != Health.UP]
    if choice == "drifted":
        return [n for n in order if consensus.drift.get(n)]
    if choice == "isolated":
        return [n for n in order if n in consensus.isolated]
    if choice.startswith("version="):
        version = choice.partition("=")[2]
        return [n for n in order if statuses[n].version == version]
    raise ValueError(f"unknown state {choice!r}")
