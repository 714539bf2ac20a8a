"""Every screen fits 80x24 with its key line visible (long reviews scroll, the answer keys do
not scroll away); help is readable at 80 columns."""

from __future__ import annotations

import pytest
from conftest import screen_text, wait_for
from fleetdata import feed
from scripted_action import ScriptedRollout

from pltui.tui import operations
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.help import HelpScreen


@pytest.fixture
def scripted(monkeypatch):
    async def build(spec, ctx, names, option):
        action = ScriptedRollout(ctx.fleet, ctx.engine.transport, ctx.engine.store, names, emit=ctx.emit,
                                 control=ctx.control)
        plan = action.plan()
        plan["notes"] = [f"line {i}" for i in range(40)]           # a long review
        plan["stages"] = plan["stages"] * 6
        return action, plan

    monkeypatch.setattr(operations, "build", build)
    monkeypatch.setattr(operations, "resolve", lambda spec: None)


async def test_a_long_review_keeps_its_answer_keys_on_screen(engine, console, scripted):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        feed(engine)
        await pilot.pause(0.2)
        app.run_command("mark node[01-20]")
        app.run_command("rollout /srv/b.tgz")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "no (default)" in text and " y " in text, text
        await pilot.press("n")


async def test_help_is_readable_at_80_columns(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "mark / unmark the node (and move down)" in text, text     # one line, not squeezed
        assert "esc / q / ? close" in text


def test_the_repair_review_shows_its_plan():
    """`plan:` was empty in the review while `pltui repair --dry-run` listed what it would do."""
    fix = {"path": "bin/proxy", "majority": "ab" * 32, "had": "cd" * 32, "holders": 5, "answering": 6,
           "sources": "node[02-06]", "source_count": 5}
    plan = {"kind": "repair", "nodes": ["node01", "node07"], "plan": {
        "node01": {"track": "t", "state": "drifted", "error": None, "repair": [fix], "extra": [], "rejected": {}},
        "node07": {"track": "t", "state": "unchecked", "error": "no checksum report", "repair": [], "extra": [],
                   "rejected": {}}}, "no_quorum": {}}
    text = operations.plan_text(plan).plain
    assert "1 node node01: drifted" in text
    assert "repair bin/proxy <- majority abababababab… (5/6) from node[02-06]" in text
    assert "1 node node07: unchecked (no checksum report)" in text
