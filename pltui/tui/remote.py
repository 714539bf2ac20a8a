"""What the detail screen fetches from a node over the engine's transport: a bounded tail of the
monitor's events.log and the processes' output files, and a drifted file beside a majority
holder's copy as a unified diff. No Textual here; every byte from a node is cleaned before it
becomes a `rich.text.Text`."""

from __future__ import annotations

import difflib
import re
import shlex

from rich.text import Text

from pltui.actions.repair import check_path
from pltui.consensus import Consensus
from pltui.fleet import Fleet
from pltui.model import NodeStatus
from pltui.probe import shell_path
from pltui.sanitize import clean

TAIL_LINES = 30
TAIL_MAX = 64 * 1024          # bytes read from the node per refresh, at most
FILE_MAX = 256 * 1024         # a file bigger than this is not diffed
FETCH_TIMEOUT = 10.0
TAIL_EVERY = 3.0              # seconds between refreshes while the tail is shown


class RemoteError(Exception):
    """Fetching from the node failed; the message says what and where."""


TAIL_FILES = 8                # files tailed per refresh, at most (a `logs` glob may match thousands)
_GLOB_SAFE = re.compile(r"^[A-Za-z0-9_.*?/+-]+$")
_COMPRESSED = (".gz", ".zst", ".xz", ".bz2", ".lz4")


def log_globs(patterns) -> list[str]:
    """The fleet's `[service] logs` globs that may stand unquoted in a shell word list: relative,
    no `..`, only name characters and `* ?` (anything else is left out of the tail, never
    quoted into a literal that matches nothing or expanded into something else)."""
    return [p for p in patterns
            if _GLOB_SAFE.match(p) and not p.startswith("/") and ".." not in p.split("/")]


def tail_command(root: str, lines: int = TAIL_LINES, logs=()) -> str:
    """The monitor's events, each process's output file and the service's own logs (the
    fleet's `logs` globs; compressed rotations skipped), each under a header, at most
    TAIL_FILES files."""
    n = int(lines)
    skip = " ".join(f"*{ext}" for ext in _COMPRESSED)
    return (f"cd {shell_path(root)} || exit 3; i=0; "
            f"for f in .pltui/events.log .pltui/run/*.out {' '.join(log_globs(logs))}; do "
            f"[ -f \"$f\" ] || continue; case $f in {skip.replace(' ', '|')}) continue ;; esac; "
            f"i=$((i+1)); [ $i -le {TAIL_FILES} ] || break; "
            f"printf '==> %s <==\\n' \"$f\"; tail -n {n} \"$f\"; done")


def cat_command(root: str, path: str) -> str:
    """The file at `path` (relative to the root), if regular and not too big."""
    relative, why = check_path(path)  # the rule repair applies to the same drifted files
    if relative is None:
        raise RemoteError(f"refusing path {path!r}: {why}")
    quoted = shlex.quote(relative)
    return (f"cd {shell_path(root)} || exit 3; [ -f {quoted} ] || {{ echo 'not a regular file' >&2; exit 4; }}; "
            f"size=$(wc -c < {quoted}); [ \"$size\" -le {FILE_MAX} ] || "
            f"{{ echo \"too big to diff ($size bytes)\" >&2; exit 5; }}; cat {quoted}")


async def fetch(transport, node, command: str, limit: int) -> bytes:
    """Run `command` on the node (bounded in time and output); RemoteError on any failure."""
    from pltui.ssh import NodeError

    try:
        result = await transport.run(node, command, timeout=FETCH_TIMEOUT, max_output=limit)
    except NodeError as exc:
        raise RemoteError(f"{node.name}: {exc.message}") from None
    if result.exit_status not in (0, None):
        why = clean(result.stderr, limit=200) or f"exit {result.exit_status}"
        raise RemoteError(f"{node.name}: {why}")
    return result.stdout


def tail_text(data: bytes, styles=None) -> Text:
    out = Text(end="")
    for line in clean(data, limit=TAIL_MAX, newlines=True).split("\n"):
        if line.startswith("==> ") and line.endswith(" <=="):
            out.append(line + "\n", "bold")
        elif line:
            out.append(line + "\n")
    return out if out.plain else Text("nothing to show (no events.log, no process output yet)", end="")


def majority_holder(name: str, path: str, fleet: Fleet, statuses: dict[str, NodeStatus],
                    consensus: Consensus) -> str | None:
    """A reachable node of the same track holding the majority's copy of `path`."""
    track = fleet.nodes[name].track
    verdict = consensus.files.get((track, path))
    if verdict is None or not verdict.digest:
        return None
    for other, node in fleet.nodes.items():
        status = statuses.get(other)
        if other != name and node.track == track and status is not None and status.reachable \
                and (status.digests or {}).get(path) == verdict.digest:
            return other
    return None


def diff_text(mine: bytes, theirs: bytes, name: str, holder: str, path: str) -> Text:
    """A unified diff (majority copy -> this node) as Text: removed red, added green."""
    a = clean(theirs, limit=FILE_MAX, newlines=True).splitlines()
    b = clean(mine, limit=FILE_MAX, newlines=True).splitlines()
    out = Text(end="")
    lines = list(difflib.unified_diff(a, b, f"{holder}:{path} (majority)", f"{name}:{path}", lineterm="", n=3))
    if not lines:
        out.append("the two copies have the same text (they differ in bytes the text view hides: "
                   "line endings, control bytes or encoding)\n")
    for line in lines[:2000]:
        style = "bold" if line.startswith(("---", "+++", "@@")) else "green" if line.startswith("+") \
            else "red" if line.startswith("-") else ""
        out.append(line + "\n", style)
    if len(lines) > 2000:
        out.append(f"... {len(lines) - 2000} more diff lines\n")
    return out
