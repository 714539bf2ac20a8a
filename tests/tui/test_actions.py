"""The console's action plumbing: confirm (default No), progress with pause / continue / abort,
the stage gate, byte progress, the final report; read-only refusals; quitting while an action
runs; actions whose module is not written yet."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from conftest import screen_text, wait_for, wait_text
from fleetdata import feed
from scripted_action import ScriptedRollout

from pltui.tui import operations
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.progress import ProgressScreen
from pltui.tui.screens.prompt import PromptScreen


@pytest.fixture
def scripted(monkeypatch):
    """Route `r` to ScriptedRollout (a real Action subclass) instead of the bundle machinery."""
    made = {}

    async def build(spec, ctx, names, option):
        action = ScriptedRollout(ctx.fleet, ctx.engine.transport, ctx.engine.store, names, emit=ctx.emit,
                                 control=ctx.control, release=made.get("release"), gate=made.get("gate", True))
        made["action"] = action
        return action, action.plan()

    monkeypatch.setattr(operations, "build", build)
    monkeypatch.setattr(operations, "resolve", lambda spec: None)
    return made


async def start_rollout(pilot, app, bundle="/srv/bundles/2.5.0.tar.gz", answer="y"):
    await pilot.press("r")
    assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
    app.screen.query_one("Input").value = bundle
    await pilot.press("enter")
    assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.press(answer)


async def test_rollout_gate_pause_abort_and_report(engine, console, scripted):
    scripted["release"] = asyncio.Event()
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        app.run_command("mark node[01-09]")
        await pilot.pause()
        await start_rollout(pilot, app)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        screen = app.screen
        run = screen.job
        assert await wait_for(pilot, lambda: run.control.waiting_at_gate)
        await wait_text(pilot, "stage gate: production", "waiting at gate production", "bytes [", "100%", "3.4M/3.4M")
        app.refresh_header()
        header = app.main.header.render().plain           # a gate waits for the operator: say so
        assert "rollout waiting for you (A)" in header and "running" not in header
        await pilot.press("y")                                   # go on with the next stage
        assert await wait_for(pilot, lambda: run.states["node04"].state == "swapping")
        await pilot.press("p")                                   # pause
        assert run.control.paused
        await wait_text(pilot, "paused")
        app.refresh_header()
        assert "rollout paused (A)" in app.main.header.render().plain
        await pilot.press("c")                                   # continue
        assert not run.control.paused
        app.refresh_header()
        assert "rollout running (A)" in app.main.header.render().plain
        scripted["release"].set()
        assert await wait_for(pilot, lambda: run.finished)
        await wait_text(pilot, "finished with failures", "rolled-back (1): node09", "done (8): node[01-08]")
        assert run.report["nodes"]["node09"]["state"] == "rolled-back"
        await pilot.press("escape")
        assert app.screen is app.main
        assert "running" not in app.main.header.render().plain


async def test_stop_at_gate_and_abort(engine, console, scripted):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        app.run_command("mark @all")
        await start_rollout(pilot, app)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        run = app.screen.job
        assert await wait_for(pilot, lambda: run.control.waiting_at_gate)
        await pilot.press("n")
        assert await wait_for(pilot, lambda: run.finished)
        await wait_text(pilot, "stopped at the gate before production")
        # another one, aborted while its batch runs
        scripted["release"] = asyncio.Event()
        scripted["gate"] = False
        await pilot.press("escape")
        await start_rollout(pilot, app)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.job is not run)
        run2 = app.screen.job
        assert await wait_for(pilot, lambda: run2.states["node09"].state == "swapping")
        await pilot.press("a")
        assert run2.control.aborted
        scripted["release"].set()
        assert await wait_for(pilot, lambda: run2.finished)
        await wait_text(pilot, "aborted by the operator")
        assert any(p.state == "untouched" for p in run2.states.values())


async def test_confirm_defaults_to_no(engine, console, scripted):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        for key in ("enter", "n", "escape"):
            await start_rollout(pilot, app, answer=key)
            assert await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert app.screen is app.main and not app.runs
        await pilot.press("r")                                    # esc at the bundle prompt backs out
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("escape")
        assert app.screen is app.main and not app.runs


async def test_quit_asks_while_an_action_runs(engine, console, scripted):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        await start_rollout(pilot, app)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        run = app.screen.job
        assert await wait_for(pilot, lambda: run.control.waiting_at_gate)
        await pilot.press("escape", "q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "An action is running (rollout on 1 nodes)" in screen_text(app)
        await pilot.press("n")
        assert app.is_running and app.screen is app.main
        await pilot.press("q")
        await pilot.press("y")
        await pilot.pause()
    assert run.control.aborted


async def test_readonly_refuses_mutating_actions(engine, console, fleet_file):
    app = console(engine, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        assert "read-only" in app.main.header.render().plain
        for key in ("h", "r", "R", "x", "F"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.main, key
        app.run_command("exec uname -a")
        app.run_command("rollout /tmp/b.tgz")
        app.run_command("heal")
        app.run_command("mark @alpha")
        app.run_command("group save canary")
        await pilot.pause(0.3)
        messages = [n.message for n in app._notifications]
        assert sum("read-only" in m for m in messages) == 4
        assert "canary" not in fleet_file.read_text()
        await pilot.press("question_mark")
        assert "(disabled: read-only)" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("l")                                     # collecting logs changes no node
        if importlib.util.find_spec("pltui.actions.logs") is not None:
            assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
            await pilot.press("escape")


async def test_missing_action_module_says_not_available(engine, console, monkeypatch):
    from dataclasses import replace

    from pltui.tui import dispatch

    monkeypatch.setitem(dispatch.SPECS, "capture", replace(dispatch.SPECS["capture"], module="pltui.actions.nosuch"))
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await pilot.pause(0.3)
        assert app.screen is app.main
        assert any("capture is not available yet" in n.message for n in app._notifications)
