"""Make bytes from nodes safe to show: no control bytes, no escape sequences, bounded length.

Every string that came from a node (or a fleet file) passes through `clean()` before it reaches
a terminal, a Rich renderable or a log line. Rich markup is defused separately by the faces:
the TUI builds `rich.text.Text` objects (never markup strings) and the CLI prints plain text.
"""

from __future__ import annotations

import re

# C0 controls except TAB and LF, DEL, and the C1 range 0x80-0x9f (which includes CSI 0x9b
# and OSC 0x9d that some terminals honour on their own).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_NO_NL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Whole ANSI sequences, removed before the remaining control bytes are replaced, so that an
# "ESC [ 2 J" leaves no "[2J" litter behind.
_ANSI = re.compile(
    r"""
    \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?      # OSC ... BEL/ST
    | \x1b[P_^X][^\x1b]*(?:\x1b\\)?          # DCS/APC/PM/SOS ... ST
    | \x1b\[[0-?]*[ -/]*[@-~]                # CSI
    | \x1b[ -/]*[0-~]                        # two-byte escapes
    """,
    re.VERBOSE,
)
_C1_CSI = re.compile(r"\x9b[0-?]*[ -/]*[@-~]")

REPLACEMENT = "\ufffd"
_LINE_BREAKS = re.compile(r"\r\n|\n|\r")


def to_text(data: bytes | str) -> str:
    """Decode node bytes as UTF-8, never failing."""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def clean(data: bytes | str | None, *, limit: int = 4096, newlines: bool = False) -> str:
    """Return `data` as a printable string: escapes removed, control bytes replaced, length capped."""
    if data is None:
        return ""
    text = to_text(data)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    text = _ANSI.sub("", text)
    text = _C1_CSI.sub("", text)
    if not newlines:
        # One display line: line breaks become spaces, trailing ones vanish (not U+FFFD litter).
        text = _LINE_BREAKS.sub(" ", text.rstrip("\r\n")).replace("\t", " ")
    text = (_CONTROL if newlines else _CONTROL_NO_NL).sub(REPLACEMENT, text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def clean_line(data: bytes | str | None, limit: int = 256) -> str:
    """A single display line (no newlines), capped at `limit` characters."""
    return clean(data, limit=limit, newlines=False)


def is_clean(text: str) -> bool:
    """True when `text` holds no control bytes other than tab and newline."""
    return _CONTROL.search(text) is None


def display_name(name: str, limit: int = 200) -> str:
    """A name from a node (a file path) on one display line: every control character, newline
    and tab included, shown as a visible `\\xNN` escape, so that a name can neither move the
    cursor nor start a line of its own that looks like another record."""
    text = "".join(c if not _CONTROL_NO_NL.match(c) else f"\\x{ord(c):02x}" for c in name)
    return clean_line(text, limit)

