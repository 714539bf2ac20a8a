"""Hostile node strings (Rich markup, terminal escapes, C1 bytes, huge values) neither crash the
console nor reach the screen raw. The statuses bypass the probe parser on purpose: the console
must hold on its own (defence in depth)."""

from __future__ import annotations

import re

from conftest import screen_text, svg_text, wait_for
from fleetdata import feed, status_for

from pltui.model import ActionProgress, NodeUpdated, Notice, ProcStatus
from pltui.tui.screens.detail import DetailScreen

ESC = "\x1b"
HOSTILE = ("[/oops] [bold]x [link=http://evil]y[/link] \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07"
           "\x1b[31mred\x1b[0m \x9b31m \x9dC1\x9c \x7f\x00\x08 \x1bP+q\x1b\\ tail")
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def hostile_statuses(engine):
    statuses = {n: status_for(n, i) for i, n in enumerate(engine.nodes)}
    s = statuses["node02"]
    s.version = HOSTILE
    s.protocol = "[red]7" + ESC + "[5m"
    s.error = HOSTILE * 3
    s.monitor = "[/monitor]"
    s.digest_tool = ESC + "]8;;http://x" + ESC + "\\"
    s.processes = [ProcStatus("[/p]" + ESC + "[1m", False, None, HOSTILE, 3, 1, None)] + \
                  [ProcStatus(f"p{i}", True, i, "running") for i in range(300)]
    s.digests = {f"bin/[/{i}]\x1b[2J{i}": "d" * 64 for i in range(50)} | {"bin/proxy": "e" * 64}
    big = statuses["node03"]
    big.version = "v" * 100_000
    big.error = "E" * 1_000_000
    big.load = 1e300
    big.disk_free = 10 ** 30
    big.log_bytes = 10 ** 25
    big.latency_ms = 1e12
    big.uptime = 1e15
    big.heartbeat_age = 1e18
    return statuses


async def test_hostile_strings_never_reach_the_screen_raw(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        feed(engine, hostile_statuses(engine))
        engine.emit(Notice(level="error", message=HOSTILE, node="node02"))
        await wait_for(pilot, lambda: app.main.table.get_cell("node02", "version").plain != "-")
        await pilot.pause(0.4)
        table = app.main.table
        for name in ("node02", "node03"):
            for key in table.visible_columns:
                cell = table.get_cell(name, key)
                assert not RAW.search(cell.plain), (name, key, cell.plain)
                assert len(cell.plain) <= 260
        await pilot.press("e")
        await pilot.pause(0.2)
        text = screen_text(app)
        svg = app.export_screenshot()
        for raw in ("\x1b", "\x07", "\x9b", "\x9c", "\x9d", "\x00", "\x7f"):
            assert raw not in svg and raw not in text
        assert "pwned" not in text                  # whole OSC sequences are dropped, not shown
        assert "[/oops] [bold]x" in text            # markup is data: shown literally, never applied
        # every hostile node's detail screen renders too
        for name in ("node02", "node03"):
            table.go_to(name)
            await pilot.press("enter")
            assert isinstance(app.screen, DetailScreen)
            await pilot.pause(0.2)
            svg = app.export_screenshot()
            assert not RAW.search(svg_text(svg)) and "\x1b" not in svg and "pwned" not in svg
            if name == "node02":
                assert "[/p]" in svg_text(svg) and "[/oops]" in svg_text(svg)
            await pilot.press("end", "escape")
        # hostile text in action progress reaches neither the event pane nor the terminal raw
        engine.emit(ActionProgress(action_id="x", kind="[/k]", node="node02", state="failed" + ESC + "[2J",
                                   detail=HOSTILE))
        engine.emit(NodeUpdated(status=engine.statuses["node02"]))
        await pilot.pause(0.5)
        assert "\x1b" not in app.export_screenshot()
