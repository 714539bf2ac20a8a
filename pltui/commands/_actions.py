"""Running an engine action from the CLI: transport, store (locks + audit), progress, report."""

from __future__ import annotations

import sys
from typing import Callable

from pltui.actions.base import Action, ActionError, ActionReport
from pltui.cli import UsageError, err, out, print_json
from pltui.fleet import Fleet
from pltui.model import ActionProgress, Event
from pltui.nodesets import fold
from pltui.paths import fleet_dir, state_root
from pltui.ssh import Transport
from pltui.store import Store, StoreError


def open_store(fleet: Fleet, state: str | None, *, need_locks: bool = False) -> Store | None:
    """The fleet's store, or None (with a warning) when it cannot be used: a read-only action still
    runs. With `need_locks` (the action changes nodes) it is refused instead (ActionError): without
    the store's node locks it could collide with another operator's action on the same nodes."""
    try:
        store = Store(fleet_dir(state_root(state), fleet.name, fleet.path) / "pltui.db")
    except (StoreError, OSError) as exc:
        if need_locks:
            raise ActionError(f"cannot take node locks, so another operator's action could collide with this one: "
                              f"{exc}") from None
        err(f"pltui: warning: no audit log this run: {exc}")
        return None
    if store.notice:
        err(f"pltui: warning: {store.notice}")
    return store


def progress_printer(enabled: bool) -> Callable[[Event], None]:
    """Per-node progress lines on stderr (human mode only), so stdout stays the report."""

    def emit(event: Event) -> None:
        if enabled and isinstance(event, ActionProgress) and event.node and sys.stderr.isatty():
            err(f"  {event.node}: {event.state} {event.detail}".rstrip())

    return emit


async def run_action(fleet: Fleet, names: list[str], args, factory: Callable[..., Action]) -> tuple[Action, ActionReport]:
    """Build the action with `factory(fleet, transport, store, names, emit=...)`, run it, and
    return it with its report; an ActionError (bad input, nodes locked) is a usage error."""
    transport = Transport(fleet)
    store = None
    try:
        action = factory(fleet, transport, None, names, emit=progress_printer(not args.json))
        store = open_store(fleet, getattr(args, "state", None), need_locks=action.mutating)
        action.store = store
        return action, await action.run()
    except ActionError as exc:
        raise UsageError(str(exc)) from None
    finally:
        await transport.close()
        if store is not None:
            store.close()


def print_report_json(report: ActionReport, fleet: Fleet) -> None:
    doc = report.to_json()
    doc["fleet"] = fleet.name
    print_json(doc)


def print_report(report: ActionReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    by_outcome: dict[tuple[str, str], list[str]] = {}
    for node, result in report.results.items():
        by_outcome.setdefault((result.state, result.message), []).append(node)
    for (state, message), nodes in sorted(by_outcome.items()):
        out(f"{fold(nodes)} ({len(nodes)}): {state}" + (f": {message}" if message else ""))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.summary.get("counts", {}).items()))
    verdict = "ok" if report.ok else "NOT OK"
    out(f"{report.kind} {report.action_id}: {verdict} ({counts})"
        + (f"; stopped: {report.stopped_because}" if report.stopped_because else ""))
