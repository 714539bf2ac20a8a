"""The sha256 fallback for shell commands pltui builds in Python (the node scripts carry their own).

Nodes differ in which sha256 tool they have: GNU coreutils' `sha256sum`, busybox's applet (a
busybox may be there when coreutils is not, or lack the applet), `openssl dgst -sha256 -r`, perl's
`shasum -a 256`. `SHA256_FUNCTION` defines a POSIX sh function `pltui_sha256` that hashes stdin
with the first of these that works (printing "HEX ..." like sha256sum; use `${d%% *}` or
`cut -c 1-64`) and sets `PLTUI_SHA256_TOOL` to the tool's name (`none`, status 127, without one).
The same order is used by pltui/node/logs.sh and release.sh.
"""

from __future__ import annotations

SHA256_TOOLS = ("sha256sum", "busybox", "openssl", "shasum")

SHA256_FUNCTION = (
    "pltui_sha256() { "
    "if command -v sha256sum >/dev/null 2>&1; then PLTUI_SHA256_TOOL=sha256sum; sha256sum; "
    "elif command -v busybox >/dev/null 2>&1 && busybox sha256sum </dev/null >/dev/null 2>&1; "
    "then PLTUI_SHA256_TOOL=busybox; busybox sha256sum; "
    "elif command -v openssl >/dev/null 2>&1; then PLTUI_SHA256_TOOL=openssl; openssl dgst -sha256 -r; "
    "elif command -v shasum >/dev/null 2>&1; then PLTUI_SHA256_TOOL=shasum; shasum -a 256; "
    "else PLTUI_SHA256_TOOL=none; return 127; fi; }"
)
