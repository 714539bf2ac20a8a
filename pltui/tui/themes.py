"""Theme files (TOML) mapped onto `textual.theme.Theme`, plus pltui's own colour variables.

Built-in themes ship in the `pltui.themes` package (the repository's top-level `themes/`); the
operator's own live in `$XDG_CONFIG_HOME/pltui/themes` (default `~/.config/pltui/themes`). A
broken file never stops the console: it is reported as a problem and skipped. A theme file::

    name = "dark"          # defaults to the file's stem
    dark = true
    ansi = false           # true: ANSI colour names only (16-colour terminals)
    [colors]               # Textual's base colours: primary, secondary, accent, warning, ...
    [variables]            # pltui's variables (node-up, node-down, ...) and Textual overrides
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.style import Style
from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "dark"
COLOR_KEYS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background",
              "surface", "panel", "boost")
TOP_KEYS = {"name", "dark", "ansi", "luminosity_spread", "text_alpha", "colors", "variables"}
# pltui's own variables, with fallbacks used when a theme (e.g. a Textual built-in) lacks them.
PLTUI_VARIABLES = {
    "node-up": "#5fbf6f",
    "node-degraded": "#e0a030",
    "node-down": "#ff5c66",
    "node-unknown": "#8a929c",
    "drift": "#d070e0",
    "isolated": "#40c8e0",
    "marked": "#ffd75f",
    "muted": "#7d8590",
}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_VAR = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


class ThemeError(Exception):
    """A theme file could not be used; the message names the file and the problem."""


@dataclass
class ThemeSet:
    themes: dict[str, Theme]          # by name, built-ins first, user themes override
    problems: list[str]               # one line per broken file


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/pltui, else ~/.config/pltui."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "pltui"


def _color(source: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{source}: {key} must be a colour string, got {type(value).__name__}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{source}: {key} = {value!r} is not a colour") from None
    return value


def parse_theme(text: str, source: str, default_name: str) -> Theme:
    """A Theme from TOML text; ThemeError naming the first problem otherwise."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ThemeError(f"{source}: unknown key {unknown[0]!r} (expected {', '.join(sorted(TOP_KEYS))})")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ThemeError(f"{source}: bad theme name {name!r}")
    colors = doc.get("colors", {})
    variables = doc.get("variables", {})
    if not isinstance(colors, dict) or not isinstance(variables, dict):
        raise ThemeError(f"{source}: [colors] and [variables] must be tables")
    bad = sorted(set(colors) - set(COLOR_KEYS))
    if bad:
        raise ThemeError(f"{source}: unknown colour {bad[0]!r} (expected {', '.join(COLOR_KEYS)})")
    if "primary" not in colors:
        raise ThemeError(f"{source}: [colors] needs at least primary")
    kwargs = {key: _color(source, f"colors.{key}", value) for key, value in colors.items()}
    clean_vars: dict[str, str] = {}
    for key, value in variables.items():
        if not _VAR.match(str(key)):
            raise ThemeError(f"{source}: bad variable name {key!r}")
        if key in PLTUI_VARIABLES:
            clean_vars[key] = _color(source, f"variables.{key}", value)
        elif isinstance(value, str):
            clean_vars[key] = value
        else:
            raise ThemeError(f"{source}: variables.{key} must be a string")
    for flag in ("dark", "ansi"):
        if not isinstance(doc.get(flag, False), bool):
            raise ThemeError(f"{source}: {flag} must be true or false")
    extra = {k: float(doc[k]) for k in ("luminosity_spread", "text_alpha") if isinstance(doc.get(k), (int, float))}
    theme = Theme(name=name, dark=doc.get("dark", True), ansi=doc.get("ansi", False), variables=clean_vars,
                  **kwargs, **extra)
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # Textual rejects some combinations only when generating
        raise ThemeError(f"{source}: cannot build the theme: {exc}") from None
    return theme


def load_theme_file(path: Path) -> Theme:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"{path}: cannot read: {exc}") from None
    return parse_theme(text, str(path), path.stem)


def builtin_theme_texts() -> dict[str, str]:
    """Stem -> TOML text of the themes shipped with pltui."""
    out = {}
    for entry in resources.files("pltui.themes").iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = entry.read_text("utf-8")
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != DEFAULT_THEME, kv[0])))


def discover(user_dir: Path | None = None) -> ThemeSet:
    """Every usable theme: built-ins, then user files (a user theme may replace a built-in)."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for stem, text in builtin_theme_texts().items():
        try:
            theme = parse_theme(text, f"built-in theme {stem}", stem)
            themes[theme.name] = theme
        except ThemeError as exc:  # pragma: no cover - shipped files are tested
            problems.append(str(exc))
    user_dir = user_themes_dir() if user_dir is None else user_dir
    try:
        files = sorted(user_dir.glob("*.toml")) if user_dir.is_dir() else []
    except OSError as exc:
        files = []
        problems.append(f"{user_dir}: {exc}")
    for path in files:
        try:
            theme = load_theme_file(path)
            themes[theme.name] = theme
        except ThemeError as exc:
            problems.append(str(exc))
    return ThemeSet(themes, problems)


def rich_style(value: str | None, **extra) -> Style:
    """A Rich style for a theme colour value; plain when the value is unusable."""
    try:
        color = Color.parse(value) if value else None
    except ColorParseError:
        color = None
    return Style(color=color.rich_color if color is not None else None, **extra)
