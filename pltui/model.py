"""What the engine knows about nodes, and the events it streams to the faces (CLI and TUI).

Plain dataclasses, no I/O. Every string field that came from a node is already sanitised
(`pltui.sanitize.clean_line`) by the parser that built it, so faces can display it as-is
(as `rich.text.Text`, never as markup).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class SSHState(str, Enum):
    """How reaching a node went. Failures are classified, never lumped."""

    OK = "ok"
    REFUSED = "refused"            # TCP connection refused
    UNREACHABLE = "unreachable"    # no route, DNS failure, or connect timed out (no banner / no kex)
    HOSTKEY = "hostkey"            # host key unknown or changed: never trusted
    AUTH = "auth"                  # authentication denied
    TIMEOUT = "timeout"            # command did not finish within the command timeout
    GARBLED = "garbled"            # command ran but its output did not parse
    ERROR = "error"                # anything else (SSH protocol error, channel failure, ...)
    UNKNOWN = "unknown"            # not yet swept


class Health(str, Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass
class ProcStatus:
    name: str
    alive: bool
    pid: int | None = None
    state: str = "unknown"         # running, starting, backoff, stopped, dead, unknown
    restarts: int | None = None
    last_exit: int | None = None
    next_try: float | None = None  # node clock seconds of the next start attempt (backoff)


@dataclass
class NodeStatus:
    node: str
    ssh: SSHState = SSHState.UNKNOWN
    error: str | None = None       # one line, sanitised, naming what went wrong
    observed: float = 0.0          # local time of the observation
    latency_ms: float | None = None   # round trip of the probe (connect if needed + exec)
    queue_ms: float | None = None     # wait for a fanout slot before that (not the node's fault)
    monitor: str | None = None     # alive, dead, absent
    monitor_pid: int | None = None
    heartbeat_age: float | None = None
    processes: list[ProcStatus] = field(default_factory=list)
    version: str | None = None
    protocol: str | None = None
    load: float | None = None
    uptime: float | None = None
    disk_free: int | None = None
    log_bytes: int | None = None
    clock: float | None = None
    digest_tool: str | None = None
    digests: dict[str, str] | None = None  # path -> hex digest; None unless a checksum sweep
    digests_time: float | None = None
    # Added by the probe rewrite (additive): anything odd that did not make the node unusable,
    # one sanitised line each (bytes shown escaped, a FIFO where a file should be, a monitor spec
    # that names other processes than the fleet file). Any warning makes the node degraded.
    warnings: list[str] = field(default_factory=list)
    special_files: dict[str, str] | None = None  # important path -> why it was not read (fifo, device...)
    file_warnings: list[str] | None = None       # the warnings of the last checksum sweep (carried)
    clock_skew: float | None = None              # node clock minus local time when the probe started

    @property
    def reachable(self) -> bool:
        return self.ssh == SSHState.OK

    @property
    def procs_alive(self) -> int:
        return sum(1 for p in self.processes if p.alive)

    @property
    def health(self) -> Health:
        if self.ssh == SSHState.UNKNOWN:
            return Health.UNKNOWN
        if self.ssh != SSHState.OK:
            return Health.DOWN
        if self.monitor == "dead" or any(not p.alive for p in self.processes) or self.warnings:
            return Health.DEGRADED
        return Health.UP

    def to_json(self) -> dict[str, Any]:
        # Hand-rolled (not dataclasses.asdict, which deep-copies): this runs for every node
        # of every sweep.
        data = dict(self.__dict__)
        data["processes"] = [dict(p.__dict__) for p in self.processes]
        if self.digests is not None:
            data["digests"] = dict(self.digests)
        data["warnings"] = list(self.warnings)
        if self.special_files is not None:
            data["special_files"] = dict(self.special_files)
        if self.file_warnings is not None:
            data["file_warnings"] = list(self.file_warnings)
        data["ssh"] = self.ssh.value
        data["health"] = self.health.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NodeStatus":
        data = dict(data)
        data.pop("health", None)
        data["ssh"] = SSHState(data.get("ssh", "unknown"))
        data["processes"] = [ProcStatus(**p) for p in data.get("processes") or []]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# ------------------------------------------------------------------------------------------
# Events streamed by the engine. Faces subscribe and render; they never reach into the engine.


@dataclass
class Event:
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass
class SweepStarted(Event):
    sweep_id: int
    checksums: bool
    total: int


@dataclass
class NodeUpdated(Event):
    status: NodeStatus


@dataclass
class SweepFinished(Event):
    sweep_id: int
    checksums: bool
    summary: dict[str, Any]        # counts, cohorts, majorities: see consensus.summarise


@dataclass
class HealDone(Event):
    node: str
    ok: bool
    message: str


@dataclass
class ActionProgress(Event):
    """One step of an action on one node (rollout, logs, capture, exec, repair, control)."""

    action_id: str
    kind: str
    node: str | None
    state: str                     # e.g. uploading, stopping, swapping, done, failed, rolled-back
    detail: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None


@dataclass
class ActionFinished(Event):
    action_id: str
    kind: str
    ok: bool
    report: dict[str, Any]


TRANSITION_KINDS = (
    "went-down", "came-back", "new-drift", "repaired", "version-changed", "protocol-changed",
    "monitor-healed", "crash-looping",
)


@dataclass
class NodeTransition(Event):
    """A change of one node's state that an operator (and alert hooks) should hear about.

    `kind` is one of TRANSITION_KINDS; `detail` is one sanitised line ("timeout: no answer in
    30s", "VERSION 1.4 -> 1.5", "bin/proxy drifted"); `since` is when the new state began (the
    observation time), so faces can say "down since 10:42".
    """

    node: str
    kind: str
    detail: str = ""
    since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "node": self.node, "kind": self.kind, "detail": self.detail,
                "since": self.since}


@dataclass
class Notice(Event):
    """A line for the operator's event pane: level is info, warning or error."""

    level: str
    message: str
    node: str | None = None
