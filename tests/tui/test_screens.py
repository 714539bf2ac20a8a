"""Detail screen, shell hand-over, the `:` command line, the command palette, themes."""

from __future__ import annotations

import contextlib
import subprocess
import tomllib

from conftest import screen_text, wait_for
from fleetdata import FROZEN_NOW, feed

from pltui.tui import themes
from pltui.tui.screens.detail import DetailScreen
from pltui.tui.screens.prompt import ChoiceScreen, PromptScreen


def seed_history(engine, name: str) -> None:
    """Observations and events at fixed times (the store stamps time.time(); tests need fixed ones)."""
    db = engine.store.db
    rows = [(FROZEN_NOW - 7200, '{"ssh": "ok", "health": "up", "version": "2.4.0"}'),
            (FROZEN_NOW - 5400, '{"ssh": "refused", "health": "down"}'),
            (FROZEN_NOW - 3000, '{"ssh": "ok", "health": "degraded"}'),
            (FROZEN_NOW - 1200, '{"health": "up", "version": "2.4.1"}')]
    with db:
        db.executemany("INSERT INTO observations(node, time, sweep_id, fields) VALUES (?,?,?,?)",
                       [(name, t, 1, f) for t, f in rows])
        db.executemany("INSERT INTO events(time, level, node, kind, message) VALUES (?,?,?,?,?)",
                       [(FROZEN_NOW - 5300, "error", name, "heal", "heal failed: connection refused"),
                        (FROZEN_NOW - 3000, "info", name, "heal", "restarted monitor: started")])


async def test_detail_screen_shows_everything(engine, console):
    seed_history(engine, "node09")
    app = console(engine)
    async with app.run_test(size=(120, 50)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        app.main.table.go_to("node09")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.pause()
        text = screen_text(app)
        for expected in ("node09", "production", "127.0.0.1:9", "ok, round trip 18ms", "2.4.1", "sha256sum",
                         "proxy", "cache", "pid", "restarts",
                         "drifted file", "bin/proxy", "cccccccccccccccc", "aaaaaaaaaaaaaaaa", "13/15",
                         "heal failed: connection refused", "2027-01-15 06:31:40"):
            assert expected in text, expected
        strip = next(line.strip() for line in text.splitlines() if "last 2h" in line)
        assert "×" in strip and "◐" in strip and "●" in strip and strip.endswith("now")
        await pilot.press("escape")
        assert app.screen is app.main
        # a process in backoff: state, restarts, last exit and next try
        app.main.table.go_to("node04")
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        assert "down backoff" in text and "137" in text and "in 38s" in text
        await pilot.press("escape")


async def test_detail_follows_live_updates(engine, console):
    app = console(engine)
    async with app.run_test(size=(120, 50)) as pilot:
        feed(engine)
        await pilot.pause(0.3)
        await pilot.press("enter")
        assert "2.4.1" in screen_text(app)
        import dataclasses

        from pltui.model import NodeUpdated

        new = dataclasses.replace(engine.statuses["node01"], version="9.9.9")
        engine.statuses["node01"] = new
        engine.emit(NodeUpdated(status=new))
        assert await wait_for(pilot, lambda: "9.9.9" in screen_text(app))


async def test_shell_hands_the_terminal_to_ssh(engine, console, monkeypatch):
    app = console(engine)
    calls = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter", "exclamation_mark")           # headless: no terminal to hand over
        await pilot.pause()
        assert any("cannot hand the terminal" in n.message for n in app._notifications)
        monkeypatch.setattr(type(app), "suspend", lambda self: contextlib.nullcontext())
        monkeypatch.setattr(subprocess, "call", lambda argv: calls.append(argv) or 0)
        await pilot.press("exclamation_mark")
        await pilot.pause()
    argv = calls[0]
    assert argv[0] == "ssh" and "127.0.0.1" in argv and "-l" in argv and argv[argv.index("-p") + 1] == "9"


async def test_command_line(engine, console, fleet_file):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        feed(engine)
        await pilot.pause(0.3)

        async def command(line):
            await pilot.press("colon")
            assert isinstance(app.screen, PromptScreen)
            app.screen.query_one("Input").value = line
            await pilot.press("enter")
            await pilot.pause(0.2)

        await pilot.press("colon", "q", "t", "e")                # typed into the prompt, not keys
        assert isinstance(app.screen, PromptScreen) and app.screen.query_one("Input").value == "qte"
        await pilot.press("escape")
        assert app.screen is app.main and app.is_running and app.theme == "dark"
        await command("mark node[01-04]")
        assert app.view.marks == {"node01", "node02", "node03", "node04"}
        await command("unmark node01")
        await command("group save canary")
        doc = tomllib.loads(fleet_file.read_text())
        assert doc["groups"]["canary"] == "node[02-04]"
        await command("filter @canary")
        assert sorted(app.main.table.shown) == ["node02", "node03", "node04"]
        await command("filter")
        assert app.main.table.row_count == 24
        await command("sort load desc")
        assert app.view.sort_column == "load" and app.view.sort_reverse
        await command("events")
        assert app.main.events.display
        await command("pause")
        assert app.view.paused
        await command("pause")
        await command("theme light")
        assert app.theme == "light"
        await command("bogus")
        await command("group save")
        await command("sort nosuch")
        messages = [n.message for n in app._notifications]
        assert any("unknown command :bogus" in m for m in messages)
        assert any("usage: :group save NAME" in m for m in messages)
        assert any("no column 'nosuch'" in m for m in messages)
        await command("help")
        assert "pltui keys" in screen_text(app)
        await pilot.press("escape")
        await command("sweep")                                    # no loop running: the console sweeps
        assert any("sweep started" in n.message for n in app._notifications)
        await command("q")
    assert app.return_code == 0


async def test_command_palette_runs_pltui_commands(engine, console):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"pltui: help")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "pltui keys" in screen_text(app)


async def test_theme_choice_persists(engine, console, config_dir):
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "dark"
        await pilot.press("t")
        assert isinstance(app.screen, ChoiceScreen)
        options = app.screen.query_one("OptionList")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids[:3] == ["dark", "high-contrast", "light"]
        options.highlighted = ids.index("high-contrast")
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "high-contrast"
        assert app.view.styles["node-down"].color.number == 9     # ANSI bright red
    assert tomllib.loads((config_dir / "settings.toml").read_text()) == {"theme": "high-contrast"}
    again = console(engine)
    async with again.run_test(size=(80, 24)):
        assert again.theme == "high-contrast"


async def test_broken_theme_file_falls_back_with_a_notification(engine, console, config_dir):
    (config_dir / "themes").mkdir(parents=True)
    (config_dir / "themes" / "mine.toml").write_text('name = "mine"\n[colors]\nprimary = "not-a-colour"\n')
    (config_dir / "themes" / "ok.toml").write_text('[colors]\nprimary = "#ff8800"\n[variables]\nnode-up = "#00ff00"\n')
    (config_dir / "settings.toml").write_text('theme = "mine"\n')
    app = console(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("mine.toml: colors.primary = 'not-a-colour' is not a colour" in m for m in messages)
        assert any("theme 'mine' not found; using dark" in m for m in messages)
        assert app.theme == "dark"
        app.set_theme("ok")
        await pilot.pause()
        assert app.theme == "ok" and app.view.styles["node-up"].color.triplet.hex == "#00ff00"


def test_builtin_themes_parse_and_high_contrast_is_16_colour():
    found = themes.discover(user_dir=None)
    assert {"dark", "light", "high-contrast"} <= set(found.themes) and not found.problems
    for theme in found.themes.values():
        assert set(themes.PLTUI_VARIABLES) <= set(theme.variables), theme.name
    hc = found.themes["high-contrast"]
    from textual.color import Color

    for key in ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background"):
        assert getattr(hc, key).startswith("ansi_"), key
    for var in themes.PLTUI_VARIABLES:
        assert Color.parse(hc.variables[var]).ansi is not None, var


def test_theme_file_problems_are_named():
    for text, problem in (("[colors", "not valid TOML"), ("color = 1", "unknown key 'color'"),
                          ("[colors]\nsecondary = '#fff'", "needs at least primary"),
                          ("[colors]\nprimary = '#fff'\nmauve = '#fff'", "unknown colour 'mauve'"),
                          ("name = '../x'\n[colors]\nprimary = '#fff'", "bad theme name"),
                          ("[colors]\nprimary = '#fff'\n[variables]\nnode-up = 'nope'", "variables.node-up")):
        try:
            themes.parse_theme(text, "t.toml", "t")
        except themes.ThemeError as exc:
            assert problem in str(exc) and str(exc).startswith("t.toml: ")
        else:
            raise AssertionError(f"accepted: {text!r}")
