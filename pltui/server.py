"""The headless sweeper behind `pltui serve`: one process that owns a fleet's sweep lock, sweeps
on the fleet's intervals, heals per policy and writes the store. Consoles and CLI commands on
the same host follow it through the store and ask it for sweeps (`Engine.request_sweep`).

Made for systemd and cron: no terminal needed, one log line per event, SIGTERM/SIGINT cancel
the running sweep (what it found so far is already in the store), release the lock and end
the run cleanly; `once=True` makes one sweep and returns (cron).

Extra subscribers (metrics, alerts) attach through `ATTACH_HOOKS`: each is an
`async def attach(engine)` started as its own task beside the sweep loop once the lock is held,
and cancelled at shutdown. They consume `engine.subscribe()` events like any face.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from pltui.fleet import Fleet
from pltui.model import (
    Event,
    HealDone,
    NodeTransition,
    Notice,
    SweepFinished,
    SweepStarted,
)
from pltui.sanitize import clean_line
from pltui.store import StoreError, operator
from pltui.sweep import Engine

Attach = Callable[[Engine], Awaitable[None]]

# Started with the serving engine (after the lock is taken), e.g. metrics or alert exporters.
# The lead wires pltui.metrics / pltui.alerts here; tests may append their own.
ATTACH_HOOKS: list[Attach] = []


class ServeError(Exception):
    """The server cannot run (lock held by another sweeper, unusable state directory): one line."""


class EventLog:
    """One line per event, with a UTC timestamp, to a text stream (a file or stderr)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.failed: str | None = None

    def line(self, level: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = f"{stamp} {level} {clean_line(message, 1000)}\n"
        try:
            self.stream.write(text)
            self.stream.flush()
            self.failed = None
        except (OSError, ValueError) as exc:  # a full disk under the log file: the server goes on
            if self.failed is None and self.stream is not sys.stderr:
                self.failed = str(exc)
                sys.stderr.write(f"{stamp} error cannot write the log: {clean_line(str(exc), 200)}\n{text}")

    def event(self, event: Event) -> None:
        """Sweeps, notices, heals and node transitions; per-node updates stay in the store."""
        if isinstance(event, SweepStarted):
            kind = "checksum sweep" if event.checksums else "sweep"
            self.line("info", f"{kind} {event.sweep_id} started: {event.total} nodes")
        elif isinstance(event, SweepFinished):
            health = event.summary.get("health", {})
            counts = ", ".join(f"{health.get(k, 0)} {k}" for k in ("up", "degraded", "down", "unknown"))
            self.line("info", f"sweep {event.sweep_id} finished: {counts}")
        elif isinstance(event, Notice):
            self.line(event.level, (f"{event.node}: " if event.node else "") + event.message)
        elif isinstance(event, HealDone):
            self.line("info" if event.ok else "error", f"{event.node}: {event.message}")
        elif isinstance(event, NodeTransition):
            self.line("info", f"{event.node}: {event.kind}" + (f": {event.detail}" if event.detail else ""))


class Server:
    def __init__(self, fleet: Fleet, *, log: EventLog, state_dir=None, heal: str | None = None,
                 once: bool = False, checksums: bool = False, started: Callable[[], None] | None = None,
                 hooks: list[Attach] | None = None):
        self.fleet = fleet
        self.hooks = ATTACH_HOOKS + list(hooks or ())
        self.failed: str | None = None  # why a required hook ended the server
        self.log = log
        self.state_dir = state_dir
        self.heal = heal
        self.once = once
        self.checksums = checksums
        self.started = started  # called once the lock is held (e.g. to write a pid file)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the server to end (signal handlers call this)."""
        self._stop.set()

    async def _open_engine(self) -> Engine:
        engine = Engine(self.fleet, state_dir=self.state_dir, heal=self.heal)
        try:
            self._check(engine)
        except BaseException:
            await engine.close()
            raise
        return engine

    def _check(self, engine: Engine) -> None:
        """The store opens and takes writes, and the sweep lock is ours; else ServeError."""
        if engine.store is None:
            raise ServeError(f"cannot serve without the state database (followers read it): {engine.store_error}")
        if engine.store_notice:
            self.log.line("warning", engine.store_notice)
        if not engine.lock.try_acquire():
            raise ServeError(f"fleet {self.fleet.name} is already swept by {engine.lock.holder()} "
                             f"(lock {engine.lock.path})")
        try:
            # a server that cannot write the store serves nobody: a full or read-only state
            # directory is refused now, in one line, not found out sweep after sweep
            engine.store.event("info", "serve", f"pltui serve started by {operator()} (pid {os.getpid()})")
        except StoreError as exc:
            raise ServeError(f"cannot serve: the state database is not writable: {exc}") from None
        if engine.lock.error:
            self.log.line("warning", f"sweep lock: {engine.lock.error}")

    async def run(self) -> None:
        """Serve until stopped (or one sweep with `once`). Raises ServeError before starting."""
        engine = await self._open_engine()
        if self.started is not None:
            try:
                self.started()
            except BaseException:
                await engine.close()
                raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        queue = engine.subscribe()
        tasks = [asyncio.create_task(self._log_events(queue), name="serve-log")]
        tasks += [asyncio.create_task(self._attach(hook, engine), name=f"serve-hook-{i}")
                  for i, hook in enumerate(self.hooks)]
        self.log.line("info", f"serving fleet {self.fleet.name} ({len(engine.nodes)} nodes, every "
                              f"{self.fleet.sweep.interval:g}s, heal {engine.heal_policy}); lock {engine.lock.path}")
        work = asyncio.create_task(self._once(engine) if self.once else engine.run_forever(), name="serve-sweeps")
        stopper = asyncio.create_task(self._stop.wait(), name="serve-stop")
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set() and not work.done():
                self.log.line("info", "stopping: cancelling the running sweep" if engine.sweeping else "stopping")
            for task in (work, stopper):
                task.cancel()
            for task in (work, stopper):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await engine.close()  # releases the sweep lock
            while not queue.empty():  # what the last moments emitted
                self.log.event(queue.get_nowait())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.log.line("info", "stopped; sweep lock released")

    async def _once(self, engine: Engine) -> None:
        """One sweep for cron: checksums when asked or due, heal per policy, prune history."""
        last = engine.last_checksum_time()
        due = last is None or time.time() - last >= self.fleet.sweep.checksum_interval
        await engine.sweep(checksums=self.checksums or due)
        await engine.prune_history()

    async def _attach(self, hook: Attach, engine: Engine) -> None:
        """Run one extra subscriber; its failure is logged (never silent) and the server goes on."""
        try:
            await hook(engine)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an add-on's bug must not stop the sweeps
            name = getattr(hook, "__qualname__", repr(hook))
            if getattr(hook, "required", False):  # e.g. the metrics endpoint the operator asked for
                self.failed = str(exc)
                self.log.line("error", f"{exc}; stopping")
                self.stop()
                return
            self.log.line("error", f"{name} stopped: {type(exc).__name__}: {exc}")

    async def _log_events(self, queue: asyncio.Queue) -> None:
        while True:
            self.log.event(await queue.get())
