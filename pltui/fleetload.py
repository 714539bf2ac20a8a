"""Loading a fleet file: each TOML table checked (`pltui.fleetcheck`) and built into the
dataclasses of `pltui.fleetmodel`; every problem is reported at once in one `FleetError`."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path

from pltui.fleetcheck import Checker, parse_batches, parse_budget
from pltui.fleetmodel import (
    DEFAULT_TRACK, HEAL_POLICIES, HOST_KEY_POLICIES, NAME_RE, NODE_NAME_RE, Fleet, FleetError, Node, ProcessSpec,
    RolloutSettings, ServiceSpec, SSHSettings, Stage, StoreSettings, SweepSettings,
)


class _Loader(Checker):
    """The section loaders: [fleet], [ssh], [service], [sweep], [store], nodes, [groups],
    [tracks], [node.*] overrides and [rollout]."""


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

    def load_service(self, t: dict) -> ServiceSpec:
        keys = ("root", "version_file", "protocol_file", "protocol_command", "important", "logs", "state",
                "reboot_command", "monitor_interval", "backoff_cap", "process")
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
            backoff_cap=self.duration("service", t, "backoff_cap", None, minimum=1.0),
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
        for group, group_nodes in members.items():
            if group == "all":
                continue
            for node in group_nodes:
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
