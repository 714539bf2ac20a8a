"""The service's lifecycle from the keyboard: start/stop/reload/reboot (typed confirmation),
rollout options, the rollouts screen with resume and roll back; every report says what to do
next. Real actions against nodes that refuse connections (127.0.0.1:9)."""

from __future__ import annotations


import pytest
from conftest import screen_text, wait_for, wait_text
from fleetdata import feed, make_engine, static_fleet

from pltui.tui.dispatch import ActionRun, SPECS, rollout_options
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.screens.progress import ProgressScreen, report_renderable
from pltui.tui.screens.prompt import ChoiceScreen, PromptScreen
from pltui.tui.screens.rollouts import RolloutsScreen


@pytest.fixture
async def reboot_engine(tmp_path):
    path = static_fleet(tmp_path / "fleet.toml", 6)
    path.write_text(path.read_text().replace("[service]\n", '[service]\nreboot_command = "echo rebooting"\n'))
    eng = make_engine(path, tmp_path / "state")
    try:
        yield eng
    finally:
        await eng.close()


async def _fed(pilot, engine):
    feed(engine)
    await wait_for(pilot, lambda: pilot.app.main.table.get_cell("node01", "ssh").plain.startswith("ok"))


async def test_stop_from_the_service_menu_reports_and_says_what_next(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("mark node[01-02]")
        await pilot.press("o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("down", "enter")                     # stop
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        run = app.screen.job
        assert run.kind == "stop"
        assert await wait_for(pilot, lambda: run.finished, timeout=60)
        await wait_text(pilot, "unreachable (2): node[01-02]")
        assert "next: retry the 2 not done: :mark node[01-02] then :stop" in report_renderable(run, {}).plain


async def test_reboot_needs_the_typed_node_count(reboot_engine, console):
    engine = reboot_engine
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("mark node[01-03]")
        app.run_command("reboot")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert "Type 3" in screen_text(app)
        app.screen.query_one("Input").value = "y"               # a reflex `y` does not reboot
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.main)
        assert not app.runs
        app.run_command("reboot")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = "3"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        assert app.runs[0].kind == "reboot-node" and app.runs[0].nodes == ["node01", "node02", "node03"]
        assert await wait_for(pilot, lambda: app.runs[0].finished, timeout=60)


def test_rollout_options_are_parsed_like_the_cli():
    bundle, opts = rollout_options("'/srv/b 1.tgz' --reload --failhard --batch 1,50% --parallel 3 --max-fail 5%")
    assert bundle == "/srv/b 1.tgz" and opts.reload and opts.failhard
    assert (opts.batch, opts.parallel, opts.max_fail) == ("1,50%", 3, "5%")
    for bad in ("", "/b --parallel x", "/b --what"):
        with pytest.raises(Exception, match="rollout|bundle"):
            rollout_options(bad)


def test_reports_fold_nodes_per_state_and_end_at_100_percent(engine):
    from pltui.actions.base import Control

    class Fake:
        action_id, kind, nodes, stages = "logs-1", "logs", [f"node{i:02d}" for i in range(1, 7)], None

    run = ActionRun(SPECS["logs"], Fake(), Control(), list(Fake.nodes))
    for n in Fake.nodes:
        run.states[n].bytes_done, run.states[n].bytes_total = 100, 300      # last event said 33%
    report = {"nodes": {n: {"state": "done", "message": f"{i} files, {i}KiB"} for i, n in enumerate(Fake.nodes)}
              | {"node06": {"state": "failed", "message": "disk full"}}, "summary": {}}
    run.finish(False, report)
    assert run.bytes() == (5 * 300 + 100, 6 * 300)            # done nodes moved all their bytes; node06 failed
    text = report_renderable(run, {}).plain
    assert "done (5): node[01-05]" in text and text.count("done (") == 1
    assert "failed (1): node06" in text and "next: retry the 1 not done: :mark node06 then :logs" in text


async def test_rollouts_screen_lists_and_offers_resume(engine, console, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "VERSION").write_text("2.5.0\n")
    (bundle / "bin" / "proxy").write_text("#!/bin/sh\n")
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("mark node[01-02]")
        app.run_command(f"rollout {bundle} --failhard --parallel 1")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        await pilot.press("y")
        assert await wait_for(pilot, lambda: bool(app.runs) and app.runs[0].finished, timeout=90)
        action_id = app.runs[0].action_id
        report = report_renderable(app.runs[0], {}).plain
        assert f"--resume {action_id}" in report and f"--rollback {action_id}" in report
        await pilot.press("escape")
        app.run_command("rollouts")
        assert await wait_for(pilot, lambda: isinstance(app.screen, RolloutsScreen))
        await wait_text(pilot, action_id[:20])
        await pilot.press("R")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        assert "Resume rollout" in screen_text(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RolloutsScreen))
        assert len(app.runs) == 1


def test_logs_prompt_takes_prune():
    from pltui.tui.dispatch import logs_options

    assert logs_options("/tmp/logs --prune") == ("/tmp/logs", True)
    assert logs_options("/tmp/logs") == ("/tmp/logs", False)
    assert logs_options("/tmp/my--prune-dir") == ("/tmp/my--prune-dir", False)


async def test_readonly_console_refuses_logs_prune(engine, console):
    app = console(engine, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("logs /tmp/x --prune")
        await pilot.pause(0.3)
        assert app.screen is app.main and not app.runs
        assert any("read-only" in str(n.message) for n in app._notifications)


def _bundle(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "VERSION").write_text("2.5.0\n")
    (bundle / "bin" / "proxy").write_text("#!/bin/sh\n")
    return bundle


async def test_rollout_review_changes_its_options_and_runs_with_them(engine, console, tmp_path):
    """e/f toggle reload and failhard, b sets the batch sizes; the plan shown is re-built each
    time and the rollout that runs is the one reviewed. A bad value is refused in one line."""
    bundle = _bundle(tmp_path)
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("mark node[01-04]")
        app.run_command(f"rollout {bundle}")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        review = app.screen
        await wait_text(pilot, "reload off", "failhard off", "batch fleet")
        await pilot.press("e", "f")
        await wait_text(pilot, "reload on", "failhard on")
        await pilot.press("b")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = "0%%"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.screen is review)
        assert await wait_for(pilot, lambda: any("bad batch size '0%%'" in str(n.message)
                                                 for n in app._notifications))   # one line, says what
        assert review.opts.batch is None
        await pilot.press("p")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = "x"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.screen is review)
        assert await wait_for(pilot, lambda: any("--parallel 'x': not a whole number" in str(n.message)
                                                 for n in app._notifications))
        assert review.opts.parallel is None
        await pilot.press("b")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("Input").value = "2"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.screen is review)
        await wait_text(pilot, "batch 2", "batches 2, 2")          # the plan shown is the new one
        assert "rollout 4 nodes" in screen_text(app) and "no (default)" in screen_text(app)
        await pilot.press("y")
        assert await wait_for(pilot, lambda: bool(app.runs), timeout=30)
        action = app.runs[0].action
        assert action is review.rollout
        assert action.state["reload"] is True and action.state["failhard"] is True
        assert [len(b) for s in action.stages for b in s.batches] == [2, 2]
        assert await wait_for(pilot, lambda: app.runs[0].finished, timeout=90)


async def test_rollout_review_starts_from_the_options_typed_after_the_bundle(engine, console, tmp_path):
    bundle = _bundle(tmp_path)
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.run_command("mark node[01-03]")
        app.run_command(f"rollout {bundle} --reload --batch 1 --parallel 2")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30)
        await wait_text(pilot, "reload on", "batch 1", "parallel 2", "batches 1, 1, 1")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is app.main)
        assert not app.runs
