"""The fleet file: one TOML file describing a fleet, loaded into plain dataclasses.

Loading validates everything and collects *every* problem (with file, line and key) before
raising one `FleetError`, so an operator fixes a broken file in one pass. Fleets pltui generates
go through `tomli_w`; saved groups edit the operator's file in place with `tomlkit`, keeping its
comments and layout.

Schema (see sample_fleet.toml for a commented example)::

    [fleet]     name, nodes = [node-set expressions]
    [ssh]       user, port, identity_file, known_hosts, host_key_policy, connect_timeout,
                command_timeout, fanout, handshakes, proxy_jump, config, keepalive
    [node."n"]  per-node overrides: host, port, user, root, identity_file, proxy_jump
    [groups]    name = "node-set expression" (may use @other and @all)
    [tracks]    name = ["group", ...]  (nodes in no track form the "default" track)
    [service]   root, version_file, protocol_file | protocol_command, important, logs, state,
                reboot_command, monitor_interval; [[service.process]] name, start, pidfile,
                stop, reload, stop_timeout
    [sweep]     interval, checksum_interval, full_checksum_interval (0: always full), quorum, heal ("off" | "monitor")
    [rollout]   health_timeout, keep_releases; [[rollout.stage]] name, group, batch,
                parallel, max_fail, pause
    [store]     history (how long the state database keeps history, events and finished
                actions; "90d" by default, 0 keeps everything)

Values that reach ssh (host, user, and each hop of proxy_jump, an OpenSSH ProxyJump chain
"[user@]host[:port],...", see pltui/jumps.py) never start with `-` nor hold whitespace or
control characters; state paths stay inside the service root.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pltui.durations import parse_duration
from pltui.jumps import check_jump

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


# --------------------------------------------------------------------------------------------
# Loading


class _Locator:
    """Best-effort line numbers for keys, since tomllib reports none for valid documents.

    A key is looked for under its table's header (the `index`-th one for arrays of tables
    such as [[rollout.stage]]), then as a dotted key (`ssh.port = 0`) or inline table under a
    parent table, then as a header of its own (`[sweeep]`, `[ssh.extra]`)."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((number, match.group(1).replace('"', "").replace("'", "").replace(" ", "")))

    def _region(self, header_line: int) -> tuple[int, int]:
        """Lines of a table's body: after its header up to the next header."""
        later = [n for n, _ in self.headers if n > header_line]
        return header_line + 1, later[0] if later else len(self.lines) + 1

    def _top_region(self) -> tuple[int, int]:
        return 1, self.headers[0][0] if self.headers else len(self.lines) + 1

    @staticmethod
    def _segment(name: str) -> str:
        quoted = re.escape(name)
        return f"(?:\"{quoted}\"|'{quoted}'|{quoted})"

    def _find(self, region: tuple[int, int], path: list[str], *, prefix_only: bool = False) -> int | None:
        dotted = r"\s*\.\s*".join(self._segment(p) for p in path)
        pattern = re.compile(r"^\s*" + dotted + (r"\s*[=.]" if prefix_only else r"\s*="))
        for number in range(*region):
            if pattern.match(self.lines[number - 1]):
                return number
        return None

    def _headers_named(self, name: str) -> list[int]:
        return [n for n, header in self.headers if header == name]

    def line_of(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        found = self._headers_named(table) if table else []
        header_line = found[min(index, len(found) - 1)] if found else None
        if key is None and header_line is not None:
            return header_line
        if key is not None:
            region = self._region(header_line) if header_line is not None else (self._top_region() if not table else None)
            if region is not None:
                line = self._find(region, [key])
                if line:
                    return line
        # dotted keys or inline tables under a parent table (or at the top level)
        parts = table.split(".") if table else []
        path = parts + ([key] if key is not None else [])
        for cut in range(len(parts) - (1 if found else 0), -1, -1):
            if cut and not self._headers_named(".".join(parts[:cut])):
                continue
            region = self._region(self._headers_named(".".join(parts[:cut]))[0]) if cut else self._top_region()
            rest = path[cut:]
            if not rest:
                continue
            line = self._find(region, rest) or self._find(region, rest[:1], prefix_only=True)
            if line:
                return line
        # a table of its own: [sweeep] for an unknown top-level key, [ssh.extra] for one in [ssh]
        full = ".".join(path)
        for number, header in self.headers:
            if header == full or header.startswith(full + "."):
                return number
        return header_line


# One jump host as the transport supports it: [user@]host[:port] (no chain, no option).
_JUMP_RE = re.compile(r"^(?:([^@:,/]+)@)?([^@:,/\[\]]+)(?::(\d{1,5}))?$")


def root_relative_problem(path: str) -> str | None:
    """Why `path` is not a path inside the service root (None when it is): state paths and
    `capture --paths` are documented as relative to the root, so an absolute path, a `~` (home)
    or a `..` that climbs out would capture something else than the service's state."""
    if path.startswith("/"):
        why = "is absolute"
    elif path.startswith("~"):
        why = "starts with ~"
    elif ".." in path.split("/"):
        why = "climbs out with .."
    else:
        return None
    return f"{path!r} {why}: state paths are relative to the service root"


class _Loader:
    def __init__(self, text: str, source: str, base_dir: Path | None):
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.locator = _Locator(text)
        # which entry of an array of tables ([[rollout.stage]]) problems are about, by table
        self.occurrence: dict[str, int] = {}
        self.defined_groups: set[str] = set()  # names in [groups], even ones with problems

    # -- problem reporting --------------------------------------------------------------

    def problem(self, table: str, key: str | None, message: str) -> None:
        line = self.locator.line_of(table, key, self.occurrence.get(table, 0)) if (table or key) else None
        where = self.source + (f":{line}" if line else "")
        label = ".".join(p for p in (table, key) if p)
        self.problems.append(f"{where}: {'[' + label + '] ' if label else ''}{message}")

    def check_keys(self, table: str, data: dict, allowed: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(allowed)})"
                self.problem(table, key, f"unknown key {key!r}{suffix}")

    # -- typed getters --------------------------------------------------------------------

    def get(self, table: str, data: dict, key: str, kind: type | tuple, default: Any, what: str) -> Any:
        if key not in data:
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(table, key, f"expected {what}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(table, key, f"expected {what}, got {type(value).__name__} {value!r}")
            return default
        return value

    def text_value(self, table: str, data: dict, key: str, default: str | None, *, empty_ok=False) -> str | None:
        value = self.get(table, data, key, str, default, "a string")
        if value is not None and not empty_ok and key in data and not value.strip():
            self.problem(table, key, "must not be empty")
            return default
        return value

    def ssh_value(self, table: str, data: dict, key: str, default: str | None) -> str | None:
        """A value that reaches an ssh command line (host, user, proxy_jump): never an option.

        ssh reads a destination or `-J` hop starting with `-` as an option (`-oProxyCommand=...`
        runs a command); whitespace or control characters split or forge arguments and lines."""
        value = self.text_value(table, data, key, default)
        if value is None or key not in data or value == default:
            return value
        bad_char = next((c for c in value if c.isspace() or ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f), None)
        if bad_char is not None:
            self.problem(table, key, f"must not contain whitespace or control characters (found {bad_char!r})")
            return default
        if value.startswith("-"):
            self.problem(table, key, f"must not start with '-' (ssh would read {value[:40]!r} as an option)")
            return default
        if key == "proxy_jump":
            hop = _JUMP_RE.match(value)
            if not hop or not 1 <= int(hop.group(3) or 22) <= 65535 or hop.group(2).startswith("-"):
                self.problem(table, key, f"{value[:60]!r}: expected one jump host, [user@]host[:port]")
                return default
        return value

    def int_value(self, table: str, data: dict, key: str, default: int, low: int, high: int) -> int:
        value = self.get(table, data, key, int, default, "an integer")
        if not low <= value <= high:
            self.problem(table, key, f"must be between {low} and {high}, got {value}")
            return default
        return value

    def duration(self, table: str, data: dict, key: str, default: float, *, minimum: float = 0.0) -> float:
        if key not in data:
            return default
        try:
            seconds = parse_duration(data[key])
        except ValueError as exc:
            self.problem(table, key, str(exc))
            return default
        if seconds < minimum:
            self.problem(table, key, f"must be at least {minimum:g}s, got {data[key]!r}")
            return default
        return seconds

    def str_list(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        if key not in data:
            return ()
        value = data[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.problem(table, key, "expected a list of non-empty strings")
            return ()
        return tuple(value)

    def root_relative(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        """A list of paths inside the service root (see `root_relative_problem`)."""
        paths = self.str_list(table, data, key)
        problems = [p for p in map(root_relative_problem, paths) if p]
        for problem in problems:
            self.problem(table, key, problem)
        return () if problems else paths

    def table(self, data: dict, key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem("", key, f"expected a table [{key}], got {type(value).__name__}")
            return {}
        return value

    # -- sections ---------------------------------------------------------------------------

    def load(self, doc: dict) -> Fleet:
        self.check_keys("", doc, ("fleet", "ssh", "node", "groups", "tracks", "service", "sweep", "rollout",
                                  "alerts", "store"))
        fleet_t = self.table(doc, "fleet")
        self.check_keys("fleet", fleet_t, ("name", "nodes"))
        fleet_ok = isinstance(doc.get("fleet", {}), dict)
        name = self.text_value("fleet", fleet_t, "name", None)
        if name is None:
            if "name" not in fleet_t and fleet_ok:
                self.problem("fleet", None, "missing [fleet].name")
            name = "fleet"
        elif not NAME_RE.match(name):
            self.problem("fleet", "name", f"fleet name {name!r} may hold only letters, digits, '_', '.', '-'")
        ssh = self.load_ssh(self.table(doc, "ssh"))
        service = self.load_service(self.table(doc, "service"))
        sweep = self.load_sweep(self.table(doc, "sweep"))
        node_exprs = self.str_list("fleet", fleet_t, "nodes")
        if "nodes" not in fleet_t and fleet_ok:
            self.problem("fleet", None, "missing [fleet].nodes (a list of node-set expressions)")
        names = self.expand_nodes(node_exprs)
        groups_t = self.table(doc, "groups")
        members = self.load_groups(groups_t, names)
        tracks, track_of = self.load_tracks(self.table(doc, "tracks"), members)
        overrides = self.table(doc, "node")
        nodes = self.build_nodes(names, overrides, ssh, service, track_of, members)
        rollout = self.load_rollout(self.table(doc, "rollout"), members)
        from pltui.alerts import load_settings as load_alerts  # [alerts]: see pltui/alerts.py

        alerts = load_alerts(self, self.table(doc, "alerts"))
        store = self.load_store(self.table(doc, "store"))
        if self.problems:
            raise FleetError(self.problems)
        return Fleet(
            name=name,
            path=None,
            ssh=ssh,
            service=service,
            sweep=sweep,
            rollout=rollout,
            nodes=nodes,
            groups={g: e for g, e in groups_t.items() if isinstance(e, str)},
            tracks=tracks,
            group_members=members,
            alerts=alerts,
            store=store,
        )

    def load_ssh(self, t: dict) -> SSHSettings:
        keys = ("user", "port", "identity_file", "known_hosts", "host_key_policy", "connect_timeout",
                "command_timeout", "fanout", "handshakes", "proxy_jump", "config", "keepalive")
        self.check_keys("ssh", t, keys)
        d = SSHSettings()
        policy = self.text_value("ssh", t, "host_key_policy", d.host_key_policy)
        if policy not in HOST_KEY_POLICIES:
            self.problem("ssh", "host_key_policy", f"must be one of {', '.join(HOST_KEY_POLICIES)}, got {policy!r}")
            policy = d.host_key_policy
        fanout = self.int_value("ssh", t, "fanout", d.fanout, 1, 10000)
        return SSHSettings(
            user=self.ssh_value("ssh", t, "user", d.user),
            port=self.int_value("ssh", t, "port", 22, 1, 65535) if "port" in t else None,
            identity_file=self.path_value("ssh", t, "identity_file", d.identity_file),
            known_hosts=self.path_value("ssh", t, "known_hosts", d.known_hosts) or d.known_hosts,
            host_key_policy=policy,
            connect_timeout=self.duration("ssh", t, "connect_timeout", d.connect_timeout, minimum=0.1),
            command_timeout=self.duration("ssh", t, "command_timeout", d.command_timeout, minimum=0.1),
            fanout=fanout,
            handshakes=min(self.int_value("ssh", t, "handshakes", d.handshakes, 1, 10000), fanout),
            proxy_jump=self.jump_value("ssh", t, d.proxy_jump),
            config=self.path_value("ssh", t, "config", d.config),
            keepalive=self.duration("ssh", t, "keepalive", d.keepalive),
        )

    def jump_value(self, table: str, t: dict, default: str | None) -> str | None:
        """proxy_jump, checked as OpenSSH's ProxyJump (a hop starting with '-' would become an
        ssh option on the console's `ssh -J` command line)."""
        value = self.text_value(table, t, "proxy_jump", default)
        if value is not None and "proxy_jump" in t:
            why = check_jump(value)
            if why:
                self.problem(table, "proxy_jump", why)
                return default
        return value

    def path_value(self, table: str, t: dict, key: str, default: str | None) -> str | None:
        value = self.text_value(table, t, key, default)
        if value is None or key not in t:
            return value
        expanded = os.path.expanduser(value)
        if not os.path.isabs(expanded) and self.base_dir is not None:
            expanded = str(self.base_dir / expanded)
        return expanded

    def load_service(self, t: dict) -> ServiceSpec:
        keys = ("root", "version_file", "protocol_file", "protocol_command", "important", "logs", "state",
                "reboot_command", "monitor_interval", "process")
        self.check_keys("service", t, keys)
        d = ServiceSpec()
        if "protocol_file" in t and "protocol_command" in t:
            self.problem("service", "protocol_command", "give protocol_file or protocol_command, not both")
        protocol_command = self.text_value("service", t, "protocol_command", None)
        processes = []
        raw = t.get("process", [])
        if not isinstance(raw, list):
            self.problem("service", "process", "expected [[service.process]] entries")
            raw = []
        seen: set[str] = set()
        for index, entry in enumerate(raw):
            where = "service.process"
            self.occurrence[where] = index
            if not isinstance(entry, dict):
                self.problem(where, None, f"entry {index + 1} is not a table")
                continue
            self.check_keys(where, entry, ("name", "start", "pidfile", "stop", "reload", "stop_timeout"))
            pname = self.text_value(where, entry, "name", None)
            start = self.text_value(where, entry, "start", None)
            if pname is None:
                if "name" not in entry:  # else text_value reported it
                    self.problem(where, None, f"entry {index + 1} has no name")
                continue
            if not NAME_RE.match(pname):
                self.problem(where, "name", f"process name {pname!r} may hold only letters, digits, '_', '.', '-'")
                continue
            if pname in seen:
                self.problem(where, "name", f"duplicate process name {pname!r}")
                continue
            seen.add(pname)
            if start is None:
                self.problem(where, None, f"process {pname!r} has no start command")
                continue
            processes.append(ProcessSpec(
                name=pname,
                start=start,
                pidfile=self.text_value(where, entry, "pidfile", f".pltui/run/{pname}.pid") or f".pltui/run/{pname}.pid",
                stop=self.text_value(where, entry, "stop", None),
                reload=self.text_value(where, entry, "reload", None),
                stop_timeout=self.duration(where, entry, "stop_timeout", 10.0),
            ))
        return ServiceSpec(
            root=self.text_value("service", t, "root", d.root) or d.root,
            version_file=self.text_value("service", t, "version_file", d.version_file) or d.version_file,
            protocol_file=None if protocol_command else self.text_value("service", t, "protocol_file", d.protocol_file),
            protocol_command=protocol_command,
            important=self.str_list("service", t, "important"),
            logs=self.str_list("service", t, "logs"),
            state=self.root_relative("service", t, "state"),
            reboot_command=self.text_value("service", t, "reboot_command", None),
            monitor_interval=self.duration("service", t, "monitor_interval", d.monitor_interval, minimum=0.5),
            processes=tuple(processes),
        )

    def load_sweep(self, t: dict) -> SweepSettings:
        self.check_keys("sweep", t, ("interval", "checksum_interval", "full_checksum_interval", "quorum", "heal"))
        d = SweepSettings()
        quorum = self.get("sweep", t, "quorum", (int, float), d.quorum, "a fraction between 0 and 1")
        if not 0 <= quorum < 1:
            self.problem("sweep", "quorum", f"must be a fraction from 0 up to (not including) 1, got {quorum}")
            quorum = d.quorum
        heal = self.text_value("sweep", t, "heal", d.heal)
        if heal not in HEAL_POLICIES:
            self.problem("sweep", "heal", f"must be one of {', '.join(HEAL_POLICIES)}, got {heal!r}")
            heal = d.heal
        return SweepSettings(
            interval=self.duration("sweep", t, "interval", d.interval, minimum=1.0),
            checksum_interval=self.duration("sweep", t, "checksum_interval", d.checksum_interval, minimum=1.0),
            full_checksum_interval=self.duration("sweep", t, "full_checksum_interval", d.full_checksum_interval),
            quorum=float(quorum),
            heal=heal,
        )

    def load_store(self, t: dict) -> StoreSettings:
        self.check_keys("store", t, ("history",))
        d = StoreSettings()
        history = self.duration("store", t, "history", d.history)
        if 0 < history < 86400:
            self.problem("store", "history", f"must be 0 (keep everything) or at least 1d, got {t['history']!r}")
            history = d.history
        return StoreSettings(history=history)

    def expand_nodes(self, exprs: tuple[str, ...]) -> list[str]:
        from pltui.nodesets import NodeSetError, expand

        names: list[str] = []
        seen: dict[str, str] = {}
        duplicates: dict[tuple[str, str], list[str]] = {}
        for expr in exprs:
            if "@" in expr:
                self.problem("fleet", "nodes", f"{expr!r}: [fleet].nodes cannot use groups (@...); list node names")
                continue
            try:
                expanded = expand(expr)
            except NodeSetError as exc:
                self.problem("fleet", "nodes", str(exc))
                continue
            if not expanded:
                self.problem("fleet", "nodes", f"{expr!r} names no nodes")
            bad = [node for node in expanded if not NODE_NAME_RE.match(node)]
            if bad:
                self.problem("fleet", "nodes", f"{expr!r}: bad node name {bad[0]!r} (a host name: letters, digits, "
                             "'.', '-', '_', ':'; no spaces or control characters, not starting with '-')")
                continue
            for node in expanded:
                if node in seen:
                    duplicates.setdefault((seen[node], expr), []).append(node)
                    continue
                seen[node] = expr
                names.append(node)
        for (first, second), nodes in duplicates.items():
            where = f"(in {first!r} and {second!r})" if first != second else f"(twice in {first!r})"
            if len(nodes) == 1:
                self.problem("fleet", "nodes", f"duplicate node {nodes[0]!r} {where}")
            else:
                from pltui.nodesets import fold

                self.problem("fleet", "nodes", f"{len(nodes)} duplicate nodes {fold(nodes)!r} {where}")
        return names

    def load_groups(self, t: dict, names: list[str]) -> dict[str, tuple[str, ...]]:
        from pltui.nodesets import NodeSetError, resolve_groups

        exprs: dict[str, str] = {}
        self.defined_groups = set(t)
        for group, expr in t.items():
            if not NAME_RE.match(group):
                self.problem("groups", group, f"group name {group!r} may hold only letters, digits, '_', '.', '-'")
            elif group == "all":
                self.problem("groups", group, "'all' is built in (every node of the fleet) and cannot be redefined")
            elif not isinstance(expr, str) or not expr.strip():
                self.problem("groups", group, "expected a non-empty node-set expression string")
            else:
                exprs[group] = expr
        members: dict[str, tuple[str, ...]] = {"all": tuple(names)}
        try:
            resolved, errors = resolve_groups(exprs, names)
        except NodeSetError as exc:  # pragma: no cover - resolve_groups reports per group
            self.problem("groups", None, str(exc))
            return members
        for group, message in errors.items():
            self.problem("groups", group, message)
        known = set(names)
        for group, nodes in resolved.items():
            unknown = [n for n in nodes if n not in known]
            if unknown:
                hint = difflib.get_close_matches(unknown[0], names, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                self.problem("groups", group, f"names node(s) not in the fleet: {', '.join(unknown[:5])}{more}{suffix}")
            elif not nodes:
                self.problem("groups", group, "selects no nodes")
            chosen = set(nodes)
            members[group] = tuple(n for n in names if n in chosen)
        return members

    def load_tracks(self, t: dict, members: dict[str, tuple[str, ...]]):
        tracks: dict[str, tuple[str, ...]] = {}
        track_of: dict[str, str] = {}
        for track, groups in t.items():
            if not NAME_RE.match(track):
                self.problem("tracks", track, f"track name {track!r} may hold only letters, digits, '_', '.', '-'")
                continue
            if isinstance(groups, str):
                groups = [groups]
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                self.problem("tracks", track, "expected a list of group names")
                continue
            clashes: dict[str, list[str]] = {}
            for group in groups:
                if group not in members:
                    self.unknown_group("tracks", track, group, members)
                    continue
                for node in members[group]:
                    other = track_of.get(node)
                    if other is not None and other != track:
                        clashes.setdefault(other, []).append(node)
                    track_of[node] = track
            for other, nodes in clashes.items():
                if len(nodes) == 1:
                    self.problem("tracks", track, f"node {nodes[0]!r} is in two tracks: {other!r} and {track!r}")
                else:
                    from pltui.nodesets import fold

                    self.problem("tracks", track, f"{len(nodes)} nodes ({fold(nodes)}) are in two tracks: "
                                 f"{other!r} and {track!r}")
            tracks[track] = tuple(groups)
        return tracks, track_of

    def unknown_group(self, table: str, key: str, group: str, members: dict) -> None:
        if group in self.defined_groups:
            self.problem(table, key, f"group {group!r} cannot be used: its definition has problems")
            return
        hint = difflib.get_close_matches(group, list(members), n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.problem(table, key, f"unknown group {group!r}{suffix}")

    def build_nodes(self, names, overrides: dict, ssh: SSHSettings, service: ServiceSpec, track_of, members):
        groups_of: dict[str, list[str]] = {}
        for group, nodes in members.items():
            if group == "all":
                continue
            for node in nodes:
                groups_of.setdefault(node, []).append(group)
        for node in overrides:
            if node not in names:
                hint = difflib.get_close_matches(node, names, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                dotted = [n for n in names if n.startswith(node + ".")]
                if not hint and dotted:
                    suffix = f" (quote names with dots: [node.\"{dotted[0]}\"])"
                self.problem(f"node.{node}", None, f"override for {node!r}, which is not in [fleet].nodes{suffix}")
        nodes: dict[str, Node] = {}
        for name in names:
            o = overrides.get(name, {})
            where = f"node.{name}"
            if not isinstance(o, dict):
                self.problem(where, None, "expected a table")
                o = {}
            self.check_keys(where, o, ("host", "port", "user", "root", "identity_file", "proxy_jump"))
            nodes[name] = Node(
                name=name,
                host=self.ssh_value(where, o, "host", name) or name,
                port=self.int_value(where, o, "port", 22, 1, 65535) if "port" in o else ssh.port,
                user=self.ssh_value(where, o, "user", ssh.user),
                root=self.text_value(where, o, "root", service.root) or service.root,
                identity_file=self.path_value(where, o, "identity_file", ssh.identity_file),
                proxy_jump=self.jump_value(where, o, ssh.proxy_jump),
                track=track_of.get(name, DEFAULT_TRACK),
                groups=tuple(groups_of.get(name, ())),
            )
        return nodes

    def load_rollout(self, t: dict, members) -> RolloutSettings:
        self.check_keys("rollout", t, ("health_timeout", "keep_releases", "stage"))
        d = RolloutSettings()
        stages = []
        raw = t.get("stage", [])
        if not isinstance(raw, list):
            self.problem("rollout", "stage", "expected [[rollout.stage]] entries")
            raw = []
        seen: set[str] = set()
        for index, entry in enumerate(raw):
            where = "rollout.stage"
            self.occurrence[where] = index
            if not isinstance(entry, dict):
                self.problem(where, None, f"stage {index + 1} is not a table")
                continue
            self.check_keys(where, entry, ("name", "group", "batch", "parallel", "max_fail", "pause"))
            group = self.text_value(where, entry, "group", None)
            sname = self.text_value(where, entry, "name", group) or f"stage{index + 1}"
            if group is None:
                self.problem(where, None, f"stage {sname!r} has no group")
                continue
            if group not in members:
                self.unknown_group(where, "group", group, members)
                continue
            if sname in seen:
                self.problem(where, "name", f"duplicate stage name {sname!r}")
            seen.add(sname)
            batch = entry.get("batch", "100%")
            try:
                batch_t = parse_batches(batch)
            except ValueError as exc:
                self.problem(where, "batch", str(exc))
                batch_t = ("100%",)
            max_fail = entry.get("max_fail", 0)
            try:
                parse_budget(max_fail)
            except ValueError as exc:
                self.problem(where, "max_fail", str(exc))
                max_fail = 0
            stages.append(Stage(
                name=sname,
                group=group,
                batch=batch_t,
                parallel=self.int_value(where, entry, "parallel", 16, 1, 10000),
                max_fail=max_fail,
                pause=self.get(where, entry, "pause", bool, False, "true or false"),
            ))
        return RolloutSettings(
            health_timeout=self.duration("rollout", t, "health_timeout", d.health_timeout, minimum=0.1),
            keep_releases=self.int_value("rollout", t, "keep_releases", d.keep_releases, 1, 100),
            stages=tuple(stages),
        )


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$", re.ASCII)


def parse_batches(value: object) -> tuple[int | str, ...]:
    """Ansible `serial` style: a count, a percentage, or a list of them ("1, 5%, 25%, 100%")."""
    if isinstance(value, str) and "," in value:
        value = [v.strip() for v in value.split(",")]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("batch list is empty")
    out: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"bad batch size {item!r}")
        if isinstance(item, int):
            if item < 1:
                raise ValueError(f"batch size must be at least 1, got {item}")
            out.append(item)
        elif isinstance(item, str) and item.strip().isascii() and item.strip().isdigit():
            if int(item) < 1:
                raise ValueError(f"batch size must be at least 1, got {item!r}")
            out.append(int(item))
        elif isinstance(item, str) and _PERCENT.match(item):
            pct = float(_PERCENT.match(item).group(1))
            if not 0 < pct <= 100:
                raise ValueError(f"batch percentage must be in (0, 100], got {item!r}")
            out.append(f"{pct:g}%")
        else:
            raise ValueError(f"bad batch size {item!r} (use a count like 5, a percentage like \"25%\", or a list)")
    return tuple(out)


def parse_budget(value: object) -> tuple[str, float]:
    """A failure budget: ("count", n) or ("percent", p)."""
    if isinstance(value, bool):
        raise ValueError(f"bad failure budget {value!r}")
    if isinstance(value, int) and value >= 0:
        return ("count", float(value))
    if isinstance(value, str):
        if value.strip().isascii() and value.strip().isdigit():
            return ("count", float(value))
        match = _PERCENT.match(value)
        if match and 0 <= float(match.group(1)) <= 100:
            return ("percent", float(match.group(1)))
    raise ValueError(f"bad failure budget {value!r} (use a count like 2 or a percentage like \"10%\")")


def _syntax_error(exc: tomllib.TOMLDecodeError, source: str) -> str:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        message = message[: match.start()].strip()
        return f"{source}:{match.group(1)}:{match.group(2)}: TOML syntax error: {message}"
    return f"{source}: TOML syntax error: {message}"


def loads(text: str, source: str = "<fleet>", base_dir: Path | None = None) -> Fleet:
    """Load a fleet from TOML text; raise FleetError listing every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError([_syntax_error(exc, source)]) from None
    return _Loader(text, source, base_dir).load(doc)


def load(path: str | os.PathLike) -> Fleet:
    """Load a fleet file; raise FleetError (with every problem) on any trouble."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FleetError([f"{path}: cannot read fleet file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FleetError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    fleet = loads(text, str(path), path.resolve().parent)
    fleet.path = path.resolve()
    return fleet


def dumps(doc: dict) -> str:
    """TOML text for a document pltui writes (via tomli-w)."""
    import tomli_w

    return tomli_w.dumps(doc)


def _add_after_last_key(table, key: str, value: str) -> None:
    """tomlkit appends after a table's trailing blank lines and comments, which in a hand-written
    file introduce the *next* table: put the new key right after the last key instead."""
    body = table.value.body
    trailing = []
    while body and body[-1][0] is None:
        trailing.append(body.pop()[1])
    table.add(key, value)
    for item in reversed(trailing):
        table.add(item)


def save_group(path: str | os.PathLike, group: str, nodes_expr: str, *,
               check: Callable[[str], Any] | None = None) -> None:
    """Add or replace `[groups].group` in a fleet file, edited in place (tomlkit), atomically.

    The operator's comments, key order and layout survive: only the group's line changes (a
    replaced group keeps its trailing comment). The previous file is also kept as `<file>.bak`.
    The new text must load (`check`, by default `loads` with the file's name and directory)
    before anything is written; every failure is a FleetError. A symlinked fleet file is updated
    where it really lives, and the file keeps its permission bits.
    """
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    if not NAME_RE.match(group) or group == "all":
        raise FleetError([f"bad group name {group!r}: letters, digits, '_', '.', '-' only, and not 'all'"])
    path = Path(os.path.realpath(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise FleetError([f"{path}: cannot read fleet file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise FleetError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        tomllib.loads(text)  # the reference parser judges the syntax (and gives line:column)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError([_syntax_error(exc, str(path))]) from None
    try:
        doc = tomlkit.parse(text)
        groups = doc.get("groups")
        if groups is None:
            groups = tomlkit.table()
            doc["groups"] = groups
        if not isinstance(groups, dict):
            raise FleetError([f"{path}: [groups] is not a table"])
        if group in groups:
            groups[group] = nodes_expr  # tomlkit keeps the item's trailing comment
        else:
            _add_after_last_key(groups, group, nodes_expr)
        new_text = tomlkit.dumps(doc)
    except TOMLKitError as exc:
        raise FleetError([f"{path}: cannot edit the fleet file: {exc}"]) from None
    if check is None:
        loads(new_text, str(path), path.parent)  # never write a file that would not load
    else:
        check(new_text)
    backup = path.with_name(path.name + ".bak")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        backup.write_text(text, "utf-8")
        shutil.copymode(path, backup)
        tmp.write_text(new_text, "utf-8")
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise FleetError([f"{path}: cannot save group {group!r}: {exc.strerror or exc}"]) from None
    finally:
        tmp.unlink(missing_ok=True)
