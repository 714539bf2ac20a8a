"""Host keys: known_hosts parsed once (and again when the file changes) and the host-key policy.

`strict` refuses an unknown or changed key; `accept-new` (as OpenSSH's
`StrictHostKeyChecking=accept-new`) accepts a host with no recorded key and records it only after
the connection succeeded, and still refuses a changed one (see SECURITY.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.public_key import get_default_certificate_algs, get_default_public_key_algs


class HostKeyError(Exception):
    """known_hosts cannot be used (the transport reports it as the node's `hostkey` trouble)."""


class HostKeys:
    """known_hosts, parsed once (and again when the file changes), with the host-key policy."""

    def __init__(self, path: str | os.PathLike, policy: str = "strict"):
        self.path = Path(os.path.expanduser(str(path)))
        self.policy = policy
        self._mtime: float | None = None
        self._known: asyncssh.SSHKnownHosts | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    def _load(self) -> asyncssh.SSHKnownHosts:
        now = time.monotonic()
        if self._known is not None and now - self._checked < 1.0:
            return self._known  # look at the file at most once a second, not per connection
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if self._known is None or mtime != self._mtime:
            self._mtime = mtime
            try:
                text = self.path.read_text("utf-8", errors="replace") if mtime is not None else ""
                self._known = asyncssh.import_known_hosts(text)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise HostKeyError(f"cannot parse known_hosts {self.path}: {exc}") from None
        return self._known

    def match(self, host: str, addr: str, port: int | None):
        known = self._load()
        result = known.match(host, addr, port)
        if not port or port == 22:
            return result
        # asyncssh looks a non-default port up again without it when no *trusted* key is
        # recorded for host:port, and so loses the @revoked keys recorded for host:port:
        # keep them (a revoked key must be refused, and never recorded under accept-new).
        parts: list[list[Any]] = [list(part) for part in result]
        for name in {host, addr} - {""}:
            exact = known.match(f"[{name}]:{port}", "", None)
            for index in (2, 4, 6):  # revoked keys, revoked certificates, revoked subjects
                parts[index] += [k for k in exact[index] if k not in parts[index]]
        return tuple(parts)

    def knows(self, host: str, port: int) -> bool:
        try:
            ipaddress.ip_address(host.partition("%")[0])
            addr = host
        except ValueError:
            addr = ""  # a host name is no address (asyncssh would try to parse it as one)
        keys = self.match(host, addr, port)
        return bool(keys[0] or keys[1])

    def host_key_algs(self, host: str, port: int) -> tuple[str, ...]:
        """Host key algorithms to offer: the types known_hosts holds for the host first, then all
        others (as OpenSSH does). asyncssh alone offers only the known types, so a node that now
        has keys of another type fails key exchange, which reads as a generic `error`; offered
        every type, the node presents its key and the known_hosts check reports `hostkey`."""
        try:
            trusted, cas = self.match(host, "", port)[:2]
        except (ValueError, HostKeyError):
            return ()  # an unreadable known_hosts is reported by the connection attempt itself
        if not trusted or cas:
            return ()  # nothing known (or CA-signed host keys): asyncssh's own choice
        first = list(dict.fromkeys(alg for key in trusted for alg in key.sig_algorithms))
        rest = [alg for alg in get_default_certificate_algs() + get_default_public_key_algs() if alg not in first]
        return tuple(alg.decode("ascii") for alg in first + rest)

    async def record(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Append a first-seen key (accept-new), as OpenSSH would write it."""
        async with self._lock:
            if self.knows(host, port):
                return
            pattern = host if port == 22 else f"[{host}]:{port}"
            line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
            self._known = None


class HostKeyClient(asyncssh.SSHClient):
    """Keeps the host key seen, and under accept-new accepts a key for a host with none recorded."""

    def __init__(self, host_keys: HostKeys, host: str, port: int):
        self.host_keys = host_keys
        self.host = host
        self.port = port
        self.new_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        # the name and port asyncssh looked up (ssh_config's HostName/Port/HostKeyAlias
        # applied): a first-seen key is recorded under them, where the next lookup goes
        self.host, self.port = host or self.host, port or self.port
        if self.host_keys.policy != "accept-new":
            return False
        if self.host_keys.knows(self.host, self.port):
            return False  # a known host presenting another key: never accepted
        self.new_key = key
        return True
