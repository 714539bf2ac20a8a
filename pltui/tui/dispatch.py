"""From a key to a running fleet action: which class, which options, and the live state of a run.

Action classes are imported at call time (`pltui.actions.rollout`...), so the console works
while some are not written yet: a missing module is reported as "not available yet", never faked.
`ActionRun` folds the action's `ActionProgress` / `ActionFinished` events into per-node state for
the progress screen.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pltui.actions.base import Action, ActionError, Control
from pltui.fleet import Fleet
from pltui.model import ActionFinished, ActionProgress
from pltui.sanitize import clean_line
from pltui.sweep import Engine


class NotAvailable(Exception):
    """The action's module or class does not exist (yet)."""


@dataclass
class BuildContext:
    """What building an action needs from the console."""

    fleet: Fleet
    engine: Engine
    state_dir: str | None
    emit: Callable
    control: Control


@dataclass(frozen=True)
class ActionSpec:
    name: str                       # command name
    title: str                      # for questions: "Roll out", "Restart the service on"
    module: str                     # imported at call time
    key: str
    mutating: bool = True
    ask: str | None = None          # prompt for the one option (bundle, command, destination)
    default: Callable[[BuildContext], str] | None = None
    typed_confirm: bool = False     # the operator types the node count (or the verb), not just y


def _import(spec: ActionSpec):
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name in (spec.module, spec.module.rpartition(".")[0]):
            raise NotAvailable(f"{spec.name} is not available yet ({spec.module} is not written)") from None
        raise


def _class(module, names: tuple[str, ...], spec: ActionSpec) -> type[Action]:
    for name in names:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, Action):
            return cls
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Action) and obj is not Action \
                and getattr(obj, "kind", None) == spec.name:
            return obj
    raise NotAvailable(f"{spec.name} is not available yet ({spec.module} has no action for it)")


def resolve(spec: ActionSpec) -> None:
    """Raise NotAvailable when the action's module is not there (yet)."""
    _import(spec)


async def build(spec: ActionSpec, ctx: BuildContext, names: list[str], option: str | None) -> tuple[Action, dict]:
    """The action for `names`, and its plan (no side effects on nodes; repair sweeps checksums)."""
    fleet, engine = ctx.fleet, ctx.engine
    if spec.mutating and engine.store is None:
        # Without the state database there are no node locks: another operator's action on the
        # same nodes would go unseen. The CLI refuses the same way.
        raise ActionError(f"cannot take node locks, so not starting {spec.name}: "
                          f"{engine.store_error or 'the state database is unavailable'}")
    module = _import(spec)
    common = dict(emit=ctx.emit, control=ctx.control)
    if spec.name == "rollout":
        from pltui.actions.bundle import Bundle, BundleError

        option, opts = rollout_options(option or "")
        try:
            bundle = await asyncio.to_thread(Bundle.open, option, engine.dir / "bundles",
                                             version_file=fleet.service.version_file)
        except BundleError as exc:
            raise ActionError(str(exc)) from None
        except (RuntimeError, ValueError, OSError) as exc:   # `~x` with no such user, NUL bytes...
            raise ActionError(f"bundle {option!r}: {exc}") from None
        stages = module.build_stages(fleet, names, batch=opts.batch, max_fail=opts.max_fail,
                                     parallel=opts.parallel)
        action = module.Rollout.new(fleet, engine.transport, engine.store, bundle, stages, reload=opts.reload,
                                    failhard=opts.failhard, state_dir=ctx.state_dir, **common)
    elif spec.name in ("restart", "start", "stop", "reload"):
        action = module.ServiceControl(fleet, engine.transport, engine.store, names, verb=spec.name, **common)
    elif spec.name == "reboot":
        # Built only after the operator typed the confirmation (operations.start_action).
        action = module.RebootNode(fleet, engine.transport, engine.store, names, confirmed=True, **common)
    elif spec.name == "logs":
        dest, prune = logs_options(option or "")
        if prune and engine.store is None:
            raise ActionError(f"cannot take node locks, so not pruning: {engine.store_error or 'no state database'}")
        extra = {"prune": True} if prune else {}
        action = _class(module, ("CollectLogs",), spec)(fleet, engine.transport, engine.store, names, dest=dest,
                                                         **extra, **common)
    elif spec.name == "capture":
        action = _class(module, ("CaptureState",), spec)(fleet, engine.transport, engine.store,
                                                          names, dest=option, **common)
    elif spec.name == "exec":
        action = _class(module, ("ExecAction",), spec)(fleet, engine.transport, engine.store, names,
                                                        command=option, **common)
    elif spec.name == "repair":
        action = _class(module, ("RepairAction",), spec)(fleet, engine.transport, engine.store, names,
                                                          engine=engine, state_dir=ctx.state_dir,
                                                          resweep=False, **common)
        return action, await action.make_plan()
    else:
        cls = _class(module, (), spec)
        kwargs = {"dest": option} if option else {}
        action = cls(fleet, engine.transport, engine.store, names, **kwargs, **common)
    return action, action.plan()


@dataclass(frozen=True)
class RolloutOptions:
    reload: bool = False
    failhard: bool = False
    batch: str | None = None
    parallel: int | None = None
    max_fail: str | None = None


ROLLOUT_OPTIONS_HINT = "BUNDLE [--reload] [--failhard] [--batch 1,10%,*] [--parallel N] [--max-fail 5%]"


def rollout_options(text: str) -> tuple[str, RolloutOptions]:
    """`BUNDLE --reload --batch 5 ...` as typed in the bundle prompt (the CLI's option names);
    ActionError naming the bad option. A path with spaces may be quoted."""
    import argparse
    import shlex

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ActionError(f"rollout options: {exc}") from None
    if not words:
        raise ActionError("give a bundle (a directory or .tar.gz holding VERSION)")
    class Parser(argparse.ArgumentParser):
        def error(self, message):          # never sys.exit from inside the console
            raise ActionError(f"rollout options: {message}; expected {ROLLOUT_OPTIONS_HINT}")

    parser = Parser(prog="rollout", add_help=False, exit_on_error=False)
    parser.add_argument("bundle")
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--failhard", action="store_true")
    parser.add_argument("--batch")
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--max-fail", dest="max_fail")
    try:
        args, extra = parser.parse_known_args(words)
    except (argparse.ArgumentError, ValueError) as exc:
        raise ActionError(f"rollout options: {exc}; expected {ROLLOUT_OPTIONS_HINT}") from None
    if extra:
        raise ActionError(f"rollout options: not understood: {' '.join(extra)}; expected {ROLLOUT_OPTIONS_HINT}")
    return args.bundle, RolloutOptions(args.reload, args.failhard, args.batch, args.parallel, args.max_fail)


def rebuild_rollout(ctx: BuildContext, action: Action, opts: RolloutOptions) -> tuple[Action, dict]:
    """The reviewed rollout again with other options (same bundle, same nodes), so the plan the
    review shows is always the one that runs. Nothing touches a node or the store; ActionError
    names a bad option as the CLI would."""
    module = _import(SPECS["rollout"])
    stages = module.build_stages(ctx.fleet, list(action.nodes), batch=opts.batch, max_fail=opts.max_fail,
                                 parallel=opts.parallel)
    new = module.Rollout.new(ctx.fleet, ctx.engine.transport, ctx.engine.store, action.bundle, stages,
                             reload=opts.reload, failhard=opts.failhard, state_dir=ctx.state_dir,
                             emit=ctx.emit, control=ctx.control)
    return new, new.plan()


def logs_options(text: str) -> tuple[str, bool]:
    """`DEST [--prune]` from the logs prompt: (dest, prune). `--prune` deletes each node's file
    once its verified copy is on disk, as `pltui logs --prune`."""
    text = text.strip()
    if text == "--prune" or text.endswith(" --prune"):
        return text[: -len("--prune")].strip(), True
    return text, False


def _logs_dest(ctx: BuildContext) -> str:
    return str(ctx.engine.dir / "logs")


def _capture_dest(ctx: BuildContext) -> str:
    return str(ctx.engine.dir / "captures")


SPECS: dict[str, ActionSpec] = {s.name: s for s in (
    ActionSpec("rollout", "Roll out to", "pltui.actions.rollout", "r",
               ask="Bundle to roll out (a directory or .tar.gz holding VERSION), then options: "
                   "--reload --failhard --batch 1,10%,* --parallel N --max-fail 5%"),
    ActionSpec("restart", "Restart the service on", "pltui.actions.control", "R"),
    ActionSpec("start", "Start the service on", "pltui.actions.control", ":start"),
    ActionSpec("stop", "Stop the service (on purpose: it stays stopped) on", "pltui.actions.control", ":stop"),
    ActionSpec("reload", "Reload the service (no restart) on", "pltui.actions.control", ":reload"),
    ActionSpec("reboot", "Reboot (the fleet's reboot_command)", "pltui.actions.control", ":reboot",
               typed_confirm=True),
    ActionSpec("logs", "Collect logs from", "pltui.actions.logs", "l", mutating=False,
               ask="Directory to collect the logs into; add --prune to delete each node's copy once "
                   "verified here", default=_logs_dest),
    ActionSpec("capture", "Capture the state of", "pltui.actions.capture", "c", mutating=False,
               ask="Directory to write the captures into", default=_capture_dest),
    ActionSpec("exec", "Run a command on", "pltui.actions.exec", "x", ask="Command to run on each node"),
    ActionSpec("repair", "Repair drifted files on", "pltui.actions.repair", "F"),
)}


FINISHED_OK = ("done", "ok", "repaired", "collected", "captured")


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
    plan: dict | None = None
    placement: dict[str, str] = field(default_factory=dict)   # node -> "stage 2/3" for rollouts

    def __post_init__(self) -> None:
        for node in self.nodes:
            self.states.setdefault(node, NodeProgress())
        self.placement = placement_of(self.action, self.plan)

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
                if p.state in FINISHED_OK and p.bytes_total:
                    # A node that finished moved all its bytes: the last progress event may have
                    # been sent at 33% (logs) or never (repair's 0B/212B); the bar ends at 100%.
                    p.bytes_done = max(p.bytes_done or 0, p.bytes_total)
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


def placement_of(action: Action, plan: dict | None) -> dict[str, str]:
    """Each node's stage and batch, from the action's own stages (a Rollout's StagePlans), else
    from a plan whose stages list their nodes; empty for actions without stages."""
    out: dict[str, str] = {}
    stages = getattr(action, "stages", None)
    if isinstance(stages, list) and stages and all(hasattr(s, "name") and hasattr(s, "batches") for s in stages):
        for stage in stages:
            for bi, batch in enumerate(stage.batches):
                for node in batch:
                    out[node] = f"{clean_line(stage.name, 24)} {bi + 1}/{len(stage.batches)}"
        return out
    for stage in (plan or {}).get("stages") or []:
        if not isinstance(stage, dict) or not isinstance(stage.get("nodes"), list):
            continue
        nodes, sizes = list(stage["nodes"]), stage.get("batches") or [len(stage["nodes"])]
        start = 0
        for bi, size in enumerate(sizes):
            if not isinstance(size, int):
                break
            for node in nodes[start:start + size]:
                out[node] = f"{clean_line(str(stage.get('name', '?')), 24)} {bi + 1}/{len(sizes)}"
            start += size
    return out


def group_results(report: dict[str, Any]) -> list[tuple[list[str], str, list[tuple[list[str], str]]]]:
    """Nodes grouped by outcome state, biggest first: [(nodes, state, [(nodes, message)...])],
    each state's nodes once (a folded node set in the report), its distinct messages below it."""
    states: dict[str, dict[str, list[str]]] = {}
    for node, result in (report.get("nodes") or {}).items():
        state, message = str(result.get("state", "?")), str(result.get("message", ""))
        states.setdefault(state, {}).setdefault(message, []).append(node)
    out = []
    for state, messages in states.items():
        nodes = [n for ns in messages.values() for n in ns]
        details = sorted(((ns, m) for m, ns in messages.items() if m), key=lambda g: (-len(g[0]), g[1]))
        out.append((nodes, state, details))
    return sorted(out, key=lambda g: (-len(g[0]), g[1]))
