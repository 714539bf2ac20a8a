"""The main screen against a real engine fed with fixed statuses: table, header, marks, filter,
sort, pause, event pane, coalescing, narrow terminals."""

from __future__ import annotations

import dataclasses

from conftest import screen_text, wait_for
from fleetdata import FROZEN_NOW, feed, status_for

from pltui.model import NodeUpdated, SSHState
from pltui.tui.screens.help import HelpScreen
from pltui.tui.screens.prompt import ChoiceScreen, PromptScreen


def row(app, name: str) -> dict[str, str]:
    table = app.main.table
    return {key: table.get_cell(name, key).plain for key in table.visible_columns}


async def fed(pilot, engine):
    feed(engine)
    await wait_for(pilot, lambda: row(pilot.app, "node01")["ssh"].startswith("ok"))
    await pilot.pause()


async def test_rows_and_header(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        assert row(app, "node01")["ssh"] == "?"          # before any sweep
        await fed(pilot, engine)
        table = app.main.table
        assert table.row_count == 24
        assert set(table.visible_columns) >= {"group", "monitor", "load", "disk", "logs", "seen"}
        r = row(app, "node01")
        assert r["node"] == "● node01" and r["ssh"] == "ok 10ms" and r["procs"] == "2/2"
        assert r["group"] == "alpha" and r["checksums"] == "ok" and r["seen"] == "<1m"
        assert row(app, "node04")["procs"] == "1/2 backoff"
        assert row(app, "node06")["ssh"] == "timeout" and row(app, "node06")["node"].startswith("×")
        assert row(app, "node08")["protocol"] == "6!"     # isolated: a symbol, not colour alone
        assert row(app, "node09")["checksums"] == "drift 1"
        assert row(app, "node10")["monitor"] == "dead" and row(app, "node10")["disk"] == "300M!"
        assert row(app, "node11")["ssh"] == "refused"
        assert row(app, "node12")["node"].startswith("?")
        header = app.main.header.render().plain
        assert "testfleet" in header and "swept 12s ago, next in 4m" in header
        assert "14 up" in header and "4 degraded" in header and "4 down" in header and "2 unknown" in header
        assert "proto 7 (16) 2 isolated!" in header and "sums: 2 drifted" in header and "0 marked" in header


async def test_narrow_terminal_hides_columns(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await fed(pilot, engine)
        cols = app.main.table.visible_columns
        assert {"mark", "node", "ssh", "procs", "version", "protocol", "checksums"} <= set(cols)
        assert "group" not in cols and "monitor" not in cols
        await pilot.resize_terminal(170, 40)
        await pilot.pause()
        assert "group" in app.main.table.visible_columns


async def test_cursor_and_marks_stay_on_their_nodes(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        table = app.main.table
        await pilot.press("down", "down", "space")          # mark node03, cursor to node04
        await pilot.press("j", "space")                       # mark node05 -> cursor node06
        assert app.view.marks == {"node03", "node05"}
        await pilot.press("k")
        assert table.cursor_node == "node05"
        for _ in range(len(table.visible_columns) + 1):     # every column, then back
            await pilot.press("greater_than_sign")
            assert table.cursor_node == "node05", app.view.sort_column
            assert app.view.marks == {"node03", "node05"}
            assert row(app, "node05")["mark"] == "*" and row(app, "node03")["mark"] == "*"
        await pilot.press("I")
        assert app.view.sort_reverse and table.cursor_node == "node05"
        app.run_command("sort ssh")
        await pilot.pause()
        assert table.shown[0] == "node01" and table.cursor_node == "node05"
        # node05 goes down: re-sorted by ssh it moves, and the cursor goes with it
        down = dataclasses.replace(status_for("node05", 4), ssh=SSHState.REFUSED, latency_ms=None,
                                   observed=FROZEN_NOW - 1)
        engine.statuses["node05"] = down
        engine.emit(NodeUpdated(status=down))
        await wait_for(pilot, lambda: row(app, "node05")["ssh"] == "refused")
        assert table.cursor_node == "node05"
        assert table.shown.index("node05") > table.shown.index("node24") - 10
        assert app.view.marks == {"node03", "node05"} and row(app, "node05")["mark"] == "*"
        await pilot.press("u")
        assert not app.view.marks and row(app, "node05")["mark"] == " "


async def test_filter_syntax(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        table = app.main.table

        async def filt(expr):
            await pilot.press("slash")
            assert isinstance(app.screen, PromptScreen)
            inp = app.screen.query_one("Input")
            inp.value = expr
            await pilot.press("enter")
            await pilot.pause()
            return sorted(table.shown)

        assert await filt("refused") == ["node11", "node23"]
        assert await filt("@alpha") == ["node01", "node02", "node03"]
        assert len(await filt("!@alpha")) == 21
        assert await filt("~^node0[1-3]$") == ["node01", "node02", "node03"]
        assert await filt("node[01-02]") == ["node01", "node02"]
        assert await filt("node1* !timeout") == [f"node{i}" for i in range(10, 20) if i != 18]
        assert await filt("=node[05,07]") == ["node05", "node07"]
        assert await filt("production drift") == ["node09", "node21"]
        assert "filter production drift" in app.main.header.render().plain
        before = sorted(table.shown)
        assert await filt("~(") == before                    # bad regex: kept the old filter
        assert await filt("@nosuch") == before
        await pilot.press("escape")                           # esc clears the filter
        assert table.row_count == 24 and app.view.filter is None


async def test_mark_group_and_state(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        await pilot.press("g")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("enter")                            # first group: alpha
        assert app.view.marks == {"node01", "node02", "node03"}
        assert "3 marked" in app.main.header.render().plain
        await pilot.press("m")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")                           # esc backs out, nothing changes
        assert len(app.view.marks) == 3

        async def mark_state(choice):
            await pilot.press("m")
            options = app.screen.query_one("OptionList")
            ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
            options.highlighted = ids.index(choice)
            await pilot.press("enter")
            await pilot.pause()

        await mark_state("clear")
        assert not app.view.marks
        await mark_state("down")
        assert app.view.marks == {"node06", "node11", "node18", "node23"}
        await mark_state("clear")
        await mark_state("isolated")
        assert app.view.marks == {"node08", "node20"}
        await mark_state("drifted")
        assert app.view.marks == {"node08", "node20", "node09", "node21"}
        await mark_state("invert")
        assert len(app.view.marks) == 20
        await mark_state("clear")
        await mark_state("version=2.3.9")
        assert app.view.marks == {"node08", "node20"}
        await mark_state("clear")
        await mark_state("degraded")
        assert app.view.marks == {"node04", "node10", "node16", "node22"}


async def test_pause_freezes_the_view(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        await pilot.press("Z")
        assert app.view.paused and "PAUSED" in app.main.header.render().plain
        down = dataclasses.replace(engine.statuses["node01"], ssh=SSHState.AUTH, latency_ms=None)
        engine.statuses["node01"] = down
        engine.emit(NodeUpdated(status=down))
        await pilot.pause(0.6)
        assert row(app, "node01")["ssh"] == "ok 10ms"
        await pilot.press("down", "space")                    # still navigable and markable
        assert app.view.marks == {"node02"}
        await pilot.press("Z")
        assert await wait_for(pilot, lambda: row(app, "node01")["ssh"] == "auth")
        assert not app.view.paused


async def test_updates_are_coalesced_and_idle_is_quiet(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        await pilot.pause(0.5)
        before = app.flushes
        for round_ in range(20):                              # 480 events in one burst
            for i, name in enumerate(engine.nodes):
                status = dataclasses.replace(status_for(name, i), load=round_ + i / 100)
                engine.statuses[name] = status                # as the engine does before emitting
                engine.emit(NodeUpdated(status=status))
        assert await wait_for(pilot, lambda: row(app, "node24")["load"] == "19.23"), row(app, "node24")
        await pilot.pause(0.5)
        assert app.flushes - before <= 3
        assert app._flush_timer is None                      # nothing scheduled when nothing changed
        idle = app.flushes
        await pilot.pause(1.2)
        assert app.flushes == idle


async def test_event_pane_help_and_escape(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 50)) as pilot:
        await fed(pilot, engine)
        engine.notice("error", "disk full on node07", node="node07")
        assert await wait_for(pilot, lambda: "1 new event (e)" in app.main.header.render().plain)
        await pilot.press("e")
        pane = app.main.events
        assert pane.display
        await pilot.pause()
        text = "\n".join(line.text for line in pane.lines)
        assert "disk full on node07" in text and "sweep 1 done" in text
        assert "new event" not in app.main.header.render().plain
        await pilot.press("escape")
        assert not pane.display
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "sweep now" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_quit_without_running_action(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_updated_rows_repaint_on_screen_and_after_scrolling(engine, console):
    """Cells are written without DataTable.update_cell (row-level cache eviction): what the
    terminal shows must still be the new value, on screen and after scrolling back."""
    app = console(engine)
    async with app.run_test(size=(120, 14)) as pilot:
        await fed(pilot, engine)

        def show(name, version):
            status = dataclasses.replace(engine.statuses[name], version=version)
            engine.statuses[name] = status
            engine.emit(NodeUpdated(status=status))

        show("node02", "7.7.7v")
        assert await wait_for(pilot, lambda: "7.7.7v" in screen_text(app))
        await pilot.press("end")                              # node02 scrolls out of view
        await pilot.pause()
        assert "node02" not in screen_text(app)
        show("node02", "8.8.8h")
        show("node23", "9.9.9b")
        assert await wait_for(pilot, lambda: "9.9.9b" in screen_text(app))
        await pilot.press("home")
        await pilot.pause()
        text = screen_text(app)
        assert "8.8.8h" in text and "7.7.7v" not in text


async def test_seen_column_ages_without_node_updates(engine, console):
    now = [FROZEN_NOW]
    app = console(engine, clock=lambda: now[0])
    async with app.run_test(size=(160, 30)) as pilot:
        await fed(pilot, engine)
        # node11 is down (refused) and never answered: "-", not "<1m" (its failed probe)
        assert row(app, "node01")["seen"] == "<1m" and row(app, "node11")["seen"] == "-"
        assert row(app, "node24")["seen"] == "-" and row(app, "node22")["seen"] == "10m"   # never seen; 614 s
        now[0] += 300
        app._refresh_ages()                                   # what the 30 s age clock calls
        await pilot.pause()
        assert row(app, "node01")["seen"] == "5m" and row(app, "node11")["seen"] == "-"
        assert row(app, "node22")["seen"] == "15m"
        assert "5m" in screen_text(app)
        await pilot.pause(1.2)                                # the header's own 1 s clock
        assert "swept 5m ago, next due now" in app.main.header.render().plain


async def test_filter_membership_follows_updates(engine, console):
    app = console(engine)
    async with app.run_test(size=(160, 40)) as pilot:
        await fed(pilot, engine)
        app.main.apply_filter("refused")
        await pilot.pause()
        table = app.main.table
        assert sorted(table.shown) == ["node11", "node23"]
        app.main.table.go_to("node23")
        for name, state in (("node02", SSHState.REFUSED), ("node11", SSHState.OK)):
            status = dataclasses.replace(engine.statuses[name], ssh=state, latency_ms=3.0)
            engine.statuses[name] = status
            engine.emit(NodeUpdated(status=status))
        assert await wait_for(pilot, lambda: sorted(table.shown) == ["node02", "node23"])
        assert table.cursor_node == "node23" and table.shown == ["node02", "node23"]   # fleet order kept
