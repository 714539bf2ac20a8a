"""Figures that do not mislead: the ssh cell is the probe's round trip, not the wait for a
fanout slot (measured by the engine separately); a down node shows when it last *answered*,
not when it was last probed."""

from __future__ import annotations

import dataclasses

from conftest import screen_text, wait_for
from fleetdata import FROZEN_NOW, feed, make_engine, status_for

from pltui.fleet import load
from pltui.model import NodeUpdated, SSHState
from pltui.store import Store
from pltui.sweep import Engine
from pltui.tui.screens.detail import DetailScreen


async def test_round_trip_and_queue_wait_are_measured_apart(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(6, fleet={"ssh_overrides": {"fanout": 1}})      # one at a time: the rest wait
    engine = Engine(load(sim.fleet_path), state_dir=tmp_path / "state")
    try:
        await engine.sweep(checksums=False)
        statuses = [engine.statuses[n] for n in engine.nodes]
        assert all(s.ssh == SSHState.OK for s in statuses), [s.error for s in statuses]
        waits = sorted(s.queue_ms for s in statuses)
        # with one slot, the node probed last waited for the five before it
        assert waits[-1] > max(s.latency_ms for s in statuses)
        assert all(s.latency_ms < s.latency_ms + s.queue_ms for s in statuses)
    finally:
        await engine.close()


async def test_a_down_node_says_when_it_last_answered(engine, console):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        table = app.main.table
        await wait_for(pilot, lambda: table.get_cell("node01", "ssh").plain.startswith("ok"))
        assert table.get_cell("node06", "seen").plain == "-"     # down, never seen answering
        up = dataclasses.replace(engine.statuses["node02"], observed=FROZEN_NOW - 900)
        engine.emit(NodeUpdated(status=up))                      # it answered 15 minutes ago...
        down = dataclasses.replace(up, ssh=SSHState.REFUSED, error="refused", observed=FROZEN_NOW - 1)
        engine.statuses["node02"] = down                         # ...and was refused a second ago
        engine.emit(NodeUpdated(status=down))
        await wait_for(pilot, lambda: table.get_cell("node02", "ssh").plain == "refused")
        await pilot.pause(0.3)
        assert table.get_cell("node02", "seen").plain == "15m"   # last answered, not "<1m" (probed)
        assert app.main.apply_filter("stale") and "node02" in table.shown
        app.main.apply_filter("")
        app.open_detail("node01")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "round trip 10ms" in text and "last answered" in text and "last probed" in text


def _seed_answers(fleet_file, state_dir) -> None:
    """A store left by an earlier sweeper: node02 answered (its last recorded answer 20 minutes
    ago) then was refused; node03 answered an hour ago, timed out, then was refused; a row that
    is not JSON is skipped. Observations at fixed times, as seed_history does."""
    store = Store.for_fleet(load(fleet_file), state_dir)
    try:
        down = [dataclasses.replace(status_for(n, i), ssh=SSHState.REFUSED, error="refused",
                                    observed=FROZEN_NOW - 60) for i, n in ((1, "node02"), (2, "node03"))]
        store.save_statuses(down, None)
        db = store.db
        with db:
            db.execute("DELETE FROM observations")
            db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)", [
                ("node02", FROZEN_NOW - 3600, 1, '{"ssh": "ok", "version": "2.4.0"}'),
                ("node02", FROZEN_NOW - 1200, 2, '{"version": "2.4.1"}'),       # still answering
                ("node02", FROZEN_NOW - 600, 3, '{"ssh": "refused", "error": "refused"}'),
                ("node03", FROZEN_NOW - 3600, 1, '{"ssh": "ok"}'),
                ("node03", FROZEN_NOW - 1800, 2, '{"ssh": "timeout"}'),
                ("node03", FROZEN_NOW - 900, 3, '{"ssh": "refused", "version": "2.4.1"}'),
                ("node04", FROZEN_NOW - 100, 3, 'not json'),
            ])
    finally:
        store.close()


def test_the_store_knows_when_each_node_last_answered(fleet_file, tmp_path):
    _seed_answers(fleet_file, tmp_path / "state")
    store = Store.for_fleet(load(fleet_file), tmp_path / "state")
    try:
        assert store.last_answered() == {"node02": FROZEN_NOW - 1200, "node03": FROZEN_NOW - 3600}
    finally:
        store.close()


async def test_a_down_node_at_start_says_when_it_last_answered_from_the_store(fleet_file, tmp_path, console):
    """Not "-" until the console sees the node answer: the store remembers."""
    _seed_answers(fleet_file, tmp_path / "state")
    engine = make_engine(fleet_file, tmp_path / "state")
    assert engine.last_answered() == {"node02": FROZEN_NOW - 1200, "node03": FROZEN_NOW - 3600}
    app = console(engine)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.main.table
            await wait_for(pilot, lambda: table.get_cell("node02", "ssh").plain == "refused")
            assert table.get_cell("node02", "seen").plain == "20m"
            assert table.get_cell("node03", "seen").plain == "1h"
            assert table.get_cell("node04", "seen").plain == "-"
    finally:
        await engine.close()
