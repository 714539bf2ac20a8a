"""Fixtures for the console tests: a real Engine on a static (never-contacted) fleet fed with
fixed statuses, a SimFleet-backed engine for live sweeps, and an isolated config directory."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fleetdata import FROZEN_NOW, make_engine, static_fleet  # noqa: E402

from pltui.tui.app import ConsoleApp  # noqa: E402


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Clock strings in snapshots and assertions do not depend on the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return path


@pytest.fixture
def fleet_file(tmp_path) -> Path:
    return static_fleet(tmp_path / "fleet.toml", 24)


@pytest.fixture
async def engine(fleet_file, tmp_path):
    eng = make_engine(fleet_file, tmp_path / "state")
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
def console(config_dir):
    """console(engine, **kwargs) -> a ConsoleApp that does not sweep and whose clock is frozen."""

    def make(engine, **kwargs) -> ConsoleApp:
        kwargs.setdefault("start_engine", False)
        kwargs.setdefault("clock", lambda: FROZEN_NOW)
        kwargs.setdefault("config_dir", config_dir)
        return ConsoleApp(engine, **kwargs)

    return make


def svg_text(svg: str) -> str:
    """The terminal text of an exported SVG, one line per terminal row, runs placed by column."""
    import html
    import re

    runs = re.findall(r'<text class="terminal-(?:[^"]*-)?r\d+" x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)"[^>]*>'
                      r'(.*?)</text>', svg, flags=re.S)
    width = None
    rows: dict[float, dict[int, str]] = {}
    for x, y, length, body in runs:
        text = html.unescape(body).replace("\xa0", " ")
        if not text.strip("\n"):
            continue
        if width is None:
            width = float(length) / len(text)
        column = round(float(x) / width)
        row = rows.setdefault(float(y), {})
        for i, ch in enumerate(text):
            row[column + i] = ch
    lines = []
    for _, row in sorted(rows.items()):
        lines.append("".join(row.get(i, " ") for i in range(max(row) + 1)).rstrip() if row else "")
    return "\n".join(lines)


def screen_text(app) -> str:
    """What the terminal shows, as plain text lines (from the exported SVG)."""
    return svg_text(app.export_screenshot())


async def wait_for(pilot, predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(step)
    return predicate()


async def wait_text(pilot, *needles: str, timeout: float = 15.0) -> str:
    """The screen text once it shows every needle (the screen catches up at the next flush,
    which a loaded machine may delay); fails with what the screen showed instead."""
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(pilot.app)
        if all(n in text for n in needles) or time.monotonic() > deadline:
            break
        await pilot.pause(0.1)
    missing = [n for n in needles if n not in text]
    assert not missing, f"not on screen: {missing}\n{text}"
    return text


os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
