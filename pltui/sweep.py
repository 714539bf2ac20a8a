"""The sweep engine: checks every node over SSH on an interval and streams what it finds.

One `Engine` per fleet and process. It never raises for a node's trouble: every node ends a
sweep with a `NodeStatus` (classified error included). Sweeps never overlap; on-demand requests
during a sweep are coalesced into the next one. Only one process per fleet and state directory
runs the sweep loop (`SweepLock`); the others follow its results through the store and take the
loop over when its owner exits.

The engine knows nothing of any UI: faces call `subscribe()` and render the events.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Iterable

from pltui import consensus as consensus_mod
from pltui import probe
from pltui import transitions
from pltui.fleet import Fleet, Node
from pltui.model import (Event, HealDone, NodeStatus, NodeTransition, NodeUpdated, Notice, SSHState,
                         SweepFinished, SweepStarted)
from pltui.paths import fleet_dir, state_root
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import NODE_GRACE, NodeError, OnRequest, Transport
from pltui.store import Store, StoreError
from pltui.sweeplock import SweepLock

CHECKSUM_TIMEOUT_FACTOR = 4
FOLLOW_POLL = 1.0
FLUSH_SLICE = 100
# The state database is written on the event loop: a database another process keeps locked must
# not stall the sweep once per write. Wait at most STORE_TIMEOUT for it, and after a failure
# leave it alone for STORE_BACKOFF (the history of that time is not saved, and that is said).
STORE_TIMEOUT = 1.5
STORE_BACKOFF = 15.0
# After an unforeseen failure of the sweep loop: waits before each new try (the last repeats).
LOOP_BACKOFF = (1.0, 2.0, 5.0, 15.0, 60.0)
# How often the owner looks for sweeps asked by following processes (through the store).
REQUEST_POLL = 1.0
PRUNE_EVERY = 3600.0


class Engine:
    def __init__(
        self,
        fleet: Fleet,
        *,
        state_dir: str | os.PathLike | None = None,
        nodes: Iterable[str] | None = None,
        transport: Transport | None = None,
        heal: str | None = None,
        store: Store | None = None,
    ):
        self.fleet = fleet
        self.nodes: list[str] = list(nodes) if nodes is not None else fleet.node_names
        self.transport = transport or Transport(fleet)
        self.heal_policy = heal or fleet.sweep.heal
        self.dir = fleet_dir(state_root(state_dir), fleet.name, fleet.path)
        self.store = store
        self.store_error: str | None = None
        self.store_notice: str | None = None  # e.g. a corrupt database was moved aside
        self._store_retry = 0.0
        if self.store is None:
            try:
                self.store = Store.for_fleet(fleet, state_dir, timeout=STORE_TIMEOUT)
            except StoreError as exc:
                self.store_error = str(exc)
            else:
                self.store_notice = self.store.notice
        self.lock = SweepLock(self.dir / "sweep.lock")
        self.statuses: dict[str, NodeStatus] = {n: NodeStatus(node=n) for n in self.nodes}
        self.consensus = consensus_mod.Consensus()
        self.summary: dict | None = None
        self.sweeping = False
        self.progress = (0, 0)
        self.last_sweep_end: float | None = None
        self.last_checksum_end: float | None = None
        self.next_sweep_at: float | None = None
        self._subscribers: list[asyncio.Queue] = []
        self._sweep_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._requested: bool | None = None  # None: nothing; False: liveness; True: checksums
        self._tasks: set[asyncio.Task] = set()
        self._busy: set[str] = set()
        self._follow_since = 0.0
        self._followed_sweep: int | None = None
        self._following = False
        self._lock_error_said: str | None = None
        self._last_checksum: float | None = None
        self._next_prune = 0.0
        self._commands: dict[tuple[str, bool], str] = {}  # probe commands; the fleet never changes under an engine
        self._track_of = {n: nd.track for n, nd in fleet.nodes.items()}
        self._unsaved_transitions: list[NodeTransition] = []
        self._restore()

    def _restore(self) -> None:
        """Start from the last known state of each node (from the store), so a console opened
        between sweeps shows the fleet at once; `observed` tells how old each record is."""
        rows = self._store_call(lambda s: s.statuses()) or []
        for _updated, status in rows:
            if status.node in self.statuses:
                self.statuses[status.node] = status
        if rows:
            self._decide()
            last = self._store_call(lambda s: s.last_sweep())
            if last:
                self.summary = last["summary"]
                self.last_sweep_end = last["finished"]

    # -- events -----------------------------------------------------------------------------

    def subscribe(self, maxsize: int = 0) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def emit(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                pass  # a stalled face loses events, never the engine

    def notice(self, level: str, message: str, node: str | None = None, kind: str = "notice") -> None:
        message = clean_line(message, 500)
        self.emit(Notice(level=level, message=message, node=node))
        self._store_call(lambda s: s.event(level, kind, message, node))

    def _transitions(self, found: list[NodeTransition]) -> None:
        """Emit transitions (same queue as NodeUpdated); they are stored with the next flush."""
        for t in found:
            self.emit(t)
        self._unsaved_transitions.extend(found)

    def _save_transitions(self) -> None:
        if self._unsaved_transitions:
            rows = [transitions.event_row(t) for t in self._unsaved_transitions]
            self._unsaved_transitions = []
            self._store_call(lambda s: s.add_events(rows))

    def _store_call(self, fn):
        if self.store is None or time.monotonic() < self._store_retry:
            return None
        try:
            result = fn(self.store)
        except StoreError as exc:
            self._store_retry = time.monotonic() + STORE_BACKOFF
            if self.store_error != str(exc):
                self.store_error = str(exc)
                self.emit(Notice(level="error", message=f"history not saved: {exc}"))
            return None
        self.store_error = None
        return result

    # -- one node ---------------------------------------------------------------------------

    async def probe_node(self, node: Node, checksums: bool) -> NodeStatus:
        """Probe one node; always returns a status, never raises for the node's trouble."""
        timeout = self.transport.command_timeout * (CHECKSUM_TIMEOUT_FACTOR if checksums else 1)
        command = self._commands.get((node.name, checksums))
        if command is None:  # the installed probe if the node holds it, else the body on request
            limit = max(1, int(timeout + NODE_GRACE + 0.999))  # the node stops it a little after us
            command = self._commands[(node.name, checksums)] = probe.probe_command(self.fleet, node, checksums=checksums,
                                                                                  limit=limit)
        started = time.monotonic()
        sent = time.time()
        try:
            result = await self.transport.run(node, command, input=OnRequest(probe.SEND_BODY, probe.probe_body()),
                                              timeout=timeout, bound_on_node=False,
                                              max_output=probe.MAX_OUTPUT, what="the probe")
        except NodeError as exc:
            if exc.state == SSHState.TIMEOUT:
                self.transport.drop(node.name)  # its channel may still be busy
            return NodeStatus(node=node.name, ssh=exc.state, error=exc.message, observed=time.time())
        except Exception as exc:  # a bug or an unforeseen library error: one node's problem only
            return NodeStatus(node=node.name, ssh=SSHState.ERROR, error=f"internal error: {type(exc).__name__}: {exc}",
                              observed=time.time())
        # Round trip (connect if needed + exec) is what the transport timed once it had a slot;
        # the rest is the wait for a fanout slot: at 300 nodes that wait is most of the total,
        # and showing it as the node's latency misled (issue 12).
        total = (time.monotonic() - started) * 1000
        latency = min(total, result.elapsed * 1000)
        queued = max(0.0, total - latency)
        if result.truncated:
            return NodeStatus(node=node.name, ssh=SSHState.GARBLED, observed=time.time(), latency_ms=latency,
                              error=f"probe output exceeded {probe.MAX_OUTPUT} bytes; stopped reading")
        try:
            status = probe.parse(result.stdout, self.fleet, node, checksums=checksums)
        except probe.ProbeError as exc:
            detail = f"; exit {result.exit_status}" if result.exit_status else ""
            stderr = clean_line(result.stderr, 120)
            detail += f"; stderr: {stderr}" if stderr else ""
            return NodeStatus(node=node.name, ssh=SSHState.GARBLED, observed=time.time(), latency_ms=latency,
                              error=f"garbled probe output: {exc}{detail}")
        status.ssh = SSHState.OK
        status.observed = time.time()
        status.latency_ms = latency
        # The probe reads its clock first: compare it with the time the command was sent (after
        # its wait for a fanout slot), not with the end of a probe that may have run for seconds.
        status.clock_skew = status.clock - (sent + queued / 1000) if status.clock is not None else None
        status.queue_ms = queued
        if checksums:
            status.digests_time = status.observed
        return status

    # -- sweeps -----------------------------------------------------------------------------

    async def sweep(self, checksums: bool = False, nodes: Iterable[str] | None = None) -> dict:
        """One pass over `nodes` (default: the engine's selection). Returns the summary."""
        async with self._sweep_lock:
            return await self._sweep(checksums, list(nodes) if nodes is not None else self.nodes)

    async def _sweep(self, checksums: bool, names: list[str]) -> dict:
        todo = [n for n in names if n not in self._busy]
        sweep_id = self._store_call(lambda s: s.sweep_started(checksums, len(todo))) or 0
        self.sweeping = True
        self.progress = (0, len(todo))
        self.emit(SweepStarted(sweep_id=sweep_id, checksums=checksums, total=len(todo)))
        pending: list[NodeStatus] = []
        done = 0
        drift_before = dict(self.consensus.drift)

        async def one(name: str) -> None:
            nonlocal done
            self._busy.add(name)
            try:
                status = await self.probe_node(self.fleet.nodes[name], checksums)
            finally:
                self._busy.discard(name)
            previous = self.statuses.get(name)
            if not checksums:
                probe.carry_checksums(previous, status)  # liveness sweeps keep the last checksums
            self.statuses[name] = status
            pending.append(status)
            done += 1
            self.progress = (done, len(todo))
            self.emit(NodeUpdated(status=status))
            self._transitions(transitions.node_transitions(previous, status))

        async def flusher() -> None:
            while True:
                await asyncio.sleep(0.5)
                self._flush(pending, sweep_id)

        flush_task = asyncio.create_task(flusher())
        try:
            await asyncio.gather(*(one(n) for n in todo))
        finally:
            flush_task.cancel()
            try:
                await flush_task
            except asyncio.CancelledError:
                pass
            self.sweeping = False
        self._decide()
        self._transitions(transitions.drift_transitions(drift_before, self.consensus.drift, self.statuses, todo))
        checks = {n: self.consensus.checksum_state(n) for n in names} if checksums else None
        await self._flush_final(pending, sweep_id, checks)
        summary = consensus_mod.summarise([self.statuses[n] for n in self.nodes], self.consensus, self.fleet.sweep.quorum)
        summary["sweep_id"] = sweep_id
        summary["checksums"] = checksums
        self.summary = summary
        self._store_call(lambda s: s.sweep_finished(sweep_id, summary))
        now = time.time()
        self.last_sweep_end = now
        if checksums:
            self.last_checksum_end = now
        self.emit(SweepFinished(sweep_id=sweep_id, checksums=checksums, summary=summary))
        if self.heal_policy == "monitor":
            await self.heal([n for n in todo if self.statuses[n].monitor == "dead"])
        return summary

    def _decide(self) -> None:
        """Majorities, drift and cohorts over every node's latest status (per track)."""
        self.consensus = consensus_mod.decide(self.statuses.values(), self._track_of, self.fleet.sweep.quorum)

    def _flush(self, pending: list[NodeStatus], sweep_id: int) -> None:
        """Save what the running sweep found so far (followers see it live)."""
        self._save_transitions()
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        self._store_call(lambda s: s.save_statuses(batch, sweep_id))

    async def _flush_final(self, pending: list[NodeStatus], sweep_id: int, checks: dict | None) -> None:
        """The end-of-sweep write, in slices with a yield between them: one write of a whole
        checksum sweep (~1,000 nodes) would hold the event loop (and a console on it) >100 ms."""
        if checks:
            names = {s.node for s in pending}
            pending.extend(self.statuses[n] for n in checks if n not in names)
        while pending:
            part = pending[:FLUSH_SLICE]
            del pending[:FLUSH_SLICE]
            part_checks = {s.node: checks[s.node] for s in part if s.node in checks} if checks else None
            self._store_call(lambda s, part=part, checks=part_checks: s.save_statuses(part, sweep_id, checks))
            await asyncio.sleep(0)
        self._save_transitions()

    # -- heal -------------------------------------------------------------------------------

    def heal_command(self, node: Node) -> str:
        root = shell_path(node.root)
        return f"cd {root} && /bin/sh .pltui/monitor.sh start"

    async def heal(self, names: Iterable[str]) -> list[HealDone]:
        """Restart the node monitor where it is dead (it then restarts the processes)."""
        names = list(names)
        if not names:
            return []

        async def one(name: str) -> HealDone:
            node = self.fleet.nodes[name]
            try:
                result = await self.transport.run(node, self.heal_command(node))
                ok = result.exit_status == 0
                message = clean_line(result.stderr or result.stdout, 200) or ("monitor restarted" if ok else f"exit {result.exit_status}")
            except NodeError as exc:
                ok, message = False, exc.message
            event = HealDone(node=name, ok=ok, message=("restarted monitor: " if ok else "heal failed: ") + message)
            self.emit(event)
            self._store_call(lambda s: s.event("info" if ok else "error", "heal", event.message, name))
            if ok:
                self._transitions([transitions.healed(name, message, event.time)])
            return event

        results = await asyncio.gather(*(one(n) for n in names))
        self._save_transitions()
        self._store_call(lambda s: s.audit("heal", names, {"policy": self.heal_policy, "by": "sweep"},
                                           f"{sum(r.ok for r in results)}/{len(results)} healed"))
        return list(results)

    # -- the loop ---------------------------------------------------------------------------

    def request_sweep(self, checksums: bool = False) -> None:
        """Ask for a sweep now (coalesced with one already asked for). A following engine asks
        the process that owns the sweep loop, through the store; it sweeps within REQUEST_POLL."""
        if not self.lock.owned and self.lock.held_elsewhere():
            if self._store_call(lambda s: s.request_sweep(checksums)) is not None:
                return
        self._requested = bool(self._requested) or checksums
        self._wake.set()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self) -> asyncio.Task:
        """Run the loop in the background (owned task); returns it."""
        return self._spawn(self.run_forever())

    async def run_forever(self) -> None:
        """Sweep on the fleet's intervals while owning the fleet's sweep lock; follow otherwise.

        Never dies silently: an unforeseen error is said (an error Notice), the lock is released
        while the loop backs off (a process that does not sweep must not keep others waiting on
        it), and the loop tries again. The lock is released however the loop ends."""
        if self.store_notice:
            self.notice("warning", self.store_notice, kind="store")
        if self.store_error:
            self.emit(Notice(level="error", message=f"history not saved: {self.store_error}"))
        failures = 0
        try:
            while True:
                try:
                    await self._loop_once()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any bug: said, lock released, retried
                    self.lock.release()
                    delay = LOOP_BACKOFF[min(failures, len(LOOP_BACKOFF) - 1)]
                    failures += 1
                    self.sweeping = False
                    self.notice("error", f"sweep loop failed ({type(exc).__name__}: {exc}); sweep lock released, "
                                         f"retrying in {delay:g}s", kind="loop")
                    await asyncio.sleep(delay)
        finally:
            self.lock.release()

    async def _loop_once(self) -> None:
        """One turn of the loop: a sweep and its wait (owner), or one look at the store (follower)."""
        if not self.lock.try_acquire():
            if not self._following:
                self.notice("info", f"following the sweeps of {self.lock.holder()}")
                self._following = True
            await self._follow_once()
            try:
                await asyncio.wait_for(self._wake.wait(), FOLLOW_POLL)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._requested is not None:
                wanted, self._requested = self._requested, None
                self._store_call(lambda s: s.request_sweep(wanted))  # the owner picks it up
            return
        if self._following:
            self.notice("info", "took over the sweep loop")
            self._following = False
        if self.lock.error and self.lock.error != self._lock_error_said:
            self._lock_error_said = self.lock.error
            self.notice("warning", f"sweep lock: {self.lock.error}", kind="store")
        if self._last_checksum is None:
            self._last_checksum = self.last_checksum_time() or 0.0
        due_checksum = time.time() - self._last_checksum >= self.fleet.sweep.checksum_interval
        checksums = bool(self.take_requests()) or due_checksum
        await self.sweep(checksums=checksums)
        if checksums:
            self._last_checksum = time.time()
        await self.prune_history()
        await self.wait_next_sweep(self.fleet.sweep.interval)

    def take_requests(self) -> bool | None:
        """The sweeps asked of this (sweeping) engine, here or by followers through the store,
        taken at once: None (none), False (liveness) or True (one wants checksums)."""
        asked = self._store_call(lambda s: s.take_sweep_requests())
        local, self._requested = self._requested, None
        self._wake.clear()
        if asked is None and local is None:
            return None
        return bool(asked) or bool(local)

    async def wait_next_sweep(self, interval: float) -> None:
        """Wait `interval`, or less when a sweep is asked (request_sweep here, or a following
        process's request in the store, looked for every REQUEST_POLL)."""
        self.next_sweep_at = time.time() + interval
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), min(REQUEST_POLL, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                pass
            if self._store_call(lambda s: s.has_sweep_requests()):
                break

    async def prune_history(self) -> None:
        """Forget history older than the fleet's retention, at most once an hour, in batches with
        a yield between them (a console on this loop stays responsive)."""
        store = self.store
        retention = store.retention if store is not None else 0
        if not retention or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        before = time.time() - retention
        while self._store_call(lambda s: s.prune_batch(before)):
            await asyncio.sleep(0)

    def last_answered(self) -> dict[str, float]:
        """node -> when the store last recorded it answering (Store.last_answered); empty
        without a usable store. For a console's "last answered" of nodes down at its start."""
        return self._store_call(lambda s: s.last_answered()) or {}

    def last_checksum_time(self) -> float | None:
        last = self._store_call(lambda s: s.last_sweep(checksums=True))
        return last["finished"] if last else None

    async def _follow_once(self) -> None:
        """Pick up what the owning process stored since we last looked."""
        rows = self._store_call(lambda s: s.statuses(self._follow_since)) or []
        selected = set(self.nodes)
        for updated, status in rows:
            self._follow_since = max(self._follow_since, updated)
            if status.node in selected:
                previous = self.statuses.get(status.node)
                self.statuses[status.node] = status
                self.emit(NodeUpdated(status=status))
                for t in transitions.node_transitions(previous, status):
                    self.emit(t)  # the owning process stores them; a follower only shows them
        last = self._store_call(lambda s: s.last_sweep())
        if last and last["id"] != self._followed_sweep and last["summary"]:
            self._followed_sweep = last["id"]
            self._decide()
            self.summary = last["summary"]
            self.last_sweep_end = last["finished"]
            self.emit(SweepFinished(sweep_id=last["id"], checksums=last["checksums"], summary=last["summary"]))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.transport.close()
        self.lock.release()
        if self.store is not None:
            self.store.close()
