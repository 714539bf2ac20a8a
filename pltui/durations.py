"""Durations as operators write them: "500ms", "10s", "5m", "24h", "1d", "1h30m", or plain seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# ASCII digits only: str.isdigit/float() would also take "٣" or "1_000".
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", re.ASCII)
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?$", re.ASCII)
# Longer waits are typos, and far larger ones overflow time.sleep/select ("timestamp out of range").
MAX_DURATION = 365 * 86400.0


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _checked(seconds: float, value: object) -> float:
    if math.isnan(seconds):
        raise ValueError(f"bad duration {_show(value)}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {_show(value)}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {_show(value)} is longer than 365d")
    return seconds + 0.0  # -0.0 -> 0.0


def parse_duration(value: object) -> float:
    """Seconds for a duration string or number; ValueError with a readable reason otherwise.

    The result is always a finite float from 0 to MAX_DURATION (365 days)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like \"10s\", got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf if value > 0 else -math.inf
        return _checked(seconds, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like \"10s\", got {type(value).__name__}")
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    if _NUMBER.match(text):
        return _checked(float(text), value)
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"bad duration {_show(value)} (use e.g. \"500ms\", \"10s\", \"5m\", \"24h\", \"1h30m\")")
    return _checked(total, value)


def format_duration(seconds: float | None) -> str:
    """Short human form: 850ms, 42s, 5m, 3h12m, 2d4h."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s:02d}s" if s and m < 10 else f"{m}m"
    if seconds < 86400:
        h, rest = divmod(int(seconds), 3600)
        return f"{h}h{rest // 60:02d}m" if rest >= 60 else f"{h}h"
    d, rest = divmod(int(seconds), 86400)
    return f"{d}d{rest // 3600}h" if rest >= 3600 else f"{d}d"
