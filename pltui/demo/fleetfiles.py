"""What clients of a test or demo fleet need: node names, keys, known_hosts lines, the fleet
file (`fleet_document`, `write_toml`) and `FleetFiles`, shared by SimFleet and the real-sshd rig."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import asyncssh


def node_names(prefix: str, n: int) -> list[str]:
    """`prefix001` .. `prefixNNN` (at least three digits, more when n needs them)."""
    width = max(3, len(str(n)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


def write_private_key(key: asyncssh.SSHKey, path: Path) -> None:
    """Write an OpenSSH private key (mode 0600) and its `.pub`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.chmod(path, 0o600)
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))


def public_line(key: asyncssh.SSHKey) -> str:
    """`ssh-ed25519 AAAA...` (no comment)."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def known_hosts_entry(host: str, port: int, key: asyncssh.SSHKey) -> str:
    where = host if port == 22 else f"[{host}]:{port}"
    return f"{where} {public_line(key)}\n"


def fleet_document(
    nodes: Iterable[Any],
    *,
    name: str,
    user: str,
    identity_file: Path,
    known_hosts: Path,
    service: Mapping[str, Any] | None = None,
    groups: Mapping[str, str] | None = None,
    tracks: Mapping[str, Any] | None = None,
    ssh_overrides: Mapping[str, Any] | None = None,
    rollout: Mapping[str, Any] | None = None,
    sweep: Mapping[str, Any] | None = None,
) -> dict:
    """The fleet-file document for nodes having .name/.host/.port/.root (see pltui.fleet)."""
    from pltui.nodesets import fold

    nodes = list(nodes)
    ssh = {
        "user": user,
        "identity_file": str(identity_file),
        "known_hosts": str(known_hosts),
        "host_key_policy": "strict",
        "connect_timeout": "5s",
        "command_timeout": "30s",
        "fanout": 64,
        "handshakes": 32,
    }
    ssh.update(ssh_overrides or {})
    doc: dict[str, Any] = {
        "fleet": {"name": name, "nodes": [fold(n.name for n in nodes)]},
        "ssh": ssh,
    }
    if service:
        doc["service"] = dict(service)
    if groups:
        doc["groups"] = dict(groups)
    if tracks:
        doc["tracks"] = dict(tracks)
    if sweep:
        doc["sweep"] = dict(sweep)
    if rollout:
        doc["rollout"] = dict(rollout)
    doc["node"] = {n.name: {"host": n.host, "port": n.port, "root": str(n.root)} for n in nodes}
    for n in nodes:
        if getattr(n, "user", None):  # a node with its own login user (SshdFleet shell nodes)
            doc["node"][n.name]["user"] = n.user
    return doc


def write_toml(path: str | os.PathLike, doc: dict) -> Path:
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(tomli_w.dumps(doc), "utf-8")
    os.replace(tmp, path)
    return path


class FleetFiles:
    """What both test fleets (SimFleet, SshdFleet) offer clients: names, known_hosts, connect
    options and a fleet file. Subclasses set nodes, user, client_key(_path), known_hosts_path,
    DEFAULT_NAME, and say which key each node's known_hosts line holds (`trusted_key`)."""

    DEFAULT_NAME = "fleet"
    nodes: dict
    fleet_path: Path | None
    _known_hosts: asyncssh.SSHKnownHosts | None

    @staticmethod
    def trusted_key(node: Any) -> asyncssh.SSHKey:
        return node.host_key

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    def write_known_hosts(self, path: str | os.PathLike | None = None) -> Path:
        """(Re)write known_hosts with each node's trusted key (all nodes, any mode)."""
        path = Path(path) if path else self.known_hosts_path
        path.write_text("".join(known_hosts_entry(n.host, n.port, self.trusted_key(n)) for n in self.nodes.values()))
        if path == self.known_hosts_path:
            self._known_hosts = None
        return path

    @property
    def known_hosts(self) -> asyncssh.SSHKnownHosts:
        """The generated known_hosts, parsed once (pass this, not the path, to asyncssh)."""
        if self._known_hosts is None:
            self._known_hosts = asyncssh.read_known_hosts(str(self.known_hosts_path))
        return self._known_hosts

    def connect_options(self, name: str, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect(**opts)`` to reach node `name` strictly."""
        node = self.nodes[name]
        opts: dict[str, Any] = dict(
            host=node.host, port=node.port, username=getattr(node, "user", None) or self.user, client_keys=[self.client_key],
            known_hosts=self.known_hosts, agent_path=None, gss_host=None, config=None,
            agent_forwarding=False, connect_timeout=5,
        )
        opts.update(overrides)
        return opts

    def write_fleet(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        service: Mapping[str, Any] | None = None,
        groups: Mapping[str, str] | None = None,
        tracks: Mapping[str, Any] | None = None,
        ssh_overrides: Mapping[str, Any] | None = None,
        rollout: Mapping[str, Any] | None = None,
        sweep: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a fleet file (tomli-w) for all nodes: strict host keys with the generated
        known_hosts, the client key, and per-node host/port/root overrides. The other tables are
        written as given. Sets and returns `fleet_path`."""
        doc = fleet_document(
            self.nodes.values(), name=name or self.DEFAULT_NAME, user=self.user,
            identity_file=self.client_key_path, known_hosts=self.known_hosts_path, service=service,
            groups=groups, tracks=tracks, ssh_overrides=ssh_overrides, rollout=rollout, sweep=sweep,
        )
        self.fleet_path = write_toml(path, doc)
        return self.fleet_path
