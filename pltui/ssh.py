"""SSH transport: one pooled asyncssh connection per node, bounded, timed, host keys verified.

- A connection per node is opened on first use and reused until it dies (then re-opened).
- `fanout` bounds concurrent node operations, `handshakes` bounds concurrent connects (sshd
  drops bursts of simultaneous handshakes), a per-node lock stops duplicate connects.
- Every stage is bounded: connect (TCP + banner + kex + auth) by `connect_timeout`, commands by
  `command_timeout` (the remote command is also bounded on the node with `timeout(1)` where it
  exists, since closing a channel does not kill it), output by a byte cap.
- Every await on the node is bounded, closing included: a node whose sshd is frozen (SIGSTOP,
  a hung kernel) keeps its TCP connection open, and asyncssh waits for a channel's close and for
  `wait_closed()` without limit. When a step's time is up, the node gets ANSWER_GRACE seconds to
  answer a keepalive: one that does is only slow (TIMEOUT, "did not finish within"); one that
  does not "stopped answering" (UNREACHABLE) and its connection is aborted, which ends every
  await pending on it. A frozen node so costs at most its step's timeout + ANSWER_GRACE
  (+ CLOSE_GRACE when a slow node's channel does not close).
- Host keys are checked against a pre-parsed known_hosts; `accept-new` records a first-seen key
  only after the connection succeeds and still refuses a changed one.
- Failures become `NodeError` with an `SSHState` class and a one-line sanitised message.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import asyncssh

from pltui.deadline import StepDeadline, answers
from pltui.fleet import Fleet, Node
from pltui.hostkeys import HostKeyClient, HostKeyError, HostKeys
from pltui.jumps import Hop, JumpPool, JumpSpecError, SshConfig, format_chain, parse_jump, resolve_chain
from pltui.limits import nofile_limit, raise_nofile_limit  # noqa: F401 (raise_nofile_limit: for entry points)
from pltui.model import SSHState
from pltui.probe import shell_path
from pltui.sanitize import clean_line

__all__ = ["ANSWER_GRACE", "CLOSE_GRACE", "NODE_GRACE", "ExecResult", "HostKeys", "NodeError", "StepDeadline",
           "Transport", "answers", "bounded", "raise_nofile_limit", "ssh_command_line"]

DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024
# File descriptors kept free for everything but pooled connections (the state database, SFTP
# downloads to local files, subprocesses, the event loop, the terminal).
FD_RESERVE = 128
NODE_GRACE = 2.0  # seconds the node-side bound (timeout(1)) runs past the command timeout
ANSWER_GRACE = 3.0  # seconds a node whose step ran out of time has to answer a keepalive
CLOSE_GRACE = NODE_GRACE + 1.0  # seconds we wait for a channel to close before aborting its connection
# AES-GCM first: with AES-NI it costs a fraction of asyncssh's per-packet chacha20-poly1305.
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                   "aes128-ctr", "aes192-ctr", "aes256-ctr"]


class NodeError(Exception):
    """Reaching or running on a node failed; `state` says how, the message says what."""

    def __init__(self, state: SSHState, message: str):
        self.state = state
        self.message = clean_line(message, 300)
        super().__init__(f"{state.value}: {self.message}")


@dataclass
class ExecResult:
    exit_status: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    elapsed: float
    sent: int = 0  # bytes of command line and stdin sent to the node (an OnRequest only if asked)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.truncated


class Transport:
    """Pooled SSH connections to one fleet's nodes."""

    def __init__(self, fleet: Fleet, *, connect_timeout: float | None = None, command_timeout: float | None = None):
        self.fleet = fleet
        s = fleet.ssh
        self.connect_timeout = connect_timeout or s.connect_timeout
        self.command_timeout = command_timeout or s.command_timeout
        self.host_keys = HostKeys(s.known_hosts, s.host_key_policy)
        # The open-file limit is raised by the entry point (pltui.cli.main), never here: it is
        # process-wide. Read it and size the pool to it.
        self.nofile, self.nofile_warning = nofile_limit(s.fanout * 2 + len(fleet.nodes) + FD_RESERVE + 128)
        # Each pooled connection holds a socket: under a low open-file limit keep fewer open (the
        # least recently used idle ones are closed, and reopened when needed) instead of failing
        # nodes with "Too many open files".
        self.pool_limit: int | None = None
        if 0 < self.nofile < len(fleet.nodes) + FD_RESERVE + 16:
            self.pool_limit = max(4, self.nofile - FD_RESERVE) if self.nofile > 2 * FD_RESERVE else max(4, self.nofile // 2)
            if self.nofile_warning:
                self.nofile_warning += (f"; keeping at most {self.pool_limit} connections open "
                                        f"(idle ones are closed and reopened as needed)")
        self.fanout = asyncio.Semaphore(min(s.fanout, self.pool_limit or s.fanout))
        self.handshakes = asyncio.Semaphore(s.handshakes)
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}  # least recently used first
        self._in_use: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._keys: dict[str, Sequence[asyncssh.SSHKeyPair]] = {}
        self._config = [s.config] if s.config else ()
        # Jump hosts: one shared connection per chain prefix, every hop opened by _open (fleet
        # host-key policy); a failed bastion fails its nodes at once for a while.
        self.ssh_config = SshConfig(self._config)
        self.jumps = JumpPool(self._open_hop, NodeError, retry_after=max(2.0, self.connect_timeout))
        self._jumps = self.jumps.conns  # chain prefix ("a", "a,b") -> connection

    # -- connections ------------------------------------------------------------------------

    def _client_keys(self, identity_file: str | None):
        if identity_file is None:
            return ()
        keys: Sequence[asyncssh.SSHKeyPair] | None = self._keys.get(identity_file)
        if keys is None:
            try:
                keys = asyncssh.load_keypairs([identity_file])
            except (OSError, ValueError, asyncssh.KeyImportError) as exc:
                raise NodeError(SSHState.AUTH, f"cannot load identity file {identity_file}: {exc}") from None
            self._keys[identity_file] = keys
        return keys

    def _options(self, node: Node) -> dict:
        options = dict(
            known_hosts=self.host_keys.match,
            connect_timeout=self.connect_timeout,
            keepalive_interval=self.fleet.ssh.keepalive or 0,
            keepalive_count_max=3,
            agent_forwarding=False,
            gss_host=None,
            x509_trusted_certs=None,
            config=self._config,
            encryption_algs=ENCRYPTION_ALGS,
        )
        if node.user:
            options["username"] = node.user
        keys = self._client_keys(node.identity_file)
        if keys:
            options["client_keys"] = keys
            options["agent_path"] = None
        return options

    async def _jump(self, node: Node) -> tuple[asyncssh.SSHClientConnection | None, tuple[Hop, ...]]:
        """The shared connection through which `node` is reached (None: directly) and the hops:
        the fleet file's proxy_jump, else ssh_config's ProxyJump (read here, so asyncssh never
        opens a bastion connection of its own per node)."""
        try:
            hops = resolve_chain(node.proxy_jump, node.host, node.user, node.port, self.ssh_config)
        except JumpSpecError as exc:
            raise NodeError(SSHState.ERROR, str(exc)) from None
        return await self.jumps.tunnel(hops), hops

    async def _open_hop(self, hop: Hop, tunnel, via: str) -> asyncssh.SSHClientConnection:
        """Open one jump host with the fleet's identity, host-key policy and timeouts; its user is
        the spec's, else ssh_config's for that host, else the fleet's."""
        user = hop.user or self.ssh_config.user(hop.host, hop.port) or self.fleet.ssh.user
        hop_node = Node(name=f"jump:{hop}", host=hop.host, port=hop.port, user=user, root="/",
                        identity_file=self.fleet.ssh.identity_file)
        return await self._open(hop_node, tunnel, via)

    async def _open(self, node: Node, tunnel, via: str = "") -> asyncssh.SSHClientConnection:
        port = node.port or 22  # for messages and known_hosts; asyncssh gets None as "default"
        client = HostKeyClient(self.host_keys, node.host, port)
        options = self._options(node)
        algs = self.host_keys.host_key_algs(node.host, port)
        if algs:
            options["server_host_key_algs"] = algs
        where = f"[{node.host}]:{port}" if ":" in node.host else f"{node.host}:{port}"
        if via:
            where += f" via {via}"
        try:
            async with self.handshakes:
                conn = await asyncio.wait_for(
                    # tunnel=None, never (): () lets asyncssh apply ssh_config's ProxyJump itself
                    asyncssh.connect(node.host, node.port or (), tunnel=tunnel,
                                     client_factory=lambda: client, **options),
                    self.connect_timeout + 1.0,
                )
        except HostKeyError as exc:
            raise NodeError(SSHState.HOSTKEY, str(exc)) from None
        except asyncssh.HostKeyNotVerifiable as exc:
            known = self.host_keys.knows(client.host, client.port)
            what = "host key CHANGED (possible attack; not trusted)" if known else "host key unknown"
            raise NodeError(SSHState.HOSTKEY, f"{what} for {where} ({exc.reason}); "
                            f"known_hosts: {self.host_keys.path}") from None
        except asyncssh.PermissionDenied as exc:
            raise NodeError(SSHState.AUTH, f"authentication denied for {node.user or 'default user'}@{where}: {exc.reason}") from None
        except ConnectionRefusedError:
            raise NodeError(SSHState.REFUSED, f"connection refused by {where}") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise NodeError(SSHState.UNREACHABLE, f"no SSH handshake with {where} within {self.connect_timeout:g}s") from None
        except socket.gaierror as exc:
            raise NodeError(SSHState.UNREACHABLE, f"cannot resolve {node.host}: {exc.strerror}") from None
        except asyncssh.DisconnectError as exc:
            if "host key" in str(exc.reason).lower():  # known_hosts holds only other key types
                raise NodeError(SSHState.HOSTKEY, f"no host key of a type known_hosts holds for {where} "
                                f"({exc.reason}): new node keys, or someone in the middle; known_hosts: "
                                f"{self.host_keys.path}") from None
            raise NodeError(SSHState.ERROR, f"{where} disconnected during handshake: {exc.reason}") from None
        except OSError as exc:
            raise NodeError(SSHState.UNREACHABLE, f"cannot reach {where}: {exc.strerror or exc}") from None
        except asyncssh.ChannelOpenError as exc:
            # the bastion could not forward to the node: classified like a direct attempt
            state = SSHState.REFUSED if "refused" in exc.reason.lower() else SSHState.UNREACHABLE
            raise NodeError(state, f"cannot reach {where}: {exc.reason}") from None
        except (asyncssh.Error, ValueError) as exc:
            raise NodeError(SSHState.ERROR, f"SSH handshake with {where} failed: {exc}") from None
        if client.new_key is not None:
            await self.host_keys.record(client.host, client.port, client.new_key)
        return conn

    async def connection(self, node: Node) -> asyncssh.SSHClientConnection:
        """The pooled connection to `node`, opened (or re-opened when dead) as needed."""
        conn = self._conns.get(node.name)
        if conn is not None and not conn.is_closed():
            self._conns[node.name] = self._conns.pop(node.name)  # most recently used last
            return conn
        lock = self._locks.setdefault(node.name, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node.name)
            if conn is not None and not conn.is_closed():
                return conn
            self._conns.pop(node.name, None)
            self._make_room()
            tunnel, hops = await self._jump(node)
            try:
                conn = await self._open(node, tunnel, format_chain(hops))
            except NodeError as exc:
                if tunnel is None or exc.state != SSHState.UNREACHABLE:
                    raise
                # no handshake through the bastion: the node, or a bastion that hangs?
                check = min(self.connect_timeout, 5.0)
                raise (await self.jumps.suspect(hops, node.host, node.port or 22, check)) or exc from None
            self._conns[node.name] = conn
            return conn

    def _make_room(self) -> None:
        """Under `pool_limit`, close the least recently used idle connections to make room for one."""
        if self.pool_limit is None:
            return
        for name in [n for n, c in self._conns.items() if c.is_closed()]:
            del self._conns[name]
        excess = len(self._conns) + 1 - self.pool_limit
        for name in list(self._conns):
            if excess <= 0:
                break
            if self._in_use.get(name):
                continue
            self._conns.pop(name).close()
            excess -= 1

    @asynccontextmanager
    async def using(self, node: Node) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """The node's connection, kept from being closed to make room while in use."""
        conn = await self.connection(node)
        self._in_use[node.name] = self._in_use.get(node.name, 0) + 1
        try:
            yield conn
        finally:
            left = self._in_use[node.name] - 1
            if left:
                self._in_use[node.name] = left
            else:
                del self._in_use[node.name]

    def drop(self, node_name: str) -> None:
        """Forget (and close) the pooled connection of a node, e.g. after an error."""
        conn = self._conns.pop(node_name, None)
        if conn is not None:
            conn.abort()

    def discard(self, node_name: str, conn: asyncssh.SSHClientConnection) -> None:
        """Abort `conn` and forget it if it is still the node's pooled one (not a newer one).
        Aborting ends every await pending on it (channel closes, SFTP replies) at once."""
        if self._conns.get(node_name) is conn:
            del self._conns[node_name]
        conn.abort()

    async def stalled(self, node: Node, conn: asyncssh.SSHClientConnection | None, what: str,
                      waited: float) -> NodeError:
        """The error for a step on `node` whose time (`waited` s) is up, naming the true cause.

        The node gets ANSWER_GRACE s to answer a keepalive on the step's connection. One that
        answers is only slow: TIMEOUT. One that does not stopped answering (frozen sshd, hung
        kernel, a link that drops packets): its connection is aborted, so nothing waits on it
        any longer, and the error is UNREACHABLE (not worth a retry on the same timeout)."""
        if conn is not None and not conn.is_closed() and await answers(conn, ANSWER_GRACE):
            return NodeError(SSHState.TIMEOUT, f"{what} did not finish within {waited:g}s")
        if conn is not None:
            self.discard(node.name, conn)
        return NodeError(SSHState.UNREACHABLE, f"node stopped answering during {what} (no reply in {waited:g}s)")

    async def close_channel(self, node: Node, conn: asyncssh.SSHClientConnection, channel) -> None:
        """Close a process or SFTP session and wait CLOSE_GRACE s at most for the node to confirm;
        past that its connection is aborted (a frozen node never confirms)."""
        if conn.is_closed():
            return
        try:
            if hasattr(channel, "exit"):
                channel.exit()
            else:
                channel.close()
            await asyncio.wait_for(channel.wait_closed(), CLOSE_GRACE)
        except (asyncio.TimeoutError, TimeoutError):
            self.discard(node.name, conn)
        except (asyncssh.Error, OSError):
            pass

    async def close(self) -> None:
        """Close every connection, each given 2 s (together, not one after another) to close
        cleanly before it is aborted."""
        conns = list(self._conns.values()) + list(self._jumps.values())
        self._conns.clear()
        self._jumps.clear()

        async def one(conn) -> None:
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                conn.abort()

        await asyncio.gather(*(one(c) for c in conns))

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._conns.values() if not c.is_closed())

    # -- commands ---------------------------------------------------------------------------

    async def run(
        self,
        node: Node,
        command: str,
        *,
        input: bytes | OnRequest | None = None,
        timeout: float | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
        bound_on_node: bool = True,
        what: str = "the command",
    ) -> ExecResult:
        """Run `command` (a shell command line; quote its arguments!) on a node.

        Raises NodeError on connection trouble or timeout (`what` names the step in the message).
        The timeout covers everything: opening the channel, the command, and closing (plus the
        grace `stalled` gives the node to show it still answers). A non-zero exit is not an error.
        """
        timeout = timeout or self.command_timeout
        if bound_on_node:
            # The node stops the command a little *after* our own timeout: our timer starts only
            # once the command runs there, so with equal limits the node often won the race and
            # a hung command came back as a cut-off answer (a probe: "garbled, truncated")
            # instead of a timeout.
            command = bounded(command, timeout + NODE_GRACE)
        async with self.fanout:
            for attempt in (1, 2):
                reused = self._is_pooled(node.name)
                started = time.monotonic()
                launched: list[bool] = []
                try:
                    async with self.using(node) as conn:
                        return await self._exec(node, conn, command, input, timeout, max_output, started,
                                                launched, what)
                except NodeError:
                    raise
                except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError,
                        BrokenPipeError, ConnectionError) as exc:
                    self.drop(node.name)
                    if reused and attempt == 1 and not launched:
                        # A pooled connection that died while idle: the command never started, so
                        # reconnect once. Once it was launched it may have run (partly): never
                        # run it a second time.
                        continue
                    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
                    raise NodeError(SSHState.ERROR, f"connection lost while running a command: {reason}") from None
                except asyncssh.Error as exc:
                    self.drop(node.name)
                    raise NodeError(SSHState.ERROR, f"SSH error: {exc}") from None
            raise AssertionError("unreachable")  # pragma: no cover

    def pooled(self, name: str) -> asyncssh.SSHClientConnection | None:
        """The node's pooled connection (None when there is none)."""
        return self._conns.get(name)

    def _is_pooled(self, name: str) -> bool:
        conn = self._conns.get(name)
        return conn is not None and not conn.is_closed()

    async def _exec(self, node, conn, command, input, timeout, max_output, started, launched: list,
                    what: str) -> ExecResult:
        """One command on `conn`, every await on the node inside `timeout` (channel open and close
        included; `async with create_process` would wait for the close without limit)."""
        out = bytearray()
        err = bytearray()
        truncated = False
        proc: asyncssh.SSHClientProcess | None = None

        sent = len(command.encode())
        first = asyncio.Event()  # stdout's first bytes (or its end) arrived: an OnRequest decides

        async def pump(stream, buf: bytearray, cap: int):
            nonlocal truncated
            while True:
                chunk = await stream.read(65536)
                if not chunk:
                    first.set()
                    return
                assert proc is not None  # the pumps start once the process exists
                if stream is proc.stdout and isinstance(input, OnRequest) and len(buf) + len(chunk) >= len(input.marker):
                    first.set()
                room = cap - len(buf)
                if room > 0:
                    buf += chunk[:room]
                if len(chunk) > room:
                    truncated = True
                    proc.close()  # stop an endless talker; what we have is kept
                    return

        async def feed():
            nonlocal sent
            try:
                if isinstance(input, OnRequest):
                    await first.wait()
                    if out.startswith(input.marker):
                        proc.stdin.write(input.data)
                        sent += len(input.data)
                elif input:
                    proc.stdin.write(input)
                    sent += len(input)
                proc.stdin.write_eof()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command exited without reading its input: its status says the rest

        try:
            async with asyncio.timeout(timeout):
                proc = await conn.create_process(command, encoding=None, stderr=asyncssh.PIPE)
                launched.append(True)  # the exec request was accepted: the command runs on the node
                await asyncio.gather(feed(), pump(proc.stdout, out, max_output),
                                     pump(proc.stderr, err, min(max_output, 65536)))
                if not truncated:
                    await proc.wait_closed()
        except (asyncio.TimeoutError, TimeoutError):
            error = await self.stalled(node, conn, what, timeout)
            if proc is not None:
                await self.close_channel(node, conn, proc)
            raise error from None
        except BaseException:
            if proc is not None:
                await self.close_channel(node, conn, proc)
            raise
        if truncated:
            await self.close_channel(node, conn, proc)
        if isinstance(input, OnRequest) and out.startswith(input.marker):
            del out[:len(input.marker)]
        return ExecResult(
            exit_status=None if truncated else proc.exit_status,
            stdout=bytes(out),
            stderr=bytes(err),
            truncated=truncated,
            elapsed=time.monotonic() - started,
            sent=sent,
        )

    @asynccontextmanager
    async def sftp(self, node: Node) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP session on the node's pooled connection. Callers bound it with `step()`: its
        close is bounded here (`async with start_sftp_client()` would wait for it without limit)."""
        async with self.fanout, self.using(node) as conn:
            client = None
            try:
                client = await conn.start_sftp_client()
                yield client
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
                self.drop(node.name)
                raise NodeError(SSHState.ERROR, f"connection lost during file transfer: {exc}") from None
            except asyncssh.ChannelOpenError as exc:
                raise NodeError(SSHState.ERROR, f"cannot start SFTP: {exc.reason}") from None
            finally:
                if client is not None:
                    await self.close_channel(node, conn, client)

    @asynccontextmanager
    async def step(self, node: Node, what: str, timeout: float,
                   idle: float | None = None) -> AsyncIterator["StepDeadline"]:
        """Bound a step on `node` (SFTP transfers, several awaits) to `timeout` s, cleanup included.

        At the deadline the body is cancelled, as under `asyncio.timeout`; but cancelled SFTP calls
        still await the node's replies while they unwind (a remote file's close), and a frozen
        node never sends them. So at the same moment a watchdog asks the node to answer
        (`stalled`): when it does not, its connection is aborted, which ends those awaits. The
        step then raises the NodeError `stalled` made (TIMEOUT or UNREACHABLE). The yielded
        deadline can be moved once the step knows its size (`reschedule`); with `idle`, the step
        also ends after `idle` s without a `touch()` (progress)."""
        deadline = StepDeadline(self, node, what, timeout, idle)
        try:
            async with deadline.timer:
                yield deadline
        except (asyncio.TimeoutError, TimeoutError):
            raise await deadline.verdict() from None
        except Exception:
            if deadline.fired:  # the watchdog aborted the connection: the cleanup's errors follow from it
                raise await deadline.verdict() from None
            raise
        finally:
            await deadline.finish()

    async def probe_connect(self, node: Node) -> float:
        """Connect (or reuse) and return the handshake latency in milliseconds."""
        started = time.monotonic()
        async with self.fanout:
            await self.connection(node)
        return (time.monotonic() - started) * 1000


@dataclass(frozen=True)
class OnRequest:
    """Input a command gets only if it asks for it, by printing `marker` first on stdout (the
    installed probe: the node sends the marker only when it lacks the expected probe, so a sweep
    sends the body over the same channel instead of on every probe). The marker is removed from
    the output."""

    marker: bytes
    data: bytes


def bounded(command: str, timeout: float) -> str:
    """Wrap a command so the node itself stops it after `timeout` (+ a grace), where timeout(1) exists."""
    limit = max(1, int(timeout + 0.999))
    inner = shlex.quote(command)
    return (f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {limit} /bin/sh -c {inner}; "
            f"else exec /bin/sh -c {inner}; fi")


def interactive_command(root: str) -> str:
    """cd into the service root (a `~/` root expanded on the node, not quoted into a directory
    literally named `~`) or say why not, then the operator's login shell."""
    where = shell_path(root)
    return (f"cd {where} || printf 'pltui: cannot enter the service root %s; staying in %s\\n' "
            f"{where} \"$PWD\" >&2; exec \"${{SHELL:-/bin/sh}}\" -l")


def ssh_command_line(fleet: Fleet, node: Node, log_file: str | None = None) -> list[str]:
    """argv for an interactive OpenSSH session into `node`'s service root with the fleet's
    settings; `--` ends ssh's options before the destination (values were validated when the
    fleet file loaded). `log_file`: ssh's own messages go there (`-E`), so a face can say why."""
    argv = ["ssh", "-o", f"UserKnownHostsFile={os.path.expanduser(fleet.ssh.known_hosts)}",
            "-o", "StrictHostKeyChecking=" + ("accept-new" if fleet.ssh.host_key_policy == "accept-new" else "yes"),
            "-o", "ForwardAgent=no", "-t"]
    if log_file:
        argv += ["-E", log_file]
    if node.port:
        argv += ["-p", str(int(node.port))]
    if node.identity_file:
        argv += ["-i", node.identity_file]
    if node.user:
        argv += ["-l", node.user]
    if node.proxy_jump:
        hops = parse_jump(node.proxy_jump)  # validated when the fleet file was loaded
        argv += ["-J", format_chain(hops)] if hops else ["-o", "ProxyJump=none"]
    if fleet.ssh.config:
        argv += ["-F", fleet.ssh.config]
    return argv + ["--", node.host, interactive_command(node.root)]
