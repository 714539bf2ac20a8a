"""From a key to a running fleet action: which class, which options, and the live state of a run.

Action classes are imported at call time (`pltui.actions.rollout`...), so the console works
while some are not written yet: a missing module is reported as "not available yet", never faked.
`ActionRun` folds the action's `ActionProgress` / `ActionFinished` events into per-node state for
the progress screen.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pltui.actions.base import Action, Control
from pltui.model import ActionFinished, ActionProgress
from pltui.sanitize import clean_line


class NotAvailable(Exception):
    """The action's module or class does not exist (yet)."""


@dataclass(frozen=True)
class ActionSpec:
    name: str                       # command name and the kind looked for
    title: str                      # for questions: "Roll out", "Restart"
    module: str
    classes: tuple[str, ...]        # class names tried first
    key: str
    mutating: bool = True
    ask: str | None = None          # prompt for one option (bundle, command)
    option: str | None = None       # keyword argument receiving it
    extra: tuple[tuple[str, Any], ...] = ()
    kinds: tuple[str, ...] = ()     # Action.kind values accepted when no class name matches


SPECS: dict[str, ActionSpec] = {s.name: s for s in (
    ActionSpec("rollout", "Roll out", "pltui.actions.rollout", ("Rollout", "RolloutAction"), "r",
               ask="Bundle to roll out (directory or .tar.gz)", option="bundle", kinds=("rollout",)),
    ActionSpec("restart", "Restart the service on", "pltui.actions.control", ("Restart", "RestartAction"), "R",
               kinds=("restart",)),
    ActionSpec("logs", "Collect logs from", "pltui.actions.logs", ("CollectLogs", "Logs", "LogsAction"), "l",
               mutating=False, kinds=("logs",)),
    ActionSpec("capture", "Capture state of", "pltui.actions.capture", ("Capture", "CaptureAction"), "c",
               mutating=False, kinds=("capture",)),
    ActionSpec("exec", "Run a command on", "pltui.actions.exec", ("Exec", "ExecAction"), "x",
               ask="Command to run on each node", option="command", kinds=("exec",)),
    ActionSpec("repair", "Repair drifted files on", "pltui.actions.repair", ("Repair", "RepairAction"), "F",
               kinds=("repair",)),
)}


def resolve(spec: ActionSpec) -> type[Action]:
    """The Action subclass for `spec`, imported now; NotAvailable when it does not exist yet."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name in (spec.module, spec.module.rpartition(".")[0]):
            raise NotAvailable(f"{spec.name} is not available yet ({spec.module} is not written)") from None
        raise
    for name in spec.classes:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, Action):
            return cls
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Action) and obj is not Action and \
                getattr(obj, "kind", None) in (spec.kinds or (spec.name,)):
            return obj
    raise NotAvailable(f"{spec.name} is not available yet ({spec.module} has no action class for it)")


def is_mutating(spec: ActionSpec, cls: type[Action] | None) -> bool:
    """Mutating per the spec, or per the class itself (Action.mutating defaults to True)."""
    return spec.mutating or bool(cls is not None and getattr(cls, "mutating", True))


@dataclass
class NodeProgress:
    state: str = "pending"
    detail: str = ""
    bytes_done: int | None = None
    bytes_total: int | None = None
    updated: float = 0.0


@dataclass
class ActionRun:
    """One action started from the console, and what its events said so far."""

    spec: ActionSpec
    action: Action
    control: Control
    nodes: list[str]
    started: float = field(default_factory=time.time)
    states: dict[str, NodeProgress] = field(default_factory=dict)
    stage: str = ""                  # the latest node-less progress line (stage, batch, gate...)
    finished: bool = False
    ok: bool | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    dirty: bool = True

    def __post_init__(self) -> None:
        for node in self.nodes:
            self.states.setdefault(node, NodeProgress())

    @property
    def action_id(self) -> str:
        return self.action.action_id

    @property
    def kind(self) -> str:
        return self.action.kind

    def apply(self, event) -> bool:
        """Fold one engine event in; True when it belonged to this run."""
        if isinstance(event, ActionProgress) and event.action_id == self.action_id:
            if event.node is None:
                self.stage = clean_line(f"{event.state} {event.detail}".strip(), 200)
            else:
                p = self.states.setdefault(event.node, NodeProgress())
                p.state = clean_line(event.state, 32)
                p.detail = clean_line(event.detail, 200)
                if event.bytes_done is not None:
                    p.bytes_done = event.bytes_done
                if event.bytes_total is not None:
                    p.bytes_total = event.bytes_total
                p.updated = event.time
            self.dirty = True
            return True
        if isinstance(event, ActionFinished) and event.action_id == self.action_id:
            self.finish(event.ok, event.report)
            return True
        return False

    def finish(self, ok: bool, report: dict | None, error: str | None = None) -> None:
        if self.finished and report is None and error is None:
            return
        self.finished = True
        self.ok = ok
        if report is not None:
            self.report = report
            for node, result in (report.get("nodes") or {}).items():
                p = self.states.setdefault(node, NodeProgress())
                p.state = clean_line(str(result.get("state", p.state)), 32)
                p.detail = clean_line(str(result.get("message", p.detail)), 200)
        if error is not None:
            self.error = clean_line(error, 500)
        self.dirty = True

    @property
    def status_word(self) -> str:
        if self.finished:
            if self.error:
                return "failed to run"
            return "finished ok" if self.ok else "finished with failures"
        if self.control.aborted:
            return "aborting"
        if self.control.waiting_at_gate:
            return f"waiting at gate {self.control.gate_name or ''}".strip()
        if self.control.paused:
            return "paused"
        return "running"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.states.values():
            out[p.state] = out.get(p.state, 0) + 1
        return out

    def bytes(self) -> tuple[int, int] | None:
        totals = [p for p in self.states.values() if p.bytes_total is not None or p.bytes_done is not None]
        if not totals:
            return None
        return sum(p.bytes_done or 0 for p in totals), sum(p.bytes_total or 0 for p in totals)


def group_results(report: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """Nodes grouped by identical results (exec output): [(nodes, result)], biggest group first."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for node, result in (report.get("nodes") or {}).items():
        key = json.dumps(result, sort_keys=True, default=str)
        groups.setdefault(key, ([], result))[0].append(node)
    return sorted(groups.values(), key=lambda g: (-len(g[0]), g[0][0]))
