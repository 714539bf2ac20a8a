"""Deadlines for steps on a node, cleanup included, and the liveness check that tells a slow node
from one that stopped answering (see `pltui.ssh.Transport.stalled`).

A node frozen with SIGSTOP (or a hung kernel, or a link that drops every packet) keeps its TCP
connection open: asyncssh then waits without limit for channel opens, channel closes, SFTP
replies and `wait_closed()`. A cancelled SFTP call still awaits the node's reply while it unwinds
(a remote file's close), so cancelling is not enough: the connection must be aborted, which ends
every await pending on it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncssh

if TYPE_CHECKING:
    from pltui.fleet import Node
    from pltui.ssh import NodeError, Transport


async def answers(conn: asyncssh.SSHClientConnection, grace: float) -> bool:
    """Does the peer still answer on `conn`? An OpenSSH keepalive (what `ServerAliveInterval`
    sends) must get its reply, success or failure alike, within `grace` seconds."""
    request = getattr(conn, "_make_global_request", None)
    if request is None:  # pragma: no cover - an asyncssh without it: assume the worst
        return False
    try:
        await asyncio.wait_for(request(b"keepalive@openssh.com"), grace)
    except (asyncio.TimeoutError, TimeoutError, asyncssh.Error, OSError):
        return False
    return not conn.is_closed()


class StepDeadline:
    """The deadline of one `Transport.step`: an asyncio timeout plus the watchdog that, at the same
    moment, finds out whether the node still answers (and aborts its connection if not)."""

    def __init__(self, transport: "Transport", node: Node, what: str, timeout: float, idle: float | None = None):
        self.transport, self.node, self.what = transport, node, what
        self.loop = asyncio.get_running_loop()
        self.start = self.last = self._moved = self.loop.time()
        self.timeout = timeout
        self.idle = idle
        self.timer = asyncio.timeout(timeout)
        self._tasks: list[asyncio.Task] = []
        self._handle = self.loop.call_at(self._due(), self._watch)

    def _due(self) -> float:
        due = self.start + self.timeout
        return due if self.idle is None else min(due, self.last + self.idle)

    def _move(self) -> None:
        self._moved = self.loop.time()
        self.timer.reschedule(self._due())
        self._handle.cancel()
        self._handle = self.loop.call_at(self._due(), self._watch)

    def reschedule(self, timeout: float) -> None:
        """Make the step's whole budget `timeout` s (from its start)."""
        self.timeout = timeout
        self._move()

    def touch(self) -> None:
        """The node made progress (a transfer's bytes were acknowledged): with `idle`, the step
        fails only after `idle` s without any, so a frozen node is found by its silence long
        before a large transfer's whole budget is spent."""
        self.last = self.loop.time()
        if self.idle is not None and self.last - self._moved >= 0.25:  # cheap for per-block calls
            self._move()

    def _watch(self) -> None:
        conn = self.transport.pooled(self.node.name)
        silent = self.loop.time() - self.last
        waited = self.timeout if self.idle is None or silent < self.idle - 0.5 else self.idle
        self._tasks.append(asyncio.ensure_future(self.transport.stalled(self.node, conn, self.what, waited)))

    @property
    def fired(self) -> bool:
        return bool(self._tasks)

    async def verdict(self) -> "NodeError":
        if not self._tasks:
            self._handle.cancel()
            self._watch()
        return await self._tasks[0]

    async def finish(self) -> None:
        self._handle.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
