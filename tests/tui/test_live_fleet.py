"""The console on a live SimFleet: the real engine sweeps real (in-process) SSH nodes, and the
console shows what it finds, including a node that prints hostile garbage."""

from __future__ import annotations


import pytest

from conftest import screen_text, wait_for, wait_text

from pltui.fleet import load
from pltui.sweep import Engine
from pltui.tui.app import ConsoleApp
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.detail import DetailScreen
from pltui.tui.screens.progress import ProgressScreen
from pltui.tui.screens.prompt import PromptScreen

SERVICE = {"important": ["bin/*"]}   # each sim node's root is its service root


async def sim_console(make_sim_fleet, tmp_path, config_dir, n=4, modes=None, service=None, **kwargs):
    sim = await make_sim_fleet(n, modes=modes, fleet={"service": service or SERVICE, "groups": {"alpha": "sim[001-002]"},
                                                       "sweep": {"interval": "1h"}})
    for name, node in sim.nodes.items():
        root = node.root
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "VERSION").write_text("1.0.0\n")
        (root / "PROTOCOL").write_text("3\n")
        (root / "bin" / "tool").write_text("v1\n" if name != "sim002" else "v2-drifted\n")
    engine = Engine(load(sim.fleet_path), state_dir=tmp_path / "state")
    app = ConsoleApp(engine, config_dir=config_dir, **kwargs)
    return sim, engine, app


def cell(app, name, key):
    return app.main.table.get_cell(name, key).plain


async def test_live_sweep_garbage_and_recovery(make_sim_fleet, tmp_path, config_dir):
    sim, engine, app = await sim_console(make_sim_fleet, tmp_path, config_dir, n=5,
                                         modes={"sim003": "refuse", "sim004": "garbage"})
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            # the engine loop starts with a checksum sweep (none recorded yet)
            assert await wait_for(pilot, lambda: engine.last_sweep_end is not None and
                                  cell(app, "sim004", "ssh") != "?", timeout=30)
            await pilot.pause(0.4)
            assert cell(app, "sim001", "ssh").startswith("ok ")
            assert cell(app, "sim001", "version") == "1.0.0"
            assert cell(app, "sim003", "ssh") == "refused"
            assert cell(app, "sim004", "ssh") == "garbled"
            assert cell(app, "sim002", "checksums") == "drift 1"
            header = app.main.header.render().plain
            assert "3 up" in header and "2 down" in header and "sums: 1 drifted" in header
            text = screen_text(app)
            assert "\x1b" not in text and "\x9b" not in text and "pwned" not in text
            # the garbage node's error reaches the detail screen cleaned, markup shown literally
            app.main.table.go_to("sim004")
            await pilot.press("enter")
            assert isinstance(app.screen, DetailScreen)
            await pilot.pause()
            detail = screen_text(app)
            assert "garbled" in detail and "\x1b" not in detail and "\x07" not in detail
            await pilot.press("escape")
            # sim003 comes back; `s` asks the running loop for a sweep now
            await sim.nodes["sim003"].set_mode("ok")
            app.main.table.go_to("sim003")
            await pilot.press("s")
            assert await wait_for(pilot, lambda: cell(app, "sim003", "ssh").startswith("ok "), timeout=30)
            assert app.main.table.cursor_node == "sim003"
            # `S`: a checksum sweep after sim002's drift is fixed by hand
            (sim.nodes["sim002"].root / "bin" / "tool").write_text("v1\n")
            await pilot.press("S")
            assert await wait_for(pilot, lambda: cell(app, "sim002", "checksums") == "ok", timeout=30)
    finally:
        await engine.close()


async def test_exec_confirm_progress_and_grouped_report(make_sim_fleet, tmp_path, config_dir):
    sim, engine, app = await sim_console(make_sim_fleet, tmp_path, config_dir, n=3, start_engine=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("s")                                  # one sweep, run by the console
            assert await wait_for(pilot, lambda: cell(app, "sim003", "ssh").startswith("ok"), timeout=30)
            await pilot.press("g")
            options = app.screen.query_one("OptionList")
            options.highlighted = options.option_count - 1          # @all
            await pilot.press("enter")
            assert len(app.view.marks) == 3
            await pilot.press("x")
            assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
            app.screen.query_one("Input").value = "cat VERSION; hostname >/dev/null"
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Run a command on 3 nodes?" in screen_text(app)
            await pilot.press("enter")                              # the default is No
            assert await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert not app.runs
            await pilot.press("x")
            assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
            app.screen.query_one("Input").value = "cat VERSION"
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
            run = app.runs[-1]
            assert await wait_for(pilot, lambda: run.finished, timeout=30)
            await wait_text(pilot, "finished ok", "---- sim[001-003] (3) ----", "1.0.0", "[exit 0]")
            await pilot.press("escape")
            assert app.screen is app.main
            await pilot.press("A")                                  # the last action's screen again
            assert isinstance(app.screen, ProgressScreen)
    finally:
        await engine.close()


async def test_restart_through_missing_monitor_reports_failures(make_sim_fleet, tmp_path, config_dir):
    sim, engine, app = await sim_console(make_sim_fleet, tmp_path, config_dir, n=2, start_engine=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("R")                                   # cursor's node only
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Restart the service on 1 node?" in screen_text(app)
            await pilot.press("y")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
            run = app.runs[-1]
            assert await wait_for(pilot, lambda: run.finished, timeout=30)
            assert run.ok is False and run.states["sim001"].state == "failed"
            await wait_text(pilot, "node monitor not installed")
    finally:
        await engine.close()


async def test_heal_confirms_and_reports(make_sim_fleet, tmp_path, config_dir):
    sim, engine, app = await sim_console(make_sim_fleet, tmp_path, config_dir, n=2, start_engine=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("h")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            assert await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            await pilot.press("h")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            # no monitor.sh on these nodes: the heal fails, and says so in the event pane
            assert await wait_for(pilot, lambda: app.events_unseen > 0, timeout=30)
            await pilot.press("e")
            await pilot.pause()
            assert "heal failed" in "\n".join(line.text for line in app.main.events.lines)
    finally:
        await engine.close()


async def test_real_rollout_plan_confirm_and_progress(make_sim_fleet, tmp_path, config_dir):
    """The console drives pltui.actions.rollout for real: bundle, staged plan, gate, report."""
    pytest.importorskip("pltui.actions.rollout")
    sim = await make_sim_fleet(3, fleet={
        "service": SERVICE, "groups": {"canary": "sim001"},
        "rollout": {"health_timeout": "20s", "stage": [
            {"name": "canary", "group": "canary", "batch": 1},
            {"name": "rest", "group": "all", "batch": "100%", "pause": True}]}})
    for node in sim.nodes.values():
        (node.root / "VERSION").write_text("1.0.0\n")
    bundle = tmp_path / "bundle"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "VERSION").write_text("2.0.0\n")
    (bundle / "bin" / "tool").write_text("v2\n")
    engine = Engine(load(sim.fleet_path), state_dir=tmp_path / "state")
    app = ConsoleApp(engine, config_dir=config_dir, start_engine=False, state_dir=str(tmp_path / "state"))
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            app.run_command("mark @all")
            await pilot.press("r")
            assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
            app.screen.query_one("Input").value = str(bundle)
            await pilot.press("enter")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=20)
            text = screen_text(app)
            assert "Roll out to 3 nodes?" in text and "stage 1 canary: 1 nodes sim001" in text
            assert "stage 2 rest: 2 nodes sim[002-003]" in text and "stage gate" in text
            await pilot.press("y")
            assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
            run = app.runs[-1]
            assert run.placement["sim002"] == "rest 1/1"
            assert await wait_for(pilot, lambda: run.control.waiting_at_gate or run.finished, timeout=60)
            if run.control.waiting_at_gate:
                assert run.states["sim001"].state in ("done", "failed", "rolled-back", "unreachable")
                await wait_text(pilot, "stage gate: rest")
                await pilot.press("n")                               # stop at the gate
            assert await wait_for(pilot, lambda: run.finished, timeout=60)
            await wait_text(pilot, "report:")
            assert run.report is not None and set(run.report["nodes"]) == {"sim001", "sim002", "sim003"}
    finally:
        await engine.close()
