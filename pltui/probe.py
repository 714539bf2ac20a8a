"""The probe: build the script sent to a node, and parse its report strictly and defensively.

Everything a node prints is hostile until parsed: the parser accepts only known records with
well-formed fields, caps sizes, sanitises every string it keeps, and turns anything else into a
`ProbeError` for that node (never an exception that escapes the sweep).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources

from pltui.fleet import Fleet, Node
from pltui.model import NodeStatus, ProcStatus
from pltui.sanitize import clean_line

MAX_OUTPUT = 2 * 1024 * 1024
MAX_FILES = 20000
HEARTBEAT_STALE_INTERVALS = 3
_INT = re.compile(r"^-?\d{1,18}$")
_FLOAT = re.compile(r"^-?\d{1,15}(\.\d{1,9})?$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^\\?([0-9a-f]{64})$")
_PROC_STATES = {"starting", "running", "backoff", "stopped"}


class ProbeError(ValueError):
    """The probe's output could not be trusted; the message names the offending line."""


def shell_path(path: str) -> str:
    """A path as a shell word: `~/x` keeps its home expansion, everything else is quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _script_body() -> str:
    """probe.sh without its comment lines and indentation: fewer bytes on every probe."""
    text = resources.files("pltui.node").joinpath("probe.sh").read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#")) + "\n"


_BODY: str | None = None


def build_script(fleet: Fleet, node: Node, *, checksums: bool) -> bytes:
    """The probe script for one node: quoted variable assignments, then probe.sh."""
    global _BODY
    if _BODY is None:
        _BODY = _script_body()
    svc = fleet.service
    procs = "\n".join(f"{p.name} {p.pidfile}" for p in svc.processes)
    assignments = [
        f"ROOT={shell_path(node.root)}",
        f"VERSION_FILE={shlex.quote(svc.version_file or '')}",
        f"PROTOCOL_FILE={shlex.quote(svc.protocol_file or '')}",
        f"PROTOCOL_COMMAND={shlex.quote(svc.protocol_command or '')}",
        f"PROCS={shlex.quote(procs)}",
        f"LOGS={shlex.quote(chr(10).join(svc.logs))}",
        f"IMPORTANT={shlex.quote(chr(10).join(svc.important))}",
        f"CHECKSUMS={'1' if checksums else '0'}",
    ]
    return ("\n".join(assignments) + "\n" + _BODY).encode()


PROBE_COMMAND = "/bin/sh -s"


def _int(value: str, line_no: int, what: str) -> int:
    if not _INT.match(value):
        raise ProbeError(f"line {line_no}: {what} is not an integer: {clean_line(value, 40)!r}")
    return int(value)


def _opt_int(value: str, line_no: int, what: str) -> int | None:
    return None if value == "-" else _int(value, line_no, what)


def _float(value: str, line_no: int, what: str) -> float:
    if not _FLOAT.match(value):
        raise ProbeError(f"line {line_no}: {what} is not a number: {clean_line(value, 40)!r}")
    return float(value)


def _unescape_gnu(name: str) -> str:
    """Undo GNU sha256sum's escaping of names holding a backslash or newline."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\" and i + 1 < len(name):
            nxt = name[i + 1]
            out.append({"\\": "\\", "n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass
class _Heartbeat:
    time: float | None = None
    procs: dict | None = None


def parse(output: bytes, fleet: Fleet, node: Node, *, checksums: bool) -> NodeStatus:
    """Parse a probe report into a NodeStatus (ssh fields left to the caller); ProbeError if bad."""
    if len(output) > MAX_OUTPUT:
        raise ProbeError(f"probe output too large ({len(output)} bytes)")
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProbeError(f"probe output is not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "pltui-probe 1":
        first = clean_line(lines[0] if lines else "", 60)
        raise ProbeError(f"not a pltui probe report (first line {first!r})")
    if lines[-1] != "end":
        raise ProbeError("probe report truncated (no end record)")
    status = NodeStatus(node=node.name)
    seen: set[str] = set()
    hb = _Heartbeat(procs={})
    alive: dict[str, tuple[bool, int | None]] = {}
    monitor_pid: tuple[int | None, str | None] = (None, None)
    digests: dict[str, str] = {}
    noroot = False
    for line_no, line in enumerate(lines[1:-1], start=2):
        kind, _, rest = line.partition(" ")
        single = kind in {"clock", "uptime", "load", "disk_free", "log_bytes", "version", "protocol",
                          "monitor_pid", "hb_time", "digest_tool", "noroot"}
        if single:
            if kind in seen:
                raise ProbeError(f"line {line_no}: duplicate {kind!r} record")
            seen.add(kind)
        if kind == "clock":
            status.clock = float(_int(rest, line_no, "clock"))
        elif kind == "uptime":
            status.uptime = float(_int(rest, line_no, "uptime"))
        elif kind == "load":
            status.load = _float(rest, line_no, "load")
        elif kind == "disk_free":
            status.disk_free = _int(rest, line_no, "disk_free")
        elif kind == "log_bytes":
            status.log_bytes = _int(rest, line_no, "log_bytes")
        elif kind == "version":
            status.version = clean_line(rest, 120) or None
        elif kind == "protocol":
            status.protocol = clean_line(rest, 60) or None
        elif kind == "noroot":
            noroot = True
        elif kind == "monitor_pid":
            parts = rest.split(" ")
            if parts == ["-"]:
                monitor_pid = (None, None)
            elif len(parts) == 2 and parts[1] in ("alive", "dead"):
                monitor_pid = (_int(parts[0], line_no, "monitor pid"), parts[1])
            else:
                raise ProbeError(f"line {line_no}: bad monitor_pid record")
        elif kind == "hb_time":
            hb.time = float(_int(rest.strip(), line_no, "heartbeat time"))
        elif kind == "hb_proc":
            parts = rest.split(" ")
            if len(parts) != 6 or not _NAME.match(parts[0]) or parts[1] not in _PROC_STATES:
                raise ProbeError(f"line {line_no}: bad heartbeat process record")
            hb.procs[parts[0]] = (
                parts[1],
                _opt_int(parts[2], line_no, "pid"),
                _opt_int(parts[3], line_no, "restarts"),
                _opt_int(parts[4], line_no, "exit status"),
                _opt_int(parts[5], line_no, "next try"),
            )
        elif kind == "proc":
            parts = rest.split(" ")
            if len(parts) != 3 or not _NAME.match(parts[0]) or parts[1] not in ("alive", "dead"):
                raise ProbeError(f"line {line_no}: bad process record")
            if parts[0] in alive:
                raise ProbeError(f"line {line_no}: duplicate process {parts[0]!r}")
            alive[parts[0]] = (parts[1] == "alive", _opt_int(parts[2], line_no, "pid"))
        elif kind == "digest_tool":
            if rest not in ("sha256sum", "shasum", "openssl", "none"):
                raise ProbeError(f"line {line_no}: unknown digest tool")
            status.digest_tool = rest
        elif kind == "file":
            digest, sep, name = rest.partition("  ")
            match = _DIGEST.match(digest)
            if not sep or not match or not name:
                raise ProbeError(f"line {line_no}: bad file digest record")
            if digest.startswith("\\"):
                name = _unescape_gnu(name)
            if len(digests) >= MAX_FILES:
                raise ProbeError(f"more than {MAX_FILES} important files")
            digests[name] = match.group(1)
        else:
            raise ProbeError(f"line {line_no}: unknown record {clean_line(kind, 30)!r}")
    if status.clock is None:
        raise ProbeError("probe report has no clock record")

    # Processes: the configured ones, in fleet order; anything else reported is garbage.
    configured = [p.name for p in fleet.service.processes]
    extra = set(alive) - set(configured)
    if extra:
        raise ProbeError(f"report names unconfigured process {clean_line(sorted(extra)[0], 40)!r}")
    interval = fleet.service.monitor_interval
    hb_fresh = hb.time is not None and status.clock - hb.time <= HEARTBEAT_STALE_INTERVALS * interval
    if hb.time is not None:
        status.heartbeat_age = max(0.0, status.clock - hb.time)
    mpid, mstate = monitor_pid
    status.monitor_pid = mpid
    if noroot:
        status.monitor = "absent"
    elif mpid is None and hb.time is None:
        status.monitor = "absent"
    elif mstate == "alive" and hb_fresh:
        status.monitor = "alive"
    else:
        status.monitor = "dead"
    for name in configured:
        is_alive, pid = alive.get(name, (False, None))
        proc = ProcStatus(name=name, alive=is_alive, pid=pid, state="running" if is_alive else "dead")
        beat = hb.procs.get(name) if hb_fresh and status.monitor == "alive" else None
        if beat is not None:
            state, _hb_pid, restarts, last_exit, next_try = beat
            proc.restarts = restarts
            proc.last_exit = last_exit
            if state == "stopped":
                proc.state = "stopped"
            elif state == "backoff" and not is_alive:
                proc.state = "backoff"
                proc.next_try = float(next_try) if next_try is not None else None
            elif state == "starting" and is_alive:
                proc.state = "starting"
        status.processes.append(proc)
    if checksums:
        status.digests = digests
    if noroot:
        status.error = f"service root {clean_line(node.root, 100)} does not exist"
    return status
