"""Running an engine action from the CLI: transport, store (locks + audit), progress, report."""

from __future__ import annotations

import sys
from typing import Callable

from pltui.actions.base import Action, ActionReport
from pltui.cli import err, out, print_json
from pltui.fleet import Fleet
from pltui.model import ActionProgress, Event
from pltui.nodesets import fold
from pltui.paths import fleet_dir, state_root
from pltui.ssh import Transport
from pltui.store import Store, StoreError


def open_store(fleet: Fleet, state: str | None) -> Store | None:
    """The fleet's store, or None (with a warning) when it cannot be used: the action still runs."""
    try:
        return Store(fleet_dir(state_root(state), fleet.name, fleet.path) / "pltui.db")
    except (StoreError, OSError) as exc:
        err(f"pltui: warning: no audit log or node locks this run: {exc}")
        return None


def progress_printer(enabled: bool) -> Callable[[Event], None]:
    """Per-node progress lines on stderr (human mode only), so stdout stays the report."""

    def emit(event: Event) -> None:
        if enabled and isinstance(event, ActionProgress) and event.node and sys.stderr.isatty():
            err(f"  {event.node}: {event.state} {event.detail}".rstrip())

    return emit


async def run_action(fleet: Fleet, names: list[str], args, factory: Callable[..., Action]) -> ActionReport:
    store = open_store(fleet, getattr(args, "state", None))
    transport = Transport(fleet)
    try:
        action = factory(fleet, transport, store, names, emit=progress_printer(not args.json))
        return await action.run()
    finally:
        await transport.close()
        if store is not None:
            store.close()


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
