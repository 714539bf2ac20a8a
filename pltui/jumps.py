"""Jump hosts (ProxyJump) as OpenSSH does them, with one shared connection per bastion.

Why a module of its own: asyncssh applies a ProxyJump it finds in ssh_config by itself, and
then opens one bastion connection *per node* and checks the bastion's host key with its own
defaults instead of the fleet's policy; its spec parser also breaks on IPv6 literals. pltui
therefore reads the ProxyJump itself (fleet file first, like ssh's `-J`, then ssh_config),
opens every hop through the Transport (fleet host-key policy, timeouts, error classes) and
passes `tunnel=` explicitly on every connect, so asyncssh never opens a hop of its own.

- `parse_jump("u@a:2222,[::1]:22")` -> hops; "none" -> no jump. Each hop is validated: no
  leading `-` (it would become an ssh option), no whitespace or control characters, a plain
  host name, IPv4 or (bracketed) IPv6 address, ports 1-65535.
- `resolve_chain` applies OpenSSH's rules: a ProxyJump written in the fleet file wins over
  ssh_config's, and the *first* hop's own ssh_config ProxyJump is followed (as the `ssh -W`
  OpenSSH runs for it would), with loops refused.
- `JumpPool` keeps one connection per chain prefix ("a", "a,b"), opened once under a per-prefix
  lock however many nodes wait for it, re-opened when it died, and remembers a failure for a
  few seconds so the nodes behind a dead bastion fail at once, with the bastion named.
"""

from __future__ import annotations

import asyncio
import getpass
import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from pltui.model import SSHState

MAX_HOPS = 10
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_USER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@$-]*")  # "me@corp": OpenSSH splits at the last @
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]+")


class JumpSpecError(ValueError):
    """A ProxyJump spec (or the ssh_config behind it) is not usable; the message says why."""


@dataclass(frozen=True)
class Hop:
    """One jump host: host name or address (IPv6 without brackets), optional port and user."""

    host: str
    port: int | None = None
    user: str | None = None

    def __str__(self) -> str:
        """OpenSSH form: user@host:port, IPv6 in brackets (`user@[fe80::1]:22`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.user}@{host}" if self.user else host
        return f"{text}:{self.port}" if self.port is not None else text


def format_chain(hops: tuple[Hop, ...] | list[Hop]) -> str:
    """The chain as OpenSSH's `-J`/ProxyJump writes it ("a,u@[::1]:2222")."""
    return ",".join(str(hop) for hop in hops)


def _bad(text: str, spec: str, why: str) -> JumpSpecError:
    where = f"{text!r}" if text == spec else f"{text!r} in {spec!r}"
    return JumpSpecError(f"bad jump host {where}: {why}")


def _port(text: str, part: str, spec: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _bad(part, spec, f"port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def _ipv6(text: str, part: str, spec: str) -> str:
    address, _, zone = text.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise _bad(part, spec, f"{text!r} is not an IPv6 address") from None
    if zone and not _ZONE_RE.fullmatch(zone):
        raise _bad(part, spec, f"bad IPv6 zone {zone!r}")
    return text


def parse_hop(part: str, spec: str | None = None) -> Hop:
    """One `[ssh://][user@]host[:port]` hop (host may be `[IPv6]`); JumpSpecError when bad."""
    spec = part if spec is None else spec
    if not part:
        raise _bad(part, spec, "empty hop")
    if any(ch.isspace() or ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in part):
        raise _bad(part, spec, "whitespace or control characters")
    text = part[6:] if part.startswith("ssh://") else part
    if text.startswith("-"):
        raise _bad(part, spec, "must not start with '-'")
    user, at, rest = text.rpartition("@")
    if at and not _USER_RE.fullmatch(user):
        raise _bad(part, spec, f"bad user name {user!r}")
    port = None
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise _bad(part, spec, "unclosed '['")
        if after:
            if not after.startswith(":"):
                raise _bad(part, spec, f"unexpected {after!r} after ']'")
            port = _port(after[1:], part, spec)
        if ":" in host:
            host = _ipv6(host, part, spec)
    elif rest.count(":") > 1:
        host = _ipv6(rest, part, spec)  # a bare IPv6 address: no port possible
    else:
        host, colon, port_text = rest.partition(":")
        if colon:
            port = _port(port_text, part, spec)
    if ":" not in host and not _HOST_RE.fullmatch(host):
        raise _bad(part, spec, f"bad host name {host!r}" if host else "no host name")
    return Hop(host, port, user or None)


def parse_jump(spec: str) -> tuple[Hop, ...]:
    """A ProxyJump spec ("a,b" chains, first hop first) as hops; "none" means no jump: ()."""
    if not isinstance(spec, str) or not spec:
        raise JumpSpecError("empty jump host spec")
    if spec.lower() == "none":
        return ()
    hops = tuple(parse_hop(part, spec) for part in spec.split(","))
    if len(hops) > MAX_HOPS:
        raise JumpSpecError(f"jump chain {spec!r} has {len(hops)} hops (at most {MAX_HOPS})")
    return hops


def check_jump(spec: str) -> str | None:
    """None when `spec` is a valid ProxyJump, else the one-line reason (for fleet-file checks)."""
    try:
        parse_jump(spec)
    except JumpSpecError as exc:
        return str(exc)
    return None


class SshConfig:
    """ssh_config lookups with the files asyncssh's `connect(config=...)` reads: the given
    paths, or `~/.ssh/config` when none is given (`()`), so hops and nodes resolve alike."""

    def __init__(self, paths: Any = ()):
        if paths == ():
            default = Path("~", ".ssh", "config").expanduser()
            paths = [default] if os.access(default, os.R_OK) else []
        self.paths = [Path(p) for p in (paths or [])]
        self._cache: dict[tuple, Any] = {}
        try:
            self._local_user = getpass.getuser()
        except (KeyError, OSError):
            self._local_user = "root"

    def lookup(self, host: str, user: str | None = None, port: int | None = None):
        """The parsed options that apply to `host` (asyncssh's SSHClientConfig)."""
        key = (host, user, port)
        found = self._cache.get(key)
        if found is None:
            from asyncssh.config import SSHClientConfig

            try:
                found = SSHClientConfig.load(None, self.paths, False, False, False, self._local_user,
                                             user or (), host, port or ())
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                where = ", ".join(map(str, self.paths)) or "ssh_config"
                raise JumpSpecError(f"cannot read ssh config {where}: {exc}") from None
            if len(self._cache) >= 256:
                self._cache.clear()  # nodes are looked up once per connect: keep hops, not 10,000 nodes
            self._cache[key] = found
        return found

    def proxy_jump(self, host: str, user: str | None = None, port: int | None = None) -> str | None:
        """The ProxyJump ssh_config gives `host` (None: none, or `ProxyJump none`)."""
        if not self.paths:
            return None
        value = self.lookup(host, user, port).get("ProxyJump")
        return value if isinstance(value, str) and value else None

    def user(self, host: str, port: int | None = None) -> str | None:
        """The User ssh_config gives `host`, if any."""
        if not self.paths:
            return None
        value = self.lookup(host, None, port).get("User")
        return value if isinstance(value, str) and value else None


def resolve_chain(spec: str | None, host: str, user: str | None, port: int | None,
                  config: SshConfig) -> tuple[Hop, ...]:
    """The hops to reach `host`: `spec` (fleet file, like `-J`) or else ssh_config's ProxyJump;
    then the first hop's own ssh_config ProxyJump, repeatedly, as OpenSSH does."""
    if spec is not None:
        hops = _parse_from(spec, "proxy_jump")
    else:
        found = config.proxy_jump(host, user, port)
        hops = _parse_from(found, f"ssh config ProxyJump for {host}") if found else ()
    seen = {str(hop) for hop in hops}
    while hops:
        first = hops[0]
        before = config.proxy_jump(first.host, first.user, first.port)
        if not before:
            break
        prefix = _parse_from(before, f"ssh config ProxyJump for {first.host}")
        names = [str(hop) for hop in prefix]
        if seen & set(names) or len(hops) + len(prefix) > MAX_HOPS:
            raise JumpSpecError(f"ProxyJump loop in ssh config: {first} is reached via {before}")
        seen.update(names)
        hops = prefix + hops
    return hops


def _parse_from(spec: str, origin: str) -> tuple[Hop, ...]:
    try:
        return parse_jump(spec)
    except JumpSpecError as exc:
        raise JumpSpecError(f"{origin}: {exc}") from None


Opener = Callable[[Hop, Any, str], Awaitable[Any]]  # (hop, tunnel or None, via label) -> connection


class JumpPool:
    """Shared connections to jump hosts, one per chain prefix, opened once and re-opened when dead.

    `opener(hop, tunnel, via)` opens one hop (raising `error_type(state, message)` on failure);
    the pool names the bastion in every failure it passes on to the nodes behind it.
    """

    def __init__(self, opener: Opener, error_type: type[Exception], retry_after: float = 5.0):
        self.conns: dict[str, Any] = {}
        self.opened = 0  # hop connections opened so far (tests count them)
        self.attempts = 0  # hop connections tried so far
        self._opener = opener
        self._error_type = error_type
        self._retry_after = retry_after
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[float, Exception]] = {}

    async def tunnel(self, hops: tuple[Hop, ...]):
        """The connection through which the target behind `hops` is reached (None: direct)."""
        if not hops:
            return None
        return await self._hop(hops, len(hops) - 1)

    async def _hop(self, hops: tuple[Hop, ...], index: int):
        key = format_chain(hops[:index + 1])
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self.conns.get(key)
            if conn is not None and not conn.is_closed():
                return conn
            self.conns.pop(key, None)
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < self._retry_after:
                raise failed[1]
            tunnel = await self._hop(hops, index - 1) if index else None
            via = format_chain(hops[:index])
            self.attempts += 1
            try:
                conn = await self._opener(hops[index], tunnel, via)
            except self._error_type as exc:
                error = self._bastion_error(hops[index], via, exc)
                self._failed[key] = (time.monotonic(), error)
                raise error from None
            self._failed.pop(key, None)
            self.opened += 1
            self.conns[key] = conn
            return conn

    async def suspect(self, hops: tuple[Hop, ...], host: str, port: int, timeout: float) -> Exception | None:
        """A target behind `hops` gave no handshake in time: is the last bastion alive? It is
        asked to open a channel to that target; an answer of any kind (even a refusal) means it
        is alive and the target is to blame (None). No answer within `timeout` means it hangs
        (e.g. SIGSTOPped: TCP stays open, keepalives take minutes): its connection is dropped
        and its failure remembered, so the nodes behind it fail at once, the bastion named."""
        key = format_chain(hops)
        async with self._locks.setdefault(key, asyncio.Lock()):
            conn = self.conns.get(key)
            if conn is None or conn.is_closed():
                failed = self._failed.get(key)
                return failed[1] if failed else None
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await conn.open_connection(host, port)
                writer.close()
                return None
            except (asyncio.TimeoutError, TimeoutError):
                pass
            except Exception:  # noqa: BLE001 - any answer (open failure, refusal) proves it alive
                return None
            self.conns.pop(key, None)
            conn.abort()
            via = format_chain(hops[:-1])
            name = f"bastion {hops[-1]}" + (f" (via {via})" if via else "")
            error = self._error_type(SSHState.UNREACHABLE, f"{name} unreachable: no answer within {timeout:g}s")
            self._failed[key] = (time.monotonic(), error)
            return error

    def forget_failures(self) -> None:
        """Try failed bastions again at the next use (an operator's explicit retry), instead of
        failing their nodes at once until `retry_after` has passed."""
        self._failed.clear()

    def _bastion_error(self, hop: Hop, via: str, exc: Exception) -> Exception:
        """The hop's failure as the nodes behind it report it: the bastion named, and a node
        state that does not blame the node (an unreachable bastion makes the node unreachable)."""
        state = getattr(exc, "state", SSHState.ERROR)
        message = getattr(exc, "message", str(exc))
        name = f"bastion {hop}" + (f" (via {via})" if via else "")
        if state == SSHState.REFUSED:
            return self._error_type(SSHState.UNREACHABLE, f"{name} unreachable: connection refused")
        if state in (SSHState.UNREACHABLE, SSHState.TIMEOUT):
            return self._error_type(SSHState.UNREACHABLE, f"{name} unreachable: {message}")
        return self._error_type(state, f"{name}: {message}")
