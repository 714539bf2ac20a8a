"""Streaming an exec's stdout into a sink, chunk by chunk, on the node's pooled connection: a
file of any size is never held whole in memory, and a stalled stream is noticed."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import asyncssh

from pltui.fleet import Node
from pltui.model import SSHState
from pltui.ssh import NodeError, Transport

STREAM_WINDOW = 8 << 20       # SSH channel window of a transfer


async def stream_exec(transport: Transport, node: Node, command: str, sink: Callable[[bytes], Awaitable[None]], *,
                      idle: Callable[[], float], input: bytes | None = None,
                      stderr_cap: int = 16384, what: str = "a transfer") -> tuple[int | None, bytes]:
    """Run `command` on a node on its pooled connection, handing stdout to `sink` chunk by chunk.

    No byte for `idle()` seconds (opening the channel and its close included) -> the node is
    asked to answer (`Transport.stalled`): NodeError(TIMEOUT) when it does, UNREACHABLE ("stopped
    answering during WHAT") with the connection aborted when it does not; the channel is closed
    (the node's command gets SIGPIPE/HUP; bound it on the node too). Every await on the node is
    bounded: `async with create_process` would wait for the channel's close without limit.
    Returns (exit status, stderr head). Connection trouble becomes NodeError; exceptions from
    `sink` propagate (channel closed).
    """
    async with transport.fanout, transport.using(node) as conn:
        proc = None
        try:
            try:
                # an 8 MiB window: a 2 MiB one caps a stream at 10 MB/s over a 200 ms round trip
                proc = await asyncio.wait_for(conn.create_process(command, encoding=None, stderr=asyncssh.PIPE,
                                                                  window=STREAM_WINDOW), idle())
            except (asyncio.TimeoutError, TimeoutError):
                raise _silent(await transport.stalled(node, conn, what, idle()), what, idle()) from None
            return await _pump(transport, node, conn, proc, sink, idle, input, stderr_cap, what)
        except NodeError:
            raise
        except asyncssh.ChannelOpenError as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"cannot open a session channel: {exc.reason}") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError, ConnectionError) as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"connection lost: {exc}") from None
        except asyncssh.Error as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"SSH error: {exc}") from None
        finally:
            if proc is not None:
                await transport.close_channel(node, conn, proc)


def _silent(error: NodeError, what: str, idle: float) -> NodeError:
    """A node that still answers but sent nothing: an idle stream, not an overall timeout."""
    if error.state == SSHState.TIMEOUT:
        return NodeError(SSHState.TIMEOUT, f"no data from the node for {idle:.0f}s during {what}")
    return error


async def _pump(transport: Transport, node: Node, conn, proc, sink: Callable[[bytes], Awaitable[None]],
                idle: Callable[[], float], input: bytes | None, stderr_cap: int,
                what: str) -> tuple[int | None, bytes]:
    """Feed stdin, hand stdout to `sink`, keep the head of stderr; each wait bounded by `idle()`."""
    err = bytearray()

    async def pump_err():
        while True:
            chunk = await proc.stderr.read(65536)
            if not chunk:
                return
            if len(err) < stderr_cap:
                err.extend(chunk[:stderr_cap - len(err)])

    async def feed():
        try:
            if input:
                proc.stdin.write(input)
            proc.stdin.write_eof()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    err_task = asyncio.ensure_future(pump_err())
    feed_task = asyncio.ensure_future(feed())
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(proc.stdout.read(1 << 20), idle())
            except (asyncio.TimeoutError, TimeoutError):
                raise _silent(await transport.stalled(node, conn, what, idle()), what, idle()) from None
            if not chunk:
                break
            await sink(chunk)
        try:
            await asyncio.wait_for(asyncio.shield(err_task), idle())
            await asyncio.wait_for(proc.wait_closed(), idle())
        except (asyncio.TimeoutError, TimeoutError):
            error = await transport.stalled(node, conn, f"the end of {what}", idle())
            if error.state == SSHState.TIMEOUT:
                error = NodeError(SSHState.TIMEOUT, "the node did not finish the command")
            raise error from None
    finally:
        for task in (err_task, feed_task):
            if not task.done():
                task.cancel()
        await asyncio.gather(err_task, feed_task, return_exceptions=True)
    return proc.exit_status, bytes(err)
