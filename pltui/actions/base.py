"""What every fleet action shares: identity, bounded parallelism, progress events, operator
control (pause / continue / abort, stage gates), node locks, audit, and a per-node result.

An action is planned (`plan()`, no side effects, JSON-ready), then run (`await run()`), streaming
`ActionProgress` events through `emit` and ending with an `ActionReport`. The CLI prints the
report; the TUI shows the events live. Actions never raise for a node's trouble.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pltui.fleet import Fleet
from pltui.model import ActionFinished, ActionProgress, Event
from pltui.ssh import Transport
from pltui.store import Store, StoreError

Emit = Callable[[Event], None]


class ActionError(Exception):
    """The action cannot start or go on (bad input, nodes locked by another operator...)."""


@dataclass
class NodeResult:
    node: str
    state: str                 # done, failed, unreachable, skipped, rolled-back, untouched...
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in ("done", "skipped")


@dataclass
class ActionReport:
    action_id: str
    kind: str
    ok: bool
    results: dict[str, NodeResult]
    summary: dict[str, Any] = field(default_factory=dict)
    stopped_because: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "ok": self.ok,
            "stopped_because": self.stopped_because,
            "summary": self.summary,
            "nodes": {n: {"state": r.state, "message": r.message, **r.data} for n, r in self.results.items()},
        }

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


class Control:
    """Operator control of a running action: pause, continue, abort, and stage gates."""

    def __init__(self, auto_continue: bool = False):
        self.auto_continue = auto_continue
        self._running = asyncio.Event()
        self._running.set()
        self.aborted = False
        self._gate: asyncio.Future | None = None
        self.gate_name: str | None = None

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def abort(self) -> None:
        self.aborted = True
        self._running.set()
        if self._gate is not None and not self._gate.done():
            self._gate.set_result(False)

    async def checkpoint(self) -> bool:
        """Wait while paused; False once aborted (callers stop starting new work)."""
        await self._running.wait()
        return not self.aborted

    async def gate(self, name: str) -> bool:
        """Wait for the operator before a stage; True to go on. `--yes` passes automatically."""
        if self.auto_continue:
            return not self.aborted
        self.gate_name = name
        self._gate = asyncio.get_running_loop().create_future()
        try:
            return bool(await self._gate) and not self.aborted
        finally:
            self._gate = None
            self.gate_name = None

    def answer_gate(self, go_on: bool) -> None:
        if self._gate is not None and not self._gate.done():
            self._gate.set_result(go_on)

    @property
    def waiting_at_gate(self) -> bool:
        return self._gate is not None and not self._gate.done()


class Action:
    """Base class: subclasses set `kind`, implement `plan()` and `execute()`."""

    kind = "action"
    mutating = True

    def __init__(self, fleet: Fleet, transport: Transport, store: Store | None, nodes: Iterable[str], *,
                 emit: Emit | None = None, control: Control | None = None, action_id: str | None = None):
        self.fleet = fleet
        self.transport = transport
        self.store = store
        self.nodes = list(nodes)
        self.emit_event = emit or (lambda event: None)
        self.control = control or Control()
        self.action_id = action_id or f"{self.kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.results: dict[str, NodeResult] = {}

    # -- for subclasses -----------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        return {"kind": self.kind, "nodes": self.nodes}

    async def execute(self) -> ActionReport:  # pragma: no cover - abstract
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """What goes into the audit log besides the node list."""
        return {}

    # -- shared machinery -----------------------------------------------------------------------

    def progress(self, node: str | None, state: str, detail: str = "", **extra) -> None:
        self.emit_event(ActionProgress(action_id=self.action_id, kind=self.kind, node=node, state=state,
                                       detail=detail, **extra))

    def result(self, node: str, state: str, message: str = "", **data) -> NodeResult:
        res = NodeResult(node, state, message, data)
        self.results[node] = res
        self.progress(node, state, message)
        return res

    async def run(self) -> ActionReport:
        """Lock the nodes, audit, execute, unlock, audit the outcome, emit ActionFinished."""
        audit_id = None
        if self.store is not None:
            try:
                if self.mutating:
                    self.store.lock_nodes(self.nodes, self.action_id)
                audit_id = self.store.audit(self.kind, self.nodes, {"action_id": self.action_id, **self.arguments()})
            except StoreError as exc:
                raise ActionError(str(exc)) from None
        report = None
        try:
            report = await self.execute()
            return report
        finally:
            if self.store is not None:
                try:
                    if self.mutating:
                        self.store.unlock_nodes(self.action_id)
                    if audit_id is not None:
                        outcome = "interrupted" if report is None else ("ok" if report.ok else f"not ok: {report.stopped_because or 'some nodes failed'}")
                        self.store.audit_result(audit_id, outcome)
                except StoreError:
                    pass
            if report is not None:
                self.emit_event(ActionFinished(action_id=self.action_id, kind=self.kind, ok=report.ok,
                                               report=report.to_json()))

    async def for_each(self, nodes: Iterable[str], work: Callable[[str], Any], parallel: int) -> None:
        """Run `work(node)` over nodes with at most `parallel` at once, honouring pause/abort."""
        limit = asyncio.Semaphore(max(1, parallel))

        async def one(node: str) -> None:
            async with limit:
                if not await self.control.checkpoint():
                    self.results.setdefault(node, NodeResult(node, "untouched", "action aborted"))
                    return
                await work(node)

        await asyncio.gather(*(one(n) for n in nodes))

    def report(self, *, stopped_because: str | None = None, summary: dict | None = None) -> ActionReport:
        ok = stopped_because is None and all(r.ok for r in self.results.values())
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        return ActionReport(self.action_id, self.kind, ok, dict(self.results),
                            {"counts": counts, **(summary or {})}, stopped_because)
