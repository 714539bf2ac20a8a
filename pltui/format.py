"""Short display forms shared by the CLI and the TUI (plain strings; node text already clean)."""

from __future__ import annotations

from pltui.model import NodeStatus


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" or size >= 10 else f"{size:.1f}{unit}"
        size /= 1024
    return "-"  # pragma: no cover


def procs_cell(status: NodeStatus) -> str:
    """`2/2`, `1/2 backoff`, `0/2 stopped`, or `-`."""
    if not status.processes:
        return "-"
    alive = status.procs_alive
    text = f"{alive}/{len(status.processes)}"
    states = {p.state for p in status.processes if not p.alive}
    for word in ("backoff", "stopped", "dead"):
        if word in states:
            return f"{text} {word}"
    return text
