"""Simulated nodes: an in-process fleet of asyncssh servers whose commands are *real* shell commands.

Tests, the demo and benchmarks use it to get many SSH nodes on loopback without root or sshd::

    fleet = await SimFleet.start(24, tmp_path / "sim")
    fleet.write_fleet(tmp_path / "fleet.toml", service={...})
    await fleet.nodes["sim003"].set_mode("refuse")      # take a node down ...
    await fleet.nodes["sim003"].set_mode("ok")          # ... and up again, same port
    await fleet.stop()

Every node is an asyncssh server on 127.0.0.1 with its own port (chosen by the kernel and kept
for the fleet's lifetime), its own ed25519 host key and its own service root
``BASE/nodes/NAME/``. Public-key auth only, with the generated client key ``BASE/client_ed25519``;
``BASE/known_hosts`` lists ``[127.0.0.1]:PORT key`` for every node. An exec request runs
``/bin/sh -c COMMAND`` in the node root (``HOME`` = root) with stdin, stdout, stderr, EOF and the
exit status (or exit signal) carried over the channel, as sshd does; a shell request runs
``/bin/sh`` reading stdin. The SFTP subsystem serves the real file system; relative SFTP paths
are relative to the node root (as they are to ``$HOME`` with sshd).

Planted faults (`SimNode.mode`, changeable at any time with `SimNode.set_mode`):

``ok``              normal.
``refuse``          nothing listens: connect gets ECONNREFUSED (the port stays reserved by a
                    bound, non-listening socket, so "ok" again gets the same port back).
``silent``          TCP accepts, no SSH banner ever.
``banner-silence``  sends an SSH banner, then nothing.
``garbage``         authenticates, but every exec prints `GARBAGE` (binary, Rich markup, terminal
                    escapes, C1 bytes, fake probe lines) plus random bytes, then exits 0.
``slow``            every exec waits `SimNode.delay` seconds, then runs for real.
``hang``            every exec never produces output nor exits (until the client closes it).

Switching to refuse/silent/banner-silence drops the node's open connections, as a dead node
would; the exec-time modes apply to open connections from their next exec.

Like sshd, a command's exit is reported only after its stdout/stderr reach EOF (a background
child holding them open keeps the channel open). When the channel closes before the command
finished (client gone, timeout), the command's process group is killed. Every process a node
starts carries ``PLTUI_TESTFLEET=<token>`` in its environment; `SimFleet.stop` kills whatever
still carries it (e.g. a detached node monitor), so nothing lingers.

This module holds no pytest code: the demo uses it too. `pltui.demo.thread.SimFleetThread` runs
a fleet on its own event loop in a thread, for synchronous callers (a CLI run with subprocess, a
sync benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import secrets
import signal
import socket
import warnings
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Iterable, Mapping

import asyncssh

from pltui.demo.fleetfiles import (
    FleetFiles, fleet_document, known_hosts_entry, node_names, public_line, write_private_key, write_toml,
)
from pltui.demo.procs import MARKER_ENV, kill_marked, kill_pids, marked_pids, pid_alive, proc_stat, warn_if_few_fds

# Also importable from here (tests and the real-sshd rig use them with the simulated nodes).
__all__ = [
    "ACCEPT_ENV_PREFIXES", "GARBAGE", "HOST", "MARKER_ENV", "MODES", "FleetFiles", "SimFleet", "SimNode",
    "fleet_document", "kill_marked", "kill_pids", "known_hosts_entry", "marked_pids", "node_names", "pid_alive",
    "proc_stat", "public_line", "warn_if_few_fds", "write_private_key", "write_toml",
]
MODES = ("ok", "refuse", "silent", "banner-silence", "garbage", "slow", "hang")
_DROP_MODES = frozenset({"refuse", "silent", "banner-silence"})

HOST = "127.0.0.1"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Client environment passed through to commands, like a Debian sshd's `AcceptEnv LANG LC_*`
# (plus PLTUI_*); the real-sshd fleet is configured the same way.
ACCEPT_ENV_PREFIXES = ("LANG", "LC_", "PLTUI_")
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 pltui-sim\r\n"

#: What a node in "garbage" mode prints (followed by 64 random bytes) for any exec.
GARBAGE = (
    b"\x00\x01\x02\xfe\xff\xc3\x28 not utf-8 \xe2\x82\n"
    b"[/oops] [bold red]markup[/] [link=http://x]y[/link]\n"
    b"\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\x1b[31mred\x1b[0m\x9b31m\x9dC1\x9c\x7f\r\n"
    b"pltui-probe 1\n"
    b"proc other-node alive 1 running 0 - -\n"
    b"monitor alive 1 0\n"
    b"version \x1b[5mEVIL\x1b[0m [/]\n"
    b"file deadbeef ../../etc/passwd\n"
    b"end\n"
)


# --------------------------------------------------------------------------------------------
# One simulated node


class _RawProtocol(asyncio.Protocol):
    """silent / banner-silence: accept, optionally send a banner, then say nothing."""

    def __init__(self, node: "SimNode", banner: bytes | None):
        self.node = node
        self.banner = banner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.node._raw.add(transport)
        if self.banner:
            transport.write(self.banner)

    def data_received(self, data: bytes) -> None:
        pass  # swallow the client's banner and KEXINIT

    def connection_lost(self, exc) -> None:
        self.node._raw.discard(self.transport)


class _SimServer(asyncssh.SSHServer):
    """Tracks a node's SSH connections so faults can drop them."""

    def __init__(self, node: "SimNode"):
        self.node = node
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.node._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.node._conns.discard(self.conn)


class _SimSFTPServer(asyncssh.SFTPServer):
    """Real paths; relative ones resolve against the node root (sshd resolves them against $HOME)."""

    def __init__(self, chan, root: bytes):
        super().__init__(chan)
        self._root = root

    def map_path(self, path: bytes) -> bytes:
        return os.path.join(self._root, path) if path else self._root


class SimNode:
    """One simulated node. Attributes: name, host, port, root (Path), mode, delay, host_key,
    execs (exec/shell requests served so far), connections (open SSH connections)."""

    def __init__(self, fleet: "SimFleet", name: str, root: Path, host_key: asyncssh.SSHKey, delay: float):
        self.fleet = fleet
        self.name = name
        self.host = HOST
        self.port = 0
        self.root = root
        self.mode = "ok"
        self.delay = delay
        self.host_key = host_key
        self.execs = 0
        self._sock: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._raw: set[asyncio.BaseTransport] = set()
        self._sessions: set[asyncio.Task] = set()  # asyncssh owns them; we wait for them at stop
        self._options = self._make_options()

    def __repr__(self) -> str:
        return f"<SimNode {self.name} {self.host}:{self.port} mode={self.mode}>"

    @property
    def connections(self) -> int:
        return len(self._conns) + len(self._raw)

    # -- listener ---------------------------------------------------------------------------

    def _make_options(self) -> asyncssh.SSHServerConnectionOptions:
        options = asyncssh.SSHServerConnectionOptions(
            options=self.fleet._base_options,
            server_host_keys=[self.host_key],
            server_factory=lambda: _SimServer(self),
            process_factory=self._session,
            sftp_factory=lambda chan: _SimSFTPServer(chan, os.fsencode(self.root)),
        )
        options.proxy_command = None  # as asyncssh.listen() does for server options
        return options

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        if self.mode == "silent":
            return _RawProtocol(self, None)
        if self.mode == "banner-silence":
            return _RawProtocol(self, SSH_BANNER)
        return asyncssh.SSHServerConnection(asyncio.get_running_loop(), self._options)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    async def _listen(self) -> None:
        if self._server is not None:
            return
        if self._sock is None:
            self._sock = self._bind()
        self._sock.listen(512)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol_factory, sock=self._sock)

    async def _unlisten(self) -> None:
        """Stop listening but keep the port reserved by a bound, non-listening socket."""
        if self._server is not None:
            self._server.close()  # closes the listening socket
            self._server = None
            self._sock = None
        if self._sock is None:
            self._sock = self._bind()

    def drop_connections(self) -> None:
        """Abort every open connection to this node (what a crash looks like to clients)."""
        for conn in list(self._conns):
            conn.abort()
        for transport in list(self._raw):
            transport.abort()

    async def set_mode(self, mode: str, *, delay: float | None = None) -> None:
        """Plant a fault (or clear it with "ok"); see the module doc for the modes."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if delay is not None:
            self.delay = delay
        old, self.mode = self.mode, mode
        if mode in _DROP_MODES and old != mode:
            self.drop_connections()
        if mode == "refuse":
            await self._unlisten()
        else:
            await self._listen()

    def set_host_key(self, key: asyncssh.SSHKey | None = None) -> asyncssh.SSHKey:
        """Present another host key to new connections (known_hosts is NOT updated: use this
        for host-key-mismatch tests). Returns the new key; pass the old one back to restore."""
        self.host_key = key or asyncssh.generate_private_key("ssh-ed25519")
        self._options = self._make_options()
        return self.host_key

    async def _close(self) -> list[Awaitable[Any]]:
        """Close the listener and abort connections; return what to wait for."""
        conns = list(self._conns)
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            self._server = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None
        return [conn.wait_closed() for conn in conns] + list(self._sessions)

    # -- sessions ---------------------------------------------------------------------------

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        self.execs += 1
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        closed = asyncio.ensure_future(process.channel.wait_closed())
        try:
            if process.subsystem:
                process.stderr.write(f"subsystem {process.subsystem!r} not supported\n".encode())
                process.exit(1)
                return
            mode = self.mode
            if mode == "hang":
                await closed
                return
            if mode == "slow":
                await asyncio.wait({closed}, timeout=self.delay)
                if closed.done():
                    return
            if mode == "garbage":
                process.stdout.write(GARBAGE + os.urandom(64) + b"\n")
                process.stderr.write(b"\x1b[2J[/err]\x9b\n")
                process.exit(0)
                return
            await self._run(process, closed)
        except (OSError, asyncssh.Error):
            pass  # the client went away mid-write; nothing to report to
        finally:
            closed.cancel()
            self._sessions.discard(task)

    def _env(self, process: asyncssh.SSHServerProcess) -> dict[str, str]:
        env = {
            "HOME": str(self.root),
            "PATH": DEFAULT_PATH,
            "SHELL": "/bin/sh",
            "USER": process.get_extra_info("username") or self.fleet.user,
            "LOGNAME": process.get_extra_info("username") or self.fleet.user,
            "PLTUI_SIM_NODE": self.name,
            MARKER_ENV: self.fleet.token,
        }
        for key, value in (process.env or {}).items():
            if isinstance(key, str) and isinstance(value, str) and key.startswith(ACCEPT_ENV_PREFIXES) \
                    and key != MARKER_ENV:
                env[key] = value
        return env

    async def _run(self, process: asyncssh.SSHServerProcess, closed: asyncio.Future) -> None:
        argv = ["/bin/sh", "-c", process.command] if process.command is not None else ["/bin/sh"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.root, env=self._env(process), start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            process.stderr.write(f"sim {self.name}: cannot run /bin/sh: {exc}\n".encode())
            process.exit(127)
            return
        pump_in = asyncio.ensure_future(_pump_to_pipe(process.stdin, proc.stdin))
        finished = asyncio.ensure_future(asyncio.gather(
            _pump_to_channel(proc.stdout, process.stdout),
            _pump_to_channel(proc.stderr, process.stderr),
            proc.wait(),
        ))
        try:
            await asyncio.wait({finished, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not finished.done():
                return  # channel closed first: the finally kills the process group
            rc = proc.returncode
            if rc is not None and rc < 0:
                try:
                    name = signal.Signals(-rc).name.removeprefix("SIG")
                except ValueError:
                    name = "KILL"
                process.exit_with_signal(name)
            else:
                process.exit(rc or 0)
        finally:
            pump_in.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(proc.wait(), 5)
            finished.cancel()
            for task in (pump_in, finished):
                with contextlib.suppress(BaseException):
                    await task


async def _pump_to_channel(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (OSError, asyncssh.Error):
        # channel gone: keep draining so the command never blocks on a full pipe
        while await reader.read(65536):
            pass


async def _pump_to_pipe(reader: asyncssh.SSHReader, pipe: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            pipe.write(data)
            await pipe.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


class SimFleet(FleetFiles):
    """N simulated nodes in this process. Build with ``await SimFleet.start(n, base_dir)``.

    Attributes: base_dir, nodes (name -> SimNode, in order), names, user, token,
    client_key (asyncssh key), client_key_path, known_hosts_path, fleet_path (set by
    write_fleet).
    """

    DEFAULT_NAME = "simfleet"

    def __init__(self, base_dir: Path, user: str):
        self.base_dir = base_dir
        self.user = user
        self.token = secrets.token_hex(8)
        self.nodes: dict[str, SimNode] = {}
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = base_dir / "client_ed25519"
        self.known_hosts_path = base_dir / "known_hosts"
        self.fleet_path: Path | None = None
        self._known_hosts: asyncssh.SSHKnownHosts | None = None
        # shared settings; each node derives its own options with its host key
        self._base_options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[self.client_key],  # placeholder, replaced per node
            authorized_client_keys=asyncssh.import_authorized_keys(public_line(self.client_key) + "\n"),
            encoding=None,
            gss_host=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            login_timeout=30,
            keepalive_interval=0,
        )

    @classmethod
    async def start(
        cls,
        n: int,
        base_dir: str | os.PathLike,
        *,
        prefix: str = "sim",
        modes: Mapping[str, str] | None = None,
        delay: float = 2.0,
        shared_host_key: bool = False,
        user: str | None = None,
    ) -> "SimFleet":
        """Start n nodes named `prefix001`... under base_dir (created if needed).

        modes: initial fault per node name (default "ok"); delay: seconds for "slow" nodes;
        shared_host_key: one host key for all nodes (faster for huge fleets; default per node);
        user: the user name written to fleet files (any name authenticates; default: current).
        """
        if n < 1:
            raise ValueError("a fleet needs at least one node")
        warn_if_few_fds(n + 64)
        base_dir = Path(base_dir).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        fleet = cls(base_dir, user or getpass.getuser())
        write_private_key(fleet.client_key, fleet.client_key_path)
        shared = asyncssh.generate_private_key("ssh-ed25519") if shared_host_key else None
        try:
            for name in node_names(prefix, n):
                root = base_dir / "nodes" / name
                root.mkdir(parents=True, exist_ok=True)
                key = shared or asyncssh.generate_private_key("ssh-ed25519")
                fleet.nodes[name] = SimNode(fleet, name, root, key, delay)
            unknown = set(modes or ()) - set(fleet.nodes)
            if unknown:
                raise ValueError(f"modes for unknown nodes: {', '.join(sorted(unknown))}")
            for name, node in fleet.nodes.items():
                mode = (modes or {}).get(name, "ok")
                if mode not in MODES:
                    raise ValueError(f"unknown mode {mode!r} for {name}; one of {', '.join(MODES)}")
                node.mode = mode
                if mode == "refuse":
                    await node._unlisten()
                else:
                    await node._listen()
            fleet.write_known_hosts()
        except BaseException:
            await fleet.stop()
            raise
        return fleet

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, n: int, base_dir: str | os.PathLike, **kwargs: Any) -> AsyncIterator["SimFleet"]:
        """``async with SimFleet.running(5, tmp) as fleet:`` -- start, then always stop."""
        fleet = await cls.start(n, base_dir, **kwargs)
        try:
            yield fleet
        finally:
            await fleet.stop()

    async def set_modes(self, mode: str, names: Iterable[str] | None = None, **kwargs: Any) -> None:
        """set_mode on several nodes (all by default)."""
        for name in (self.names if names is None else names):
            await self.nodes[name].set_mode(mode, **kwargs)

    async def stop(self) -> None:
        """Close every listener and connection, then kill every process our nodes started."""
        waits: list[Awaitable[Any]] = []
        for node in self.nodes.values():
            waits += await node._close()
        if waits:  # let aborted connections and sessions run their cleanup (bounded)
            tasks = [asyncio.ensure_future(w) for w in waits]
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        left = await asyncio.to_thread(kill_marked, self.token)
        if left:
            warnings.warn(f"SimFleet.stop: processes {left} did not die", RuntimeWarning, stacklevel=2)
