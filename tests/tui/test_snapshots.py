"""Snapshots pinning the main screen (80x24, 160x50, high-contrast), the detail screen and the
rollout progress screen (at the stage gate, and its final report).

The engine is real but not sweeping: statuses are fed through its emit path (fleetdata.feed),
the console's clock is frozen, the store holds rows at fixed times. Update with
`pytest tests/tui/test_snapshots.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import wait_for, wait_text
from fleetdata import FROZEN_NOW, feed, make_engine
from scripted_action import ScriptedRollout
from test_screens import seed_history

from pltui.tui import operations
from pltui.tui.app import ConsoleApp


@pytest.fixture
def sync_engine(fleet_file, tmp_path):
    engine = make_engine(fleet_file, tmp_path / "state")
    yield engine
    asyncio.run(engine.close())


@pytest.fixture
def app_for(sync_engine, config_dir):
    def make(**kwargs) -> ConsoleApp:
        return ConsoleApp(sync_engine, start_engine=False, clock=lambda: FROZEN_NOW, config_dir=config_dir, **kwargs)
    return make


def _swept(app) -> bool:
    table = app.main.table
    return table.row_count > 0 and table.get_cell("node01", "ssh").plain != "?"


async def _fed(pilot):
    await wait_for(pilot, lambda: pilot.app.main is not None and pilot.app.main.table.row_count > 0)
    feed(pilot.app.view.engine)
    await wait_for(pilot, lambda: _swept(pilot.app))
    await pilot.pause(0.3)


async def _quiet(pilot):
    """No toasts in snapshots: their lifetime depends on the machine's speed."""
    pilot.app.clear_notifications()
    await pilot.pause(0.2)


def test_main_80x24(snap_compare, app_for):
    async def before(pilot):
        await _fed(pilot)
        await pilot.press("down", "down", "space")
        await wait_text(pilot, "1 marked")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def test_main_160x50(snap_compare, app_for):
    async def before(pilot):
        await _fed(pilot)
        pilot.app.main.set_marks(["node01", "node02", "node03"])
        pilot.app.run_command("sort checksums")
        await pilot.pause(0.2)
        await pilot.press("e")
        await wait_text(pilot, "checksum sweep 1 done", "sums ▲")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(160, 50), run_before=before)


def test_main_high_contrast_80x24(snap_compare, app_for):
    assert snap_compare(app_for(theme="high-contrast"), terminal_size=(80, 24), run_before=_fed)


def test_detail(snap_compare, app_for, sync_engine):
    seed_history(sync_engine, "node09")

    async def before(pilot):
        await _fed(pilot)
        pilot.app.main.table.go_to("node09")
        await pilot.press("enter")
        await wait_text(pilot, "heal failed: connection refused", "last 2h")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(100, 44), run_before=before)


@pytest.fixture
def scripted(monkeypatch):
    async def build(spec, ctx, names, option):
        action = ScriptedRollout(ctx.fleet, ctx.engine.transport, ctx.engine.store, names, emit=ctx.emit,
                                 control=ctx.control, action_id="rollout-20270115-080000-abc123")
        return action, action.plan()

    monkeypatch.setattr(operations, "build", build)
    monkeypatch.setattr(operations, "resolve", lambda spec: None)


async def _start_rollout(pilot, answer_gate: str | None = None):
    app = pilot.app
    await _fed(pilot)
    app.main.set_marks([f"node{i:02d}" for i in range(1, 10)])
    await pilot.press("r")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PromptScreen")
    app.screen.query_one("Input").value = "/srv/bundles/cdn-2.5.0.tar.gz"
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
    return app


def test_rollout_confirm(snap_compare, app_for, scripted):
    async def before(pilot):
        await _start_rollout(pilot)
        await wait_text(pilot, "stage 2 production")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(100, 34), run_before=before)


def test_rollout_progress_at_gate(snap_compare, app_for, scripted):
    async def before(pilot):
        app = await _start_rollout(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(app.runs) and app.runs[0].control.waiting_at_gate)
        await wait_text(pilot, "stage gate: production", "3.4M/3.4M", "done 3")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(100, 34), run_before=before)


def test_rollout_report(snap_compare, app_for, scripted):
    async def before(pilot):
        app = await _start_rollout(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(app.runs) and app.runs[0].control.waiting_at_gate)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.runs[0].finished)
        await wait_text(pilot, "report: finished with failures", "back on 2.4.1")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(100, 34), run_before=before)


# -- 80x24: every screen with its key line visible ------------------------------------------------


def test_rollout_confirm_80x24(snap_compare, app_for, scripted):
    async def before(pilot):
        await _start_rollout(pilot)
        await wait_text(pilot, "no (default)")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def test_rollout_report_80x24(snap_compare, app_for, scripted):
    async def before(pilot):
        app = await _start_rollout(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(app.runs) and app.runs[0].control.waiting_at_gate)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.runs[0].finished)
        await wait_text(pilot, "report: finished with failures")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def test_help_80x24(snap_compare, app_for):
    async def before(pilot):
        await _fed(pilot)
        await pilot.press("question_mark")
        await wait_text(pilot, "esc / q / ? close")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def test_transitions_in_event_pane_80x24(snap_compare, app_for):
    from pltui.model import NodeTransition

    async def before(pilot):
        await _fed(pilot)
        engine = pilot.app.view.engine
        engine.emit(NodeTransition(node="node06", kind="went-down", detail="timeout: no answer in 30s",
                                   since=FROZEN_NOW - 300, time=FROZEN_NOW - 290))
        engine.emit(NodeTransition(node="node09", kind="new-drift", detail="bin/proxy drifted",
                                   since=FROZEN_NOW - 60, time=FROZEN_NOW - 50))
        engine.emit(NodeTransition(node="node11", kind="came-back", since=FROZEN_NOW - 10, time=FROZEN_NOW - 5))
        await wait_for(pilot, lambda: pilot.app.changes_unseen == 3)
        pilot.app.refresh_header()
        await wait_text(pilot, "3 changes (e)")
        await pilot.press("e")
        await wait_text(pilot, "node11: came back")
        await pilot.press("W")                     # worst first
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def test_filter_prompt_80x24(snap_compare, app_for):
    async def before(pilot):
        await _fed(pilot)
        await pilot.press("slash")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "PromptScreen")
        pilot.app.screen.query_one("Input").value = "down"
        await wait_for(pilot, lambda: pilot.app.main.table.row_count == 4)
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


# -- the rollout review with its options, and :rollouts ------------------------------------------


def _bundle_here(tmp_path, monkeypatch) -> str:
    """A real bundle, typed as a relative name (the review shows the bundle as typed: no
    temporary path in the snapshot)."""
    bundle = tmp_path / "cdn-2.5.0"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "VERSION").write_text("2.5.0\n")
    (bundle / "bin" / "proxy").write_text("#!/bin/sh\n")
    for path in (bundle / "bin" / "proxy", bundle / "VERSION", bundle / "bin", bundle):
        os.utime(path, (FROZEN_NOW, FROZEN_NOW))      # mtimes are kept in the tarball: a fixed digest
    monkeypatch.chdir(tmp_path)
    return "cdn-2.5.0"


def test_rollout_review_options_80x24(snap_compare, app_for, tmp_path, monkeypatch):
    bundle = _bundle_here(tmp_path, monkeypatch)

    async def before(pilot):
        app = pilot.app
        await _fed(pilot)
        app.main.set_marks([f"node{i:02d}" for i in range(1, 7)])
        app.run_command(f"rollout {bundle} --failhard")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RolloutReviewScreen", timeout=30)
        await pilot.press("e", "b")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PromptScreen")
        app.screen.query_one("Input").value = "2"
        await pilot.press("enter")
        await wait_text(pilot, "reload on", "failhard on", "batch 2", "batches 2, 2, 2", "max_fail")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)


def _seed_rollouts(engine, tmp_path) -> None:
    """Two saved rollouts at fixed times: one halted half-way, one done."""
    from pltui.actions.bundle import Bundle
    from pltui.actions.rollout import Rollout, build_stages

    src = tmp_path / "b"
    (src / "bin").mkdir(parents=True)
    (src / "VERSION").write_text("2.5.0\n")
    (src / "bin" / "proxy").write_text("#!/bin/sh\n")
    bundle = Bundle.open(src, tmp_path / "bundles")
    fleet, store = engine.fleet, engine.store
    for action_id, phases, status, why, at in (
            ("rollout-20270115-070000-aaa111", ["done"] * 4, "done", None, FROZEN_NOW - 7200),
            ("rollout-20270115-080000-bbb222", ["done", "done", "failed", "pending"], "halted",
             "batch 2 failed on node03 (health check: timeout)", FROZEN_NOW - 600)):
        names = [f"node{i:02d}" for i in range(1, 5)]
        action = Rollout.new(fleet, engine.transport, store, bundle, build_stages(fleet, names, batch="2"),
                             action_id=action_id)
        for name, phase in zip(names, phases):
            action.state["nodes"][name]["phase"] = phase
        action.state["status"], action.state["stopped_because"] = status, why
        store.save_action(action_id, "rollout", status, action.state)
        with store.db:
            store.db.execute("UPDATE actions SET started=?, updated=?, owner=? WHERE id=?",
                             (at - 60, at, "ops@console", action_id))


def test_rollouts_screen_80x24(snap_compare, app_for, sync_engine, tmp_path):
    _seed_rollouts(sync_engine, tmp_path)

    async def before(pilot):
        await _fed(pilot)
        pilot.app.run_command("rollouts")
        await wait_text(pilot, "2 saved rollouts", "rollout-20270115-080000-bbb222", "stopped because")
        await _quiet(pilot)

    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=before)
