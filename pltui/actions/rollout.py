"""Rollouts: a bundle onto the fleet, stage by stage and batch by batch, crash-safe.

Plan
    Stages come from the fleet file's ``[[rollout.stage]]`` (or the command line's ``--stage
    GROUP[:batch[:max_fail]]``, a pause before every stage after the first; or the selection as one
    stage). A node belongs to the first stage naming it; with fleet stages, selected nodes in no
    stage form a last stage ``rest``; nodes outside the selection are left alone. Each stage is
    split into batches Ansible-`serial` style (`batch_sizes`: counts, percentages of the stage
    rounded down but at least 1, a list whose last entry repeats). The batches are computed once
    and saved, so a resumed rollout uses exactly the same ones.

One node (`Rollout._deploy`), each step saved to the store before it starts and after it ends
    status   ``release.sh status`` (what the node already has: resume re-derives from it) and a
             probe recording what ran before (version, processes up) for rollbacks
    upload   once per node over SFTP to ``ROOT/.pltui/staging/ID.tar.gz`` (``.part``, then a
             rename; skipped when already staged with the right sha256)
    prepare  ``release.sh prepare``: sha256 checked ON THE NODE, then extracted into
             ``.pltui/releases/ID/``. Nothing live has been touched up to here.
    stop     through the node monitor (``monitor.sh proc-stop all``) where installed, else the
             configured stop commands (or SIGTERM to the process group, SIGKILL after stop_timeout)
    swap     ``release.sh swap``: each top-level entry of the release replaces the live one, the
             old one kept in ``.pltui/releases/prev-ID/``; journalled and idempotent
    start    ``monitor.sh proc-start all``, else each start command detached (setsid + nohup,
             output to ``.pltui/run/NAME.out``, pid to the pidfile)
    verify   `Engine.probe_node` polled until the node reports the bundle's version with every
             process alive, and the same pids alive again SETTLE seconds later, within the
             health timeout (``[rollout].health_timeout``, ``--health-timeout``). Without a live
             node monitor a dead process fails at once (nobody will restart it); with one, a
             process in ``backoff`` fails at once.
    prune    ``release.sh prune``: keeps ``keep_releases`` releases (each able to roll back).
    ``--reload`` skips stop/start: swap, then ``monitor.sh reload all`` (else each process's
    reload command; a process without one is restarted), then verify.

A node failing verification (or a step after it was touched) is rolled back: stopped, its
previous release swapped back (``release.sh rollback``), restarted if any of its processes ran
before (then verified on the previous version), and counts as
*failed* (state ``rolled-back``). A failure before anything was touched (upload, sha256, extract)
is ``failed`` with the node as it was. An SSH failure (NodeError) at any step makes the node
*unreachable*, remembering the phase it was left in (``at``).

Budgets and halts
    After each node, its batch is checked: failed nodes (failed + rolled-back) and unreachable
    nodes are counted SEPARATELY, and each count is held against the stage's max_fail (a count,
    or a percentage of the batch size); strictly more than the budget halts. ``--failhard``
    halts at the first failed or unreachable node. A halt (or Ctrl-C, or an operator declining a
    pause) starts no new node: nodes in flight finish their own steps (or roll back), the rest stay
    ``pending`` and are reported ``untouched``, and the report's ``stopped_because`` says why.
    A pause (stage ``pause = true``) waits at `Control.gate` (``--yes`` passes it).

Crash safety
    The whole rollout (plan, bundle, batches, each node's phase, gates passed, runs) is one JSON
    document in the store (`Store.save_action`, kind ``rollout``), written before and after each
    node step; concurrent writes are grouped (one SQLite write per ~20 ms). ``--status`` reads it
    (a ``running`` rollout whose process is gone shows as ``interrupted``). ``--resume`` runs the
    same plan again: finished batches are skipped, failed and rolled-back nodes are final, every
    other node (pending, cut short in any phase, unreachable) is taken up from what its node
    reports (a half-done swap is completed, a swapped node is only started and verified, an
    interrupted rollback is finished). A batch's budget counts its nodes' current states, so a
    batch whose unreachable nodes now succeed goes on, and one still over budget halts again.
    ``--rollback`` returns every touched node to its previous release (and restarts it when it ran
    before); a node that moved on to a later release is left alone. With `only` (the operator's
    -w/-g/-x/-X), a resume or rollback acts on those nodes of the rollout alone; a partial rollback
    leaves the rollout's status as it was (the other nodes can still be resumed or rolled back).

Node-side layout: see pltui/node/release.sh and docs/node-layout.md.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Iterable

from pltui.actions.base import Action, ActionError, ActionReport, NodeResult
from pltui.actions.bundle import Bundle, BundleError
from pltui.actions.rolloutplan import (  # noqa: F401 (importable from here too: __all__)
    StagePlan, batch_sizes, budget_allows, build_stages, parse_stage_arg, split_batches,
)
from pltui.actions.rolloutsaved import describe, effective_status, liveness, load_saved  # noqa: F401
from pltui.actions.rolloutsteps import NodeSteps, StepFailed, release_script  # noqa: F401
from pltui.fleet import Fleet, Node
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, Transport
from pltui.store import Store, StoreError

__all__ = [
    "Rollout", "StagePlan", "StepFailed", "StateNotSaved", "batch_sizes", "budget_allows", "build_stages",
    "describe", "effective_status", "liveness", "load_saved", "parse_stage_arg", "release_script", "split_batches",
]

FORMAT = 1
SAVE_DELAY = 0.02        # group concurrent state writes

PENDING = "pending"
UNTOUCHED_PHASES = ("pending", "uploading", "uploaded")
TOUCH_PHASES = ("stopping", "stopped", "swapping", "swapped", "reloading", "starting", "started", "verifying",
                "rolling-back")
FAILED_PHASES = ("failed", "rolled-back")
FINAL_PHASES = ("done", "failed", "rolled-back")


class StateNotSaved(Exception):
    """The rollout state could not be written: no further node step may start."""


async def both(a, b):
    """Await two coroutines concurrently; if one fails, the other is cancelled (never left running)."""
    tasks = [asyncio.ensure_future(a), asyncio.ensure_future(b)]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# The action


class Rollout(NodeSteps, Action):
    """A rollout (new, resumed, or rolled back) over the saved plan in `state`."""

    kind = "rollout"

    def __init__(self, fleet: Fleet, transport: Transport, store: Store, state: dict, *, mode: str = "run",
                 state_dir: str | os.PathLike | None = None, health_timeout: float | None = None,
                 action_id: str | None = None, only: Iterable[str] | None = None, **kwargs):
        if store is None:
            raise ActionError("a rollout needs the state database (it records every step for --status/--resume)")
        self.state = state
        self.stages = [StagePlan.from_json(s) for s in state["stages"]]
        nodes = [n for s in self.stages for n in s.nodes]
        # `only`: the operator's selection on --resume/--rollback; the other nodes of the rollout
        # are neither touched nor reported (a partial resume or rollback, never a silent "all")
        self.only: set[str] | None = None
        if only is not None:
            wanted = set(only)
            nodes = [n for n in nodes if n in wanted]
            if not nodes:
                raise ActionError(f"the selection names no node of rollout {action_id or state.get('action_id')}")
            self.only = set(nodes)
        super().__init__(fleet, transport, store, nodes, action_id=action_id or state.get("action_id"), **kwargs)
        self.state["action_id"] = self.action_id
        self.mode = mode
        self.state_dir = state_dir
        self.bundle = Bundle.from_json(state["bundle"])
        self.health_timeout = health_timeout or float(state["health_timeout"])
        self.recs: dict[str, dict] = state["nodes"]
        self.halt_reason: str | None = None
        self.halt_status = "halted"
        self.status = state.get("status", "new")
        self._prior_status = self.status
        self._flush: asyncio.Future | None = None
        self._flush_task: asyncio.Task | None = None
        self._save_cost = 0.0
        self._engine = None
        self._started = time.monotonic()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def new(cls, fleet: Fleet, transport: Transport, store: Store, bundle: Bundle, stages: list[StagePlan], *,
            reload: bool = False, failhard: bool = False, health_timeout: float | None = None,
            action_id: str | None = None, **kwargs) -> "Rollout":
        state = {
            "format": FORMAT,
            "fleet": str(fleet.path) if fleet.path else fleet.name,
            "bundle": bundle.to_json(),
            "reload": reload,
            "failhard": failhard,
            "health_timeout": health_timeout or fleet.rollout.health_timeout,
            "keep_releases": fleet.rollout.keep_releases,
            "stages": [s.to_json() for s in stages],
            "nodes": {n: {"phase": PENDING, "stage": si, "batch": bi}
                      for si, s in enumerate(stages) for bi, b in enumerate(s.batches) for n in b},
            "gates_passed": [],
            "runs": [],
            "status": "new",
            "stopped_because": None,
        }
        return cls(fleet, transport, store, state, action_id=action_id, **kwargs)

    @classmethod
    def load(cls, fleet: Fleet, transport: Transport, store: Store, action_id: str, *, mode: str,
             **kwargs) -> "Rollout":
        saved = load_saved(store, action_id)
        state = saved["state"]
        if state.get("format") != FORMAT:
            raise ActionError(f"rollout {action_id} was saved by another pltui version (format {state.get('format')})")
        bundle = Bundle.from_json(state["bundle"])
        if mode == "resume":
            try:
                bundle.check()
            except BundleError as exc:
                raise ActionError(str(exc)) from None
        if mode == "resume" and saved["status"] == "rolled-back":
            raise ActionError(f"rollout {action_id} was rolled back; start a new rollout instead of resuming it")
        live = liveness(saved)
        if live:
            raise ActionError(f"rollout {action_id} is still running ({live})")
        return cls(fleet, transport, store, state, mode=mode, action_id=action_id, **kwargs)

    # -- plan / report ----------------------------------------------------------------------------

    def arguments(self) -> dict:
        return {"mode": self.mode, "bundle": self.bundle.source, "version": self.bundle.version,
                "sha256": self.bundle.sha256, "reload": self.state["reload"], "failhard": self.state["failhard"]}

    def plan(self) -> dict:
        from pltui.nodesets import fold

        return {
            "kind": self.kind,
            "action_id": self.action_id,
            "mode": self.mode,
            "bundle": {k: v for k, v in self.bundle.to_json().items() if k != "entries"},
            "reload": self.state["reload"],
            "failhard": self.state["failhard"],
            "health_timeout": self.health_timeout,
            "selection": None if self.only is None else {"nodes": fold(self.nodes), "count": len(self.nodes)},
            "stages": [{"name": s.name, "nodes": fold(s.nodes), "count": len(s.nodes),
                        "batches": [len(b) for b in s.batches], "parallel": s.parallel, "max_fail": s.max_fail,
                        "pause": s.pause} for s in self.stages],
        }

    def build_report(self) -> ActionReport:
        self.results = {}
        versions: dict[str, int] = {}
        for name in self.nodes:
            rec = self.recs[name]
            phase = rec["phase"]
            stage = self.stages[rec["stage"]]
            data = {"phase": phase, "stage": stage.name, "batch": rec["batch"] + 1, "version": rec.get("version")}
            if rec.get("at"):
                data["at"] = rec["at"]
            if rec.get("version"):
                versions[rec["version"]] = versions.get(rec["version"], 0) + 1
            message = rec.get("message") or ""
            if self.mode == "rollback" and not rec.get("touched"):
                state = "untouched"
                message = f"never touched by the rollout ({phase})"
            elif phase == PENDING or (phase in UNTOUCHED_PHASES and self.mode != "rollback"):
                state = "untouched"
                message = message or (self.halt_reason or "not reached")
            elif phase in ("done", "failed", "rolled-back", "unreachable"):
                state = phase
            else:
                state = phase
                message = f"interrupted while {phase}" + (f": {message}" if message else "")
            self.results[name] = NodeResult(name, state, message, data)
        ok_states = {"rolled-back", "untouched", "skipped"} if self.mode == "rollback" else {"done"}
        ok = self.halt_reason is None and all(r.state in ok_states for r in self.results.values())
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        summary = {"counts": counts, "versions": versions, "bundle_version": self.bundle.version,
                   "status": self.status, "elapsed": round(time.monotonic() - self._started, 2)}
        return ActionReport(self.action_id, self.kind, ok, dict(self.results), summary, self.halt_reason)

    # -- persistence --------------------------------------------------------------------------------

    def save_now(self, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        self.state["status"] = self.status
        self.state["stopped_because"] = self.halt_reason
        self.state["updated"] = time.time()
        self.store.save_action(self.action_id, self.kind, self.status, self.state)

    async def persist(self) -> None:
        """Save the state; concurrent callers within SAVE_DELAY share one write. Raises StoreError."""
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_future()
            self._flush_task = asyncio.create_task(self._flusher())
        await asyncio.shield(self._flush)

    async def _flusher(self) -> None:
        # group writes: wait a little, longer when a write costs more (large fleets), so saving
        # the state never takes more than about a quarter of the time
        await asyncio.sleep(max(SAVE_DELAY, 3 * self._save_cost))
        fut, self._flush = self._flush, None
        started = time.monotonic()
        try:
            self.save_now()
            self._save_cost = time.monotonic() - started
        except StoreError as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: callers that went away must not warn
        else:
            fut.set_result(None)

    async def set_phase(self, name: str, phase: str, message: str | None = None, **extra) -> None:
        rec = self.recs[name]
        if phase == "unreachable":
            if rec["phase"] != "unreachable":
                rec["at"] = rec["phase"]
        elif phase not in FINAL_PHASES:
            rec.pop("at", None)
        if phase in TOUCH_PHASES:
            rec["touched"] = True
        rec["phase"] = phase
        rec["t"] = time.time()
        if message is not None:
            rec["message"] = clean_line(message, 300)
        elif phase not in FINAL_PHASES:
            rec.pop("message", None)  # the message belongs to the step that wrote it, not to this one
        rec.update(extra)
        self.progress(name, phase, rec.get("message", "") if phase in FINAL_PHASES + ("unreachable",) else (message or ""))
        try:
            await self.persist()
        except StoreError as exc:
            self.halt(f"rollout state not saved ({exc}); stopped to stay resumable")
            raise StateNotSaved(str(exc)) from None

    def halt(self, reason: str, status: str = "halted") -> None:
        if self.halt_reason is None:
            self.halt_reason = reason
            self.halt_status = status

    def interrupt(self, reason: str) -> None:
        """Stop starting nodes (Ctrl-C): in-flight nodes finish; the rollout can be resumed."""
        self.halt(reason, "interrupted")
        self.control.abort()

    # -- node-side commands ---------------------------------------------------------------------------

    # -- one node -------------------------------------------------------------------------------

    async def run_node(self, name: str) -> None:
        rec = self.recs[name]
        node = self.fleet.nodes.get(name)
        if node is None:
            await self.set_phase(name, "failed", "not in the fleet file any more")
            return
        try:
            if self.mode == "rollback":
                await self._operator_rollback(name, node, rec)
            else:
                await self._deploy(name, node, rec)
        except NodeError as exc:
            self.transport.drop(name)
            await self._safe_phase(name, "unreachable", exc.message)
        except StepFailed as exc:
            await self._safe_phase(name, "failed", str(exc))
        except StateNotSaved:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: one node's problem, reported, never a crash of the rollout
            await self._safe_phase(name, "failed", f"internal error: {type(exc).__name__}: {exc}")

    async def _safe_phase(self, name: str, phase: str, message: str) -> None:
        try:
            await self.set_phase(name, phase, message)
        except StateNotSaved:
            pass

    async def _deploy(self, name: str, node: Node, rec: dict) -> None:
        reload = bool(self.state["reload"])
        where = rec["at"] if rec["phase"] == "unreachable" else rec["phase"]
        self.progress(name, "checking", "release state and running version")
        earlier = rec.pop("message", None)  # from an earlier run; this run writes its own
        if "before" not in rec:  # first contact: what runs now (for a rollback), and what the node has
            info, before = await both(self.node_release_status(node), self.probe(node))
            rec["before"] = {"version": before.version,
                             "running": any(p.alive for p in before.processes)}
        else:
            info = await self.node_release_status(node)
        node_state = info.get("state", "none")
        if node_state == "rolling-back" or where == "rolling-back" or (
                node_state == "rolled-back" and rec.get("touched")):
            await self._revert(name, node, rec, earlier or "rollback interrupted", final="rolled-back")
            return
        swapped = node_state == "swapped" and info.get("current") == self.action_id
        if not swapped:
            if node_state != "swapping":
                if info.get("staged") != "yes":
                    await self.set_phase(name, "uploading")
                    await self.upload(name, node)
                await self.set_phase(name, "uploading", "verifying sha256 and extracting")
                await self.release(node, "prepare")
                await self.set_phase(name, "uploaded")
            try:
                if not reload:
                    await self.set_phase(name, "stopping")
                    await self.release(node, "stop")
                    await self.set_phase(name, "stopped")
                await self.set_phase(name, "swapping")
                await self.release(node, "swap")
                await self.set_phase(name, "swapped")
            except StepFailed as exc:
                await self._revert(name, node, rec, str(exc))
                return
        try:
            if reload:
                await self.set_phase(name, "reloading")
                await self.release(node, "reload")
            else:
                await self.set_phase(name, "starting")
                await self.release(node, "start")
            await self.set_phase(name, "verifying")
            ok, why, status = await self.verify(node, self.bundle.version, self.health_timeout)
        except StepFailed as exc:
            await self._revert(name, node, rec, str(exc))
            return
        if not ok:
            await self._revert(name, node, rec, why)
            return
        note = ""
        try:
            await self.release(node, "prune")
        except StepFailed as exc:
            note = f" (prune failed: {exc})"
        await self.set_phase(name, "done", f"version {status.version}{note}", version=status.version)

    async def _revert(self, name: str, node: Node, rec: dict, why: str, final: str = "rolled-back") -> None:
        """Put the previous release back (stop, rollback, start if it ran before); final phase `final`."""
        await self.set_phase(name, "rolling-back", why)
        before = rec.get("before") or {}
        try:
            if not self.state["reload"] or self.mode == "rollback":
                await self.release(node, "stop")
            await self.release(node, "rollback")
            if before.get("running"):
                await self.release(node, "reload" if self.state["reload"] and self.mode != "rollback" else "start")
                if self.state["reload"] and self.mode != "rollback":
                    await self.release(node, "start")
                ok, problem, status = await self.verify(node, before.get("version"), self.health_timeout)
                after = f"back on {before.get('version') or 'the previous release'}"
                if not ok:
                    await self.set_phase(name, "failed", f"{why}; rolled back, but the previous release is not "
                                                         f"healthy: {problem}", version=status.version if status else None)
                    return
                await self.set_phase(name, final, f"{why}; {after}", version=status.version)
            else:
                await self.set_phase(name, final, f"{why}; previous files restored (nothing ran before)",
                                     version=before.get("version"))
        except StepFailed as exc:
            await self.set_phase(name, "failed", f"{why}; rollback FAILED: {exc} (node needs attention)")

    async def _operator_rollback(self, name: str, node: Node, rec: dict) -> None:
        info = await self.node_release_status(node)
        node_state = info.get("state", "none")
        if node_state == "swapped" and info.get("current") != self.action_id:
            await self.set_phase(name, rec["phase"] if rec["phase"] in FINAL_PHASES else "failed",
                                 f"not rolled back: node has moved on to release {clean_line(info.get('current'), 80)}")
            return
        await self._revert(name, node, rec, "rolled back by the operator")

    # -- the run --------------------------------------------------------------------------------

    def _batch_check(self, stage: StagePlan, si: int, bi: int) -> str | None:
        batch = stage.batches[bi]
        failed = [n for n in batch if self.recs[n]["phase"] in FAILED_PHASES]
        unreachable = [n for n in batch if self.recs[n]["phase"] == "unreachable"]
        where = f"stage {stage.name} batch {bi + 1}/{len(stage.batches)}"
        if self.state["failhard"] and (failed or unreachable):
            first = (failed + unreachable)[0]
            return f"--failhard: {first} {self.recs[first]['phase']} in {where}: {self.recs[first].get('message', '')}"
        if not budget_allows(len(failed), len(batch), stage.max_fail):
            return (f"{where}: {len(failed)} of {len(batch)} nodes failed, more than max_fail {stage.max_fail} "
                    f"({', '.join(failed[:5])}{'...' if len(failed) > 5 else ''})")
        if not budget_allows(len(unreachable), len(batch), stage.max_fail):
            return (f"{where}: {len(unreachable)} of {len(batch)} nodes unreachable, more than max_fail "
                    f"{stage.max_fail} ({', '.join(unreachable[:5])}{'...' if len(unreachable) > 5 else ''})")
        return None

    def _todo(self, nodes: list[str]) -> list[str]:
        if self.only is not None:
            nodes = [n for n in nodes if n in self.only]
        if self.mode == "rollback":
            return [n for n in nodes if self.recs[n].get("touched") and self.recs[n]["phase"] != "rolled-back"]
        return [n for n in nodes if self.recs[n]["phase"] not in FINAL_PHASES]

    async def _run_batch(self, stage: StagePlan, si: int, bi: int) -> None:
        todo = self._todo(stage.batches[bi])
        limit = asyncio.Semaphore(max(1, stage.parallel))

        async def one(name: str) -> None:
            async with limit:
                if self.halt_reason or not await self.control.checkpoint() or self.halt_reason:
                    return
                await self.run_node(name)
                if self.mode != "rollback":
                    reason = self._batch_check(stage, si, bi)
                    if reason:
                        self.halt(reason)

        await asyncio.gather(*(one(n) for n in todo))

    async def execute(self) -> ActionReport:
        self.state["runs"].append({"mode": self.mode, "pid": os.getpid(), "host": socket.gethostname(),
                                   "started": time.time()})
        try:
            self.save_now("rolling-back" if self.mode == "rollback" else "running")
        except StoreError as exc:
            raise ActionError(f"cannot record the rollout, so it does not start: {exc}") from None
        try:
            if self.mode == "rollback":
                await self._execute_rollback()
            else:
                await self._execute_stages()
        except asyncio.CancelledError:
            self.halt("interrupted (cancelled) in the middle of node steps", "interrupted")
            self._final_save("interrupted")
            raise
        if self.halt_reason is None and self.control.aborted:
            self.halt("interrupted by the operator", "interrupted")
        if self.mode == "rollback":
            status = "rolled-back" if self._all_rolled_back() else self._partial_status()
        else:
            status = self.halt_status if self.halt_reason else "done"
        self._final_save(status)
        return self.build_report()

    def _all_rolled_back(self) -> bool:
        """Whether no touched node of the whole rollout (selected or not) is left un-rolled-back."""
        return all(r["phase"] == "rolled-back" or not r.get("touched") for r in self.recs.values())

    def _partial_status(self) -> str:
        """A partial rollback (a selection) leaves the rollout's own status; a run cut short is interrupted."""
        prior = self._prior_status
        return prior if prior in ("done", "halted", "paused", "interrupted", "rolled-back") else "interrupted"

    def _save_status(self, status: str) -> bool:
        try:
            self.save_now(status)
            return True
        except StoreError as exc:
            self.halt(f"rollout state not saved ({exc}); stopped to stay resumable")
            return False

    def _final_save(self, status: str) -> None:
        self.state["runs"][-1]["ended"] = time.time()
        try:
            self.save_now(status)
        except StoreError as exc:
            self.halt(f"final rollout state not saved: {exc}")

    async def _execute_stages(self) -> None:
        passed = self.state.setdefault("gates_passed", [])
        for si, stage in enumerate(self.stages):
            if self.halt_reason:
                return
            if self._todo(stage.nodes) and stage.pause and stage.name not in passed:
                done = sum(1 for n in self.nodes if self.recs[n]["phase"] == "done")
                if not self._save_status("paused"):
                    return
                self.progress(None, "paused", f"before stage {stage.name} ({len(stage.nodes)} nodes); "
                                              f"{done} nodes done so far")
                if not await self.control.gate(stage.name):
                    self.halt(f"paused before stage {stage.name}: the operator did not continue "
                              f"(go on with --resume {self.action_id})", "paused")
                    return
                passed.append(stage.name)
                if not self._save_status("running"):
                    return
            for bi in range(len(stage.batches)):
                if self.halt_reason:
                    return
                todo = self._todo(stage.batches[bi])
                if todo:
                    self.progress(None, f"stage {stage.name} batch {bi + 1}/{len(stage.batches)}",
                                  f"{len(todo)} nodes, {min(stage.parallel, len(todo))} at a time")
                    await self._run_batch(stage, si, bi)
                reason = self._batch_check(stage, si, bi)  # also for batches finished by an earlier run
                if reason:
                    self.halt(reason)

    async def _execute_rollback(self) -> None:
        todo = self._todo(self.nodes)
        self.progress(None, "rolling back", f"{len(todo)} touched nodes")
        parallel = max(s.parallel for s in self.stages)
        limit = asyncio.Semaphore(parallel)

        async def one(name: str) -> None:
            async with limit:
                if not await self.control.checkpoint():
                    return
                await self.run_node(name)

        await asyncio.gather(*(one(n) for n in todo))
