"""Transitions: what changed about a node between two observations, as engine events.

Pure functions (no I/O, no clock): the engine calls `node_transitions` for each new status
against the node's previous one, `drift_transitions` once the sweep's majorities are decided
(drift is relative to the track's majority, so it is known only then), and `healed` when it
restarted a node monitor. Faces (console event pane, `pltui sweep`, `pltui history`, alert hooks)
all read the same `NodeTransition` events, never recompute them.

Rules (an operator's "what just happened", not every field change):
- went-down / came-back: the node's health crossing into or out of `down` (never from `unknown`:
  the first observation of a node is no change).
- version-changed / protocol-changed: both observations answered and the value differs.
- crash-looping: a process entered `backoff` (the node monitor gave up restarting it for now),
  or its restart count grew by CRASH_RESTARTS or more between two observations while running.
- new-drift: files that now differ from the track's majority and did not before; repaired: a node
  that drifted and no longer does.
- monitor-healed: the sweep's heal restarted a dead node monitor.
`since` is the observation time of the new state.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from pltui.model import Health, NodeStatus, NodeTransition, ProcStatus
from pltui.sanitize import clean_line

CRASH_RESTARTS = 3  # restarts between two observations that count as a crash loop
DETAIL = 200


def _names(paths: Iterable[str], limit: int = 3) -> str:
    paths = sorted(paths)
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _value(text: str | None) -> str:
    return clean_line(text, 60) if text else "none"


def _crash_looping(before: ProcStatus | None, now: ProcStatus) -> str | None:
    """Why `now` is crash-looping when `before` was not, else None."""
    if now.state == "backoff" and (before is None or before.state != "backoff"):
        extra = f", {now.restarts} restarts" if now.restarts is not None else ""
        exited = f", last exit {now.last_exit}" if now.last_exit is not None else ""
        return f"process {now.name} keeps failing (monitor backoff{extra}{exited})"
    if (before is not None and before.restarts is not None and now.restarts is not None
            and now.state != "backoff" and now.restarts - before.restarts >= CRASH_RESTARTS):
        return f"process {now.name} restarted {now.restarts - before.restarts} times since the last sweep"
    return None


def node_transitions(before: NodeStatus | None, now: NodeStatus) -> list[NodeTransition]:
    """Transitions of one node from its previous status to its new one (both observed)."""
    if before is None or before.health == Health.UNKNOWN or now.health == Health.UNKNOWN:
        return []
    name, since = now.node, now.observed or None
    found: list[NodeTransition] = []

    def add(kind: str, detail: str) -> None:
        found.append(NodeTransition(node=name, kind=kind, detail=clean_line(detail, DETAIL), since=since))

    if before.health != Health.DOWN and now.health == Health.DOWN:
        add("went-down", f"{now.ssh.value}: {now.error}" if now.error else now.ssh.value)
    elif before.health == Health.DOWN and now.health != Health.DOWN:
        add("came-back", f"answering again ({now.health.value})")
    if before.reachable and now.reachable:
        if before.version != now.version:
            add("version-changed", f"version {_value(before.version)} -> {_value(now.version)}")
        if before.protocol != now.protocol:
            add("protocol-changed", f"protocol {_value(before.protocol)} -> {_value(now.protocol)}")
        old = {p.name: p for p in before.processes}
        for proc in now.processes:
            why = _crash_looping(old.get(proc.name), proc)
            if why:
                add("crash-looping", why)
    return found


def drift_transitions(before: Mapping[str, list[str]], now: Mapping[str, list[str]],
                      statuses: Mapping[str, NodeStatus], nodes: Iterable[str]) -> list[NodeTransition]:
    """new-drift / repaired per node, from the drift maps before and after a sweep's decision."""
    found = []
    for name in nodes:
        old, new = set(before.get(name) or ()), set(now.get(name) or ())
        status = statuses.get(name)
        since = (status.digests_time or status.observed) if status else None
        if new - old:
            detail = f"{_names(new - old)} differ{'s' if len(new - old) == 1 else ''} from the majority"
            found.append(NodeTransition(node=name, kind="new-drift", detail=clean_line(detail, DETAIL), since=since))
        elif old and not new:
            found.append(NodeTransition(node=name, kind="repaired", detail=clean_line(
                f"{_names(old)} match{'es' if len(old) == 1 else ''} the majority again", DETAIL), since=since))
    return found


def healed(node: str, message: str, when: float) -> NodeTransition:
    return NodeTransition(node=node, kind="monitor-healed", detail=clean_line(message, DETAIL), since=when)


def event_row(t: NodeTransition) -> tuple:
    """The store's events row for a transition: (time, level, node, kind, message); time = since."""
    level = "error" if t.kind in ("went-down", "crash-looping") else "warning" if t.kind == "new-drift" else "info"
    return (t.since or t.time, level, t.node, "transition", f"{t.kind}: {t.detail}" if t.detail else t.kind)


def from_event(row: Mapping) -> NodeTransition | None:
    """A stored transition event back as a NodeTransition (None for other events)."""
    if row.get("kind") != "transition":
        return None
    kind, _, detail = str(row.get("message", "")).partition(": ")
    return NodeTransition(node=row.get("node") or "", kind=kind, detail=detail, since=row.get("time"),
                          time=row.get("time") or 0.0)
