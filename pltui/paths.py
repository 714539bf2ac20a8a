"""Where pltui keeps its state: one directory per fleet under the state directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def state_root(override: str | os.PathLike | None = None) -> Path:
    """`--state DIR`, else $PLTUI_STATE, else $XDG_STATE_HOME/pltui, else ~/.local/state/pltui."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("PLTUI_STATE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "pltui"


def fleet_dir(root: Path, fleet_name: str, fleet_path: Path | None) -> Path:
    """A fleet's own state directory: its name plus a short hash of the fleet file's path, so two
    fleets that share a name never share state. Created private (0700): it holds the audit log."""
    tag = hashlib.sha256(str(fleet_path or fleet_name).encode()).hexdigest()[:8]
    path = root / "fleets" / f"{fleet_name}-{tag}"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        pass  # unusable (a file in the way, no permission, full disk): opening the store says why
    return path
