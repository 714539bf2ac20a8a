"""Node transitions from the engine (NodeTransition) in the console: one line each in the event
pane with its "since" time, a badge of unseen changes, the optional bell; a down node's
checksums are stale, not "ok"."""

from __future__ import annotations

import dataclasses

from conftest import screen_text, wait_for
from fleetdata import FROZEN_NOW, feed

from pltui.model import NodeTransition, NodeUpdated, SSHState


async def _fed(pilot, engine):
    feed(engine)
    await wait_for(pilot, lambda: pilot.app.main.table.get_cell("node01", "ssh").plain.startswith("ok"))


async def test_transitions_show_with_since_badge_and_bell(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        rings: list[int] = []
        app.bell = lambda: rings.append(1)
        engine.emit(NodeTransition(node="node02", kind="went-down", detail="timeout: no answer in 30s",
                                   since=FROZEN_NOW - 300, time=FROZEN_NOW))
        engine.emit(NodeTransition(node="node03", kind="new-drift", detail="bin/proxy drifted",
                                   since=FROZEN_NOW - 60, time=FROZEN_NOW))
        engine.emit(NodeTransition(node="node04", kind="came-back", since=FROZEN_NOW - 10, time=FROZEN_NOW))
        await wait_for(pilot, lambda: app.changes_unseen == 3)
        app.refresh_header()
        assert "3 changes (e)" in app.main.header.render().plain
        assert rings == []                                # the bell is off unless asked for
        await pilot.press("e")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "node02: went down: timeout: no answer in 30s (since 07:55:00)" in text
        assert "node03: new drift: bin/proxy drifted (since 07:59:00)" in text
        assert "node04: came back (since 07:59:50)" in text
        assert app.changes_unseen == 0 and "changes" not in app.main.header.render().plain
        app.run_command("bell on")
        engine.emit(NodeTransition(node="node05", kind="went-down", time=FROZEN_NOW))
        engine.emit(NodeTransition(node="node05", kind="version-changed", detail="2.4.1 -> 2.5.0", time=FROZEN_NOW))
        await wait_for(pilot, lambda: bool(rings))
        await pilot.pause(0.3)
        assert rings == [1]                               # a node going down rings; a version change does not
        engine.emit(NodeTransition(node="[/x]", kind="[/went]", detail="[bold]\x1b[2J", time=FROZEN_NOW))
        await pilot.pause(0.4)
        assert app.is_running and "[bold]" in screen_text(app)


async def test_a_down_node_does_not_keep_sums_ok(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        table = app.main.table
        assert table.get_cell("node01", "checksums").plain == "ok"
        down = dataclasses.replace(engine.statuses["node01"], ssh=SSHState.TIMEOUT, error="timeout")
        engine.statuses["node01"] = down                  # the consensus still holds its old digests
        engine.emit(NodeUpdated(status=down))
        await wait_for(pilot, lambda: table.get_cell("node01", "checksums").plain != "ok")
        assert table.get_cell("node01", "checksums").plain == "stale"
