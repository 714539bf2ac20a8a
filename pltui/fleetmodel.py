"""The fleet, as loaded from its file: plain frozen dataclasses (no I/O, no validation).

`pltui.fleet` is where they are imported from; `pltui.fleetload` builds them from TOML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TRACK = "default"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# What [fleet].nodes may expand to: a host name or address (IDN as punycode), usable as an SSH
# host and foldable back into a node set (no spaces, brackets, ',', '!', '&', '^', '@').
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$", re.ASCII)
HEAL_POLICIES = ("off", "monitor")
HOST_KEY_POLICIES = ("strict", "accept-new")


class FleetError(Exception):
    """A fleet file could not be loaded; `problems` lists every one found, each with its place."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    start: str
    pidfile: str
    stop: str | None = None
    reload: str | None = None
    stop_timeout: float = 10.0


@dataclass(frozen=True)
class ServiceSpec:
    root: str = "~/service"
    version_file: str = "VERSION"
    protocol_file: str | None = "PROTOCOL"
    protocol_command: str | None = None
    important: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    reboot_command: str | None = None
    monitor_interval: float = 5.0
    processes: tuple[ProcessSpec, ...] = ()
    backoff_cap: float | None = None  # longest restart delay of the node monitor (None: its default)


@dataclass(frozen=True)
class SSHSettings:
    user: str | None = None
    port: int | None = None  # None: ~/.ssh/config's Port, else 22
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: str = "strict"
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    fanout: int = 64
    handshakes: int = 32
    proxy_jump: str | None = None
    config: str | None = None
    keepalive: float = 30.0


@dataclass(frozen=True)
class Node:
    """One node with its effective connection settings (fleet defaults plus overrides)."""

    name: str
    host: str
    port: int | None  # None: ~/.ssh/config's Port, else 22
    user: str | None
    root: str
    identity_file: str | None = None
    proxy_jump: str | None = None
    track: str = DEFAULT_TRACK
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSettings:
    interval: float = 300.0
    checksum_interval: float = 86400.0
    full_checksum_interval: float = 7 * 86400.0  # checksum sweeps in between re-hash only changed files
    quorum: float = 0.5
    heal: str = "off"


@dataclass(frozen=True)
class StoreSettings:
    history: float = 90 * 86400.0  # seconds of history kept; 0 keeps everything


@dataclass(frozen=True)
class Stage:
    name: str
    group: str
    batch: tuple[int | str, ...] = ("100%",)
    parallel: int = 16
    max_fail: int | str = 0
    pause: bool = False


@dataclass(frozen=True)
class RolloutSettings:
    health_timeout: float = 60.0
    keep_releases: int = 2
    stages: tuple[Stage, ...] = ()


@dataclass
class Fleet:
    name: str
    path: Path | None
    ssh: SSHSettings
    service: ServiceSpec
    sweep: SweepSettings
    rollout: RolloutSettings
    nodes: dict[str, Node]
    groups: dict[str, str]  # group name -> node-set expression, as written
    tracks: dict[str, tuple[str, ...]]  # track name -> group names
    group_members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    alerts: Any = None  # pltui.alerts.AlertSettings ([alerts])
    store: StoreSettings = field(default_factory=StoreSettings)

    @property
    def node_names(self) -> list[str]:
        return list(self.nodes)

    def members(self, group: str) -> tuple[str, ...]:
        return self.group_members[group]
