"""Finding what is wrong: state words in the filter (incremental), n/N to the next node in
trouble, worst-first sort, the marked/filtered set copied folded, the table exported."""

from __future__ import annotations

import csv
import json

from conftest import wait_for
from fleetdata import feed
from test_operator_input import burst

from pltui.tui.screens.prompt import PromptScreen


async def _fed(pilot, engine):
    feed(engine)
    await wait_for(pilot, lambda: pilot.app.main.table.get_cell("node01", "ssh").plain.startswith("ok"))


async def _filter(pilot, expr: str) -> list[str]:
    app = pilot.app
    await pilot.press("slash")
    await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
    app.screen.query_one("Input").value = expr
    await pilot.press("enter")
    await pilot.pause(0.1)
    return app.main.table.shown


async def test_state_words_filter_nodes(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        # fleetdata: node06/node18 timeout, node11/node23 refused, node12/24 unknown,
        # node04/16 backoff, node10/22 monitor dead, node08/20 isolated, node09/21 drifted
        assert await _filter(pilot, "down") == ["node06", "node11", "node18", "node23"]
        assert await _filter(pilot, "degraded") == ["node04", "node10", "node16", "node22"]
        assert await _filter(pilot, "drift") == ["node09", "node21"]
        assert await _filter(pilot, "isolated") == ["node08", "node20"]
        assert await _filter(pilot, "backoff") == ["node04", "node16"]
        assert await _filter(pilot, "monitor dead") == ["node10", "node22"]
        assert await _filter(pilot, "proto=6") == ["node08", "node20"]
        assert await _filter(pilot, "version=2.3.9 @alpha") == []
        assert await _filter(pilot, "version=2.3.9") == ["node08", "node20"]
        assert await _filter(pilot, "down !refused") == ["node06", "node18"]
        app.main.set_marks(["node02", "node05"])
        assert await _filter(pilot, "marked") == ["node02", "node05"]
        assert await _filter(pilot, "stale") == ["node22"]  # last answer 10m14s ago > 2 sweep intervals


async def test_filter_applies_as_you_type_and_esc_restores(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        burst(app, "/down")
        await wait_for(pilot, lambda: app.main.table.row_count == 4)
        assert app.main.table.shown == ["node06", "node11", "node18", "node23"]
        assert isinstance(app.screen, PromptScreen)      # still typing
        burst(app, " !ti")                   # half-typed terms filter too (`!ti`: not timeout)
        await wait_for(pilot, lambda: app.main.table.row_count == 2)
        await pilot.press("escape")          # esc: the filter from before the prompt (none)
        await wait_for(pilot, lambda: app.main.table.row_count == 24)
        assert app.view.filter is None


async def test_next_trouble_worst_first_copy_and_export(engine, console, tmp_path):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        table = app.main.table
        table.go_to("node01")
        await pilot.press("n")
        assert table.cursor_node == "node04"
        await pilot.press("n", "n")
        assert table.cursor_node == "node08"     # node06 down, node08 isolated
        await pilot.press("N")
        assert table.cursor_node == "node06"
        await pilot.press("W")                   # worst first: down, then degraded, unknown...
        await pilot.pause(0.1)
        assert table.shown[:4] == ["node06", "node11", "node18", "node23"]
        assert table.shown[4:8] == ["node22", "node04", "node10", "node16"]   # node22 also stale
        assert table.cursor_node == "node06"     # the cursor stays on its node
        copied: list[str] = []
        app.copy_to_clipboard = copied.append
        app.main.apply_filter("down")
        await pilot.press("y")
        assert copied == ["node[06,11,18,23]"]
        assert any("node[06,11,18,23]" in str(n.message) for n in app._notifications)
        app.main.set_marks(["node01", "node02", "node03"])
        await pilot.press("y")
        assert copied[-1] == "node[01-03]"
        app.run_command(f"export {tmp_path / 'down.json'}")
        data = json.loads((tmp_path / "down.json").read_text())
        assert [r["node"] for r in data["nodes"]] == ["node06", "node11", "node18", "node23"]
        assert data["nodes"][0]["health"] == "down" and data["nodes"][0]["ssh"] == "timeout"
        app.run_command(f"export {tmp_path / 'down.csv'}")
        rows = list(csv.DictReader((tmp_path / "down.csv").open()))
        assert [r["node"] for r in rows] == ["node06", "node11", "node18", "node23"]
        app.run_command(f"export {tmp_path / 'missing' / 'x.csv'}")
        await pilot.pause(0.05)
        assert any("export failed" in str(n.title) for n in app._notifications)
        assert app.is_running
