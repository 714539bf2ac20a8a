"""Property: whatever the operator types or pastes (Rich/Textual markup, terminal escapes, C1
bytes, brackets, quotes) into any input of the console, on any screen, the console keeps
running and nothing reaches the terminal raw or is applied as markup."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from conftest import screen_text
from fleetdata import FROZEN_NOW, feed, make_engine, static_fleet
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from textual import events

from pltui.tui.app import ConsoleApp

FRAGMENTS = ["[/x]", "[/]", "[bold]", "[link=http://e]", "[@click=app.quit]", "[red on", "]", "[",
             "\\[", "\x1b[2J", "\x1b]0;pwned\x07", "\x9b31m", "\x00", "\x7f", "'", '"', "$(id)", "%s",
             "{0}", "é", "🙂", "\u202e", "@alpha", "=node[01-03]", "~(", "!"]
TYPED = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), min_size=1, max_size=6).map("".join)
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
NAMES = {"/": "slash", ":": "colon", "\r": "enter", " ": "space", "[": "left_square_bracket",
         "]": "right_square_bracket", "!": "exclamation_mark", "?": "question_mark", "\x1b": "escape"}


def _keys(app, typed: str) -> None:
    for char in typed:
        app.post_message(events.Key(NAMES.get(char, char), char))


async def _drive(typed: str, base: Path) -> None:
    fleet = static_fleet(base / "fleet.toml", 12)
    engine = make_engine(fleet, base / "state")
    app = ConsoleApp(engine, start_engine=False, clock=lambda: FROZEN_NOW, config_dir=base / "config")
    printable = "".join(c for c in typed if c.isprintable())
    try:
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            feed(engine)
            await pilot.pause(0.2)

            async def settle():
                await pilot.pause(0.05)
                assert app.is_running and app._exception is None, typed
                text = screen_text(app)
                assert not RAW.search(text), (typed, text)
                while len(app.screen_stack) > 1:                 # back to the main screen
                    await pilot.press("escape")

            for opener in ("/", ":", ":filter ", ":sort ", ":mark ", ":theme ", ":group save ", ":exec ",
                           ":rollout ", ":bell "):
                _keys(app, opener)
                app.post_message(events.Paste(typed))                # a paste: any byte at all
                _keys(app, "\r")
                await settle()
                _keys(app, opener + printable + "\r")                # typed key by key, one burst
                await settle()
            _keys(app, "r" + printable + "\r")                       # the rollout's bundle prompt
            await settle()
            _keys(app, ":rollouts\r")                                 # the rollouts screen, then back
            await settle()
            for key in ("question_mark", "enter", "e", "m", "g", "t", "A", "o", "W", "n", "y"):
                await pilot.press(key)
                await settle()
    finally:
        await engine.close()


# Each example runs a whole console: few examples, and no shrinking (a failure prints its input).
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])
@example(typed="[/x] \x1b[2J[bold]\x9b31m'$(id)")
@example(typed="2\x83S)\x0e")                  # found a double pop (esc esc while a prompt closed)
@given(typed=TYPED)
def test_any_typed_or_pasted_text_is_harmless(typed):
    with tempfile.TemporaryDirectory(prefix="pltui-hostile-") as tmp:
        asyncio.run(_drive(typed, Path(tmp)))
