"""Node file names: arbitrary bytes (anything but NUL) chosen by a possibly hostile node.

They are percent-encoded for JSON, escaped for display, mapped below ``DEST/<node>/`` only
when harmless, and single-quoted whole when handed back to a node's shell.
"""

from __future__ import annotations

import os

from pltui.sanitize import clean_line

MAX_COMPONENT = 200           # bytes per path component (room for .~N~.zst and the filesystem's 255)
PARTIAL_DIR = ".pltui-partial"  # DEST/<node>/ keeps copies in progress here: no node file may land in it
# RFC 3986's unreserved characters and the path separator: a stored name such as
# `app.log.~1~.zst` reads in the manifest as it does on disk (records that an older version wrote
# with `%7E` still decode to the same name).
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-~")


def pct(name: bytes) -> str:
    """Percent-encode bytes outside [A-Za-z0-9._/~-]: JSON-safe, reversible."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name)


def unpct(text: str) -> bytes:
    out = bytearray()
    i = 0
    raw = text.encode("ascii")
    while i < len(raw):
        if raw[i] == 0x25:  # %
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def display(name: bytes | str, limit: int = 160) -> str:
    """A node path for humans: UTF-8 where valid, every control byte shown as an escape."""
    if isinstance(name, str):
        name = os.fsencode(name)
    text = name.decode("utf-8", "backslashreplace")
    text = "".join(c if (0x20 <= ord(c) < 0x7f or ord(c) > 0x9f) else f"\\x{ord(c):02x}" for c in text)
    return clean_line(text, limit)


def normalize(name: bytes) -> tuple[bytes | None, str | None]:
    """(relative path with no '.', '..' or empty components, None) or (None, why it is rejected).

    A hostile node must not make us write outside its own directory, nor into our partials."""
    if not name:
        return None, "empty name"
    if name.startswith(b"/"):
        return None, "absolute path outside the service root"
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    if not parts:
        return None, "not a file name"
    if b".." in parts:
        return None, "'..' in the path (outside the service root)"
    if parts[0] == PARTIAL_DIR.encode():
        return None, f"{PARTIAL_DIR} is reserved"
    if any(len(p) > MAX_COMPONENT for p in parts):
        return None, f"a path component is longer than {MAX_COMPONENT} bytes"
    if b"\0" in name:
        return None, "NUL in the name"
    return b"/".join(parts), None


def sh_quote(data: bytes) -> bytes:
    """A shell word for any bytes (NUL excepted): single quotes, with ' as '\\''."""
    return b"'" + data.replace(b"'", b"'\\''") + b"'"


def node_word(path: bytes) -> bytes:
    """A relative node path as a shell word that no command reads as an option."""
    return sh_quote(b"./" + path)
