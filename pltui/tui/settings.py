"""The console's few persistent choices (theme), in `$XDG_CONFIG_HOME/pltui/settings.toml`.

Written with tomli-w, atomically; an unreadable file means defaults, never a crash.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pltui.tui.themes import config_dir

KNOWN = {"theme": str, "bell": bool}


def settings_path(base: Path | None = None) -> Path:
    return (base or config_dir()) / "settings.toml"


def load(base: Path | None = None) -> tuple[dict[str, Any], str | None]:
    """(settings, problem): unknown or mistyped keys are dropped; problem names a broken file."""
    path = settings_path(base)
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, f"{path}: ignored: {exc}"
    return {k: v for k, v in doc.items() if k in KNOWN and isinstance(v, KNOWN[k])}, None


def save(changes: dict[str, Any], base: Path | None = None) -> str | None:
    """Merge `changes` into the settings file; returns a problem line instead of raising."""
    import tomli_w

    path = settings_path(base)
    current, _ = load(base)
    current.update(changes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(tomli_w.dumps(current), "utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        return f"settings not saved to {path}: {exc}"
    return None
