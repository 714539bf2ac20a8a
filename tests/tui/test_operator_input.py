"""What the operator types: never parsed as markup (no crash, shown literally) and never lost
(keys typed in one burst right after `:` or `/` reach the input that opens)."""

from __future__ import annotations

from conftest import screen_text, wait_for
from fleetdata import feed
from textual import events

from pltui.tui.screens.prompt import PromptScreen


async def _fed(pilot, engine):
    feed(engine)
    await wait_for(pilot, lambda: pilot.app.main.table.get_cell("node01", "ssh").plain.startswith("ok"))


KEY_NAMES = {"/": "slash", ":": "colon", "\r": "enter", " ": "space", "[": "left_square_bracket", "\x1b": "escape",
             "]": "right_square_bracket"}


def burst(app, typed: str) -> None:
    """Post every key of `typed` to the app at once, as a terminal delivers a paste."""
    for char in typed:
        app.post_message(events.Key(KEY_NAMES.get(char, char), char))


def _toasts(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_markup_typed_into_the_filter_does_not_crash(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:   # toasts really render
        await _fed(pilot, engine)
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"[/oops]", "enter")
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None
        assert app.main.table.row_count == 24 or app.view.filter is None or app.main.table.row_count == 0
        assert any("[/oops]" in t or "bad bracket" in t for t in _toasts(app)), _toasts(app)
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"sort [/x]", "enter")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert app.is_running and app.return_code is None
        assert "[/x]" in text                 # shown literally
        assert any("[/x]" in t for t in _toasts(app)), _toasts(app)


async def test_keys_typed_in_one_burst_after_colon_are_not_lost(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        seen: list[str] = []
        app.run_command = seen.append          # what the command line hands over
        await pilot.press("colon", *"sweep", "enter")            # key by key
        await wait_for(pilot, lambda: bool(seen))
        assert seen == ["sweep"]
        burst(app, ":rollout\r")                                   # a paste / tmux send-keys
        await wait_for(pilot, lambda: len(seen) == 2)
        assert seen == ["sweep", "rollout"]


async def test_keys_posted_in_one_go_after_slash_reach_the_filter(engine, console):
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        burst(app, "/node0\r")
        await wait_for(pilot, lambda: app.view.filter is not None)
        await pilot.pause(0.2)
        assert app.view.filter is not None and app.view.filter.expr == "node0"


async def test_a_bundle_path_typed_right_after_r_goes_to_the_bundle_prompt(engine, console):
    """`r/srv/b.tgz` in one burst: before, `/` opened the filter, `s` swept, `r` started another
    rollout... now every key after `r` lands in the bundle prompt."""
    app = console(engine)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _fed(pilot, engine)
        sweeps: list[bool] = []
        app.sweep_now = sweeps.append
        burst(app, "r/srv/bundles/cdn-2.5.tgz\r")
        await wait_for(pilot, lambda: any("cdn-2.5.tgz" in str(n.message) for n in app._notifications))
        await pilot.pause(0.2)
        assert sweeps == [] and app.view.filter is None
        assert any("/srv/bundles/cdn-2.5.tgz" in str(n.message) for n in app._notifications), \
            [str(n.message) for n in app._notifications]
        assert app.screen is app.main


async def test_escapes_in_a_burst_close_one_screen_each(engine, console):
    """`:` then esc esc esc in one go: the prompt closes once, the other escs reach the main
    screen (before, a held esc could pop the closing prompt a second time: ScreenStackError)."""
    app = console(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fed(pilot, engine)
        app.main.apply_filter("down")
        burst(app, ":\x1b\x1b/x\x1b\x1b\x1b")
        await wait_for(pilot, lambda: app.screen is app.main and not app.holding_keys)
        await pilot.pause(0.3)
        assert app.is_running and app._exception is None and app.screen is app.main
        assert app.view.filter is None                 # the second esc cleared the filter
