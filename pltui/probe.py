"""The probe: build the script sent to a node, and parse its report strictly and defensively.

Everything a node prints is hostile until parsed: the parser accepts only known records with
well-formed fields, caps sizes, sanitises every string it keeps, and turns anything else into a
`ProbeError` for that node (never an exception that escapes the sweep).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources

from pltui.fleet import Fleet, Node
from pltui.model import NodeStatus, ProcStatus
from pltui.sanitize import clean_line, display_name

MAX_OUTPUT = 16 * 1024 * 1024   # 20,000 important files with long names fit
MAX_FILES = 50000
MAX_SPECIALS = 200
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


_BODY: bytes | None = None


def probe_body() -> bytes:
    """The probe's code: what bootstrap installs on a node and what a sweep sends when the node
    does not hold this exact version. Per-node parameters are never part of it."""
    global _BODY
    if _BODY is None:
        _BODY = _script_body().encode()
    return _BODY


def probe_digest() -> str:
    return hashlib.sha256(probe_body()).hexdigest()


def installed_path() -> str:
    """Where bootstrap puts the probe, relative to the service root: versioned by digest, so an
    engine of another version never runs a probe it does not expect."""
    return f".pltui/probe-{probe_digest()[:16]}.sh"


def probe_args(fleet: Fleet, node: Node, *, checksums: bool) -> str:
    """The probe's positional arguments as shell words, read from the fleet file on every sweep."""
    svc = fleet.service
    procs = "\n".join(f"{p.name} {p.pidfile}" for p in svc.processes)
    words = [svc.version_file or "", svc.protocol_file or "", svc.protocol_command or "", procs,
             "\n".join(svc.logs), "\n".join(svc.important), "1" if checksums else "0"]
    if checksums:  # seconds between full passes; the node keeps the time of the last one
        words.append(str(int(fleet.sweep.full_checksum_interval)))
    return " ".join([shell_path(node.root)] + [shlex.quote(w) for w in words])


def build_script(fleet: Fleet, node: Node, *, checksums: bool) -> bytes:
    """The whole probe for `sh -s` (tests and benches): `set --` with the arguments, then the body."""
    return f"set -- {probe_args(fleet, node, checksums=checksums)}\n".encode() + probe_body()


#: What the node prints first when it does not hold the expected probe: the engine then sends
#: the body on the same channel (no second exec).
SEND_BODY = b"pltui-send\n"


def probe_command(fleet: Fleet, node: Node, *, checksums: bool, limit: int) -> str:
    """The command a sweep runs (a few hundred bytes): the installed probe, else the body asked
    for on stdin (`SEND_BODY`); decided on the node in one exec.

    A liveness probe (every few seconds, on every node) must cost the node little, so it trusts
    the installed file by its name: named by the body's digest, under `.pltui/`, writable only by
    the service user (who could as well change monitor.sh). A non-empty file is sourced (`.`) in
    the login shell, with no sha256sum, no timeout(1) and no second shell: the engine's deadline
    bounds it (a frozen node's connection is aborted), and a damaged file cannot pass for a
    healthy node because the report is parsed strictly (no `end` record: garbled). An empty or
    missing file gets the body sent.

    A fleet with a `protocol_command` keeps timeout(1) (and so `/bin/sh F`) on liveness probes
    too: that command is the operator's, may hang or print forever into the probe's pipe, and
    nothing but a node-side timeout ends it once the engine has given up (each sweep would leave
    one more behind). A checksum probe verifies the installed file's sha256 (96 bits compared:
    enough to tell any change) before running it, so a changed file is caught on the next
    checksum sweep, and is always bounded on the node by timeout(1) where it exists (`limit`
    seconds; it signals the probe's whole process group): it may hash for minutes.
    pltui.ssh.bounded's wrapper is not used; it would double the command's size."""
    head = f"set -- {probe_args(fleet, node, checksums=checksums)};F=$1/{installed_path()};"
    send = f"echo {SEND_BODY.decode().strip()};exec "
    if not checksums and not fleet.service.protocol_command:
        # `exit` after `.`: the body has run, never also the fallback
        return head + f'if [ -s "$F" ];then . "$F";exit;fi;{send}/bin/sh -s "$@"'
    head += f"T=;command -v timeout>/dev/null&&T='timeout {int(limit)}';"
    if checksums:
        run = f"case $(sha256sum 2>&- <\"$F\") in {probe_digest()[:24]}*)exec $T /bin/sh \"$F\" \"$@\";;esac;"
    else:
        run = 'if [ -s "$F" ];then exec $T /bin/sh "$F" "$@";fi;'
    return head + run + f'{send}$T /bin/sh -s "$@"'


async def install(transport, node: Node) -> str:
    """Install the probe under the node's `.pltui/` (temp file, then rename: a sweep never sources
    half a file) and remove other versions. Returns the installed path; raises ProbeError with the
    node's answer when that fails (NodeError for connection trouble, as any transport call)."""
    path = installed_path()
    tmp = f"{path}.tmp"
    command = (f"cd {shell_path(node.root)} && mkdir -p .pltui && umask 077 && cat > {tmp} && mv -f {tmp} {path} && "
               f"for f in .pltui/probe-*.sh; do [ \"$f\" = {path} ] || rm -f \"$f\"; done")
    result = await transport.run(node, command, input=probe_body(), what="installing the probe")
    if result.exit_status != 0:
        text = clean_line(result.stderr or result.stdout, 200) or f"exit status {result.exit_status}"
        raise ProbeError(f"cannot install the probe as {path}: {text}")
    return path


PROBE_COMMAND = "/bin/sh -s"  # the probe read whole from stdin (build_script), as benches run it


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


def _decode(raw: bytes) -> tuple[str, bool]:
    """One line of the report as text, and whether it held bytes that are not UTF-8.

    Decoded per line, never the whole report at once: one odd byte in a VERSION file or a
    Latin-1 file name must not cost the node its monitor and process state. Odd bytes are kept
    as visible `\\xNN` escapes in the field where they occur."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), True


@dataclass
class _Report:
    """What the records of one report said, before it is checked against the fleet."""

    status: NodeStatus
    hb_time: float | None = None
    hb_procs: dict = field(default_factory=dict)
    alive: dict = field(default_factory=dict)
    monitor_pid: tuple = (None, None)
    digests: dict = field(default_factory=dict)
    specials: dict = field(default_factory=dict)
    file_warnings: list = field(default_factory=list)
    noroot: bool = False
    hb_bad: bool = False
    seen: set = field(default_factory=set)


_SINGLE = {"clock", "uptime", "load", "disk_free", "disk_kib", "log_bytes", "version", "protocol",
           "monitor_pid", "digest_tool", "noroot"}
_HEARTBEAT = {"hb_time", "hb_proc"}  # the monitor's file, copied: a bad line is a warning
_SPECIAL_REASONS = {"fifo", "device", "socket", "unreadable", "link to device", "link to fifo",
                    "link to socket", "broken link", "newline in name", "other"}
_DIGEST_TOOLS = ("sha256sum", "shasum", "openssl", "busybox", "none")


def _split_lines(output: bytes) -> list[bytes]:
    if len(output) > MAX_OUTPUT:
        raise ProbeError(f"probe output too large ({len(output)} bytes)")
    lines = output.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines or lines[0] != b"pltui-probe 1":
        first = clean_line(_decode(lines[0])[0] if lines else "", 60)
        raise ProbeError(f"not a pltui probe report (first line {first!r})")
    if lines[-1] != b"end":
        raise ProbeError("probe report truncated (no end record)")
    return lines


def parse(output: bytes, fleet: Fleet, node: Node, *, checksums: bool) -> NodeStatus:
    """Parse a probe report into a NodeStatus (ssh fields left to the caller); ProbeError if bad."""
    rep = _Report(status=NodeStatus(node=node.name))
    digest_section = False  # after `digest_tool`: tools print file names raw, so a line may be odd
    for line_no, raw in enumerate(_split_lines(output)[1:-1], start=2):
        line, odd = _decode(raw)
        kind, _, rest = line.partition(" ")
        if digest_section and kind not in ("file", "special"):
            _odd_digest_line(rep, line, line_no)
            continue
        if kind in _SINGLE:
            if kind in rep.seen:
                raise ProbeError(f"line {line_no}: duplicate {kind!r} record")
            rep.seen.add(kind)
        if odd and kind not in ("file", "special"):
            if kind not in ("version", "protocol"):
                raise ProbeError(f"line {line_no}: {clean_line(kind, 30)!r} record is not UTF-8 text")
            rep.status.warnings.append(f"{kind} holds bytes that are not UTF-8 (shown escaped)")
        try:
            _record(rep, kind, rest, line_no, odd)
        except ProbeError as exc:
            if kind in _HEARTBEAT and not digest_section:
                _bad_heartbeat(rep, exc)
            elif digest_section:
                _odd_digest_line(rep, line, line_no)
            else:
                raise
        digest_section = digest_section or kind == "digest_tool"
    if rep.status.clock is None:
        raise ProbeError("probe report has no clock record")
    return _finish(rep, fleet, node, checksums)


def _record(rep: _Report, kind: str, rest: str, line_no: int, odd: bool) -> None:
    """Take one record into `rep`; ProbeError for anything malformed."""
    status = rep.status
    if kind == "clock":
        status.clock = _float(rest, line_no, "clock")
    elif kind == "uptime":
        status.uptime = float(_int(rest, line_no, "uptime"))
    elif kind == "load":
        status.load = _float(rest, line_no, "load")
    elif kind == "disk_free":
        status.disk_free = _int(rest, line_no, "disk_free")
    elif kind == "disk_kib":
        status.disk_free = _int(rest, line_no, "disk_kib") * 1024
    elif kind == "log_bytes":
        status.log_bytes = _int(rest, line_no, "log_bytes")
    elif kind == "version":
        status.version = clean_line(rest, 120) or None
    elif kind == "protocol":
        status.protocol = clean_line(rest, 60) or None
    elif kind == "noroot":
        rep.noroot = True
    elif kind == "monitor_pid":
        rep.monitor_pid = _monitor_pid(rest, line_no)
    elif kind == "hb_time":
        if rep.hb_time is not None:
            raise ProbeError(f"line {line_no}: a second heartbeat time")
        rep.hb_time = float(_int(rest.strip(), line_no, "heartbeat time"))
    elif kind == "hb_proc":
        _hb_proc(rep, rest, line_no)
    elif kind == "proc":
        parts = rest.split(" ")
        if len(parts) != 3 or not _NAME.match(parts[0]) or parts[1] not in ("alive", "dead"):
            raise ProbeError(f"line {line_no}: bad process record")
        if parts[0] in rep.alive:
            raise ProbeError(f"line {line_no}: duplicate process {parts[0]!r}")
        rep.alive[parts[0]] = (parts[1] == "alive", _opt_int(parts[2], line_no, "pid"))
    elif kind == "digest_tool":
        if rest not in _DIGEST_TOOLS:
            raise ProbeError(f"line {line_no}: unknown digest tool")
        status.digest_tool = rest
    elif kind == "file":
        _file(rep, rest, line_no, odd)
    elif kind == "special":
        _special(rep, rest, line_no, odd)
    else:
        raise ProbeError(f"line {line_no}: unknown record {clean_line(kind, 30)!r}")


def _odd_digest_line(rep: _Report, line: str, line_no: int) -> None:
    """A line of the digest tool's output that is no record (busybox sha256sum and openssl print
    a name holding a newline as is): kept as a warning, never taken as a record, and the node
    stays up. Records that describe the node itself are only accepted before `digest_tool`."""
    if len(rep.file_warnings) < MAX_SPECIALS:
        rep.file_warnings.append(f"line {line_no} of the digest output not understood: {display_name(line, 120)}")


def _bad_heartbeat(rep: _Report, exc: ProbeError) -> None:
    """A heartbeat line that does not parse costs the node its heartbeat, not its report: the
    monitor is then judged without it (dead unless the rest says alive), and the node warned."""
    rep.hb_bad = True
    if sum(w.startswith("heartbeat file") for w in rep.status.warnings) < 3:
        rep.status.warnings.append(f"heartbeat file .pltui/state not understood: {clean_line(str(exc), 160)}")


def _monitor_pid(rest: str, line_no: int) -> tuple[int | None, str | None]:
    parts = rest.split(" ")
    if parts == ["-"]:
        return (None, None)
    if len(parts) == 2 and parts[1] in ("alive", "dead"):
        return (_int(parts[0], line_no, "monitor pid"), parts[1])
    raise ProbeError(f"line {line_no}: bad monitor_pid record")


def _hb_proc(rep: _Report, rest: str, line_no: int) -> None:
    parts = rest.split(" ")
    if len(parts) != 6 or not _NAME.match(parts[0]) or parts[1] not in _PROC_STATES:
        raise ProbeError(f"line {line_no}: bad heartbeat process record")
    rep.hb_procs[parts[0]] = (
        parts[1],
        _opt_int(parts[2], line_no, "pid"),
        _opt_int(parts[3], line_no, "restarts"),
        _opt_int(parts[4], line_no, "exit status"),
        _opt_int(parts[5], line_no, "next try"),
    )


def _node_path(name: str) -> str:
    """A name as the probe printed it, back to the path relative to the root (the probe puts
    `./` before a name that starts with `-` so that no tool reads it as an option)."""
    return name[2:] if name.startswith("./-") else name


def _file(rep: _Report, rest: str, line_no: int, odd: bool) -> None:
    digest, sep, name = rest.partition("  ")
    match = _DIGEST.match(digest)
    if not sep or not match or not name:
        raise ProbeError(f"line {line_no}: bad file digest record")
    if digest.startswith("\\"):
        name = _unescape_gnu(name)
    name = _node_path(name)
    if len(rep.digests) >= MAX_FILES:
        if len(rep.digests) == MAX_FILES:
            rep.file_warnings.append(f"more than {MAX_FILES} important files: the rest are not compared")
            rep.digests[""] = ""  # a marker, removed in _finish, so the warning is given once
        return
    if odd:
        rep.file_warnings.append(f"file name is not UTF-8 (shown escaped): {display_name(name, 160)}")
    rep.digests[name] = match.group(1)


def _special(rep: _Report, rest: str, line_no: int, odd: bool) -> None:
    """An important path the probe did not open, and why (a FIFO would block a reader...)."""
    for reason in sorted(_SPECIAL_REASONS, key=len, reverse=True):
        if rest.startswith(reason + " ") and len(rest) > len(reason) + 1:
            name = _node_path(rest[len(reason) + 1:])
            break
    else:
        raise ProbeError(f"line {line_no}: bad special file record")
    if len(rep.specials) < MAX_SPECIALS:
        rep.specials[name] = reason
        rep.file_warnings.append(f"important path {display_name(name, 160)} not read: {reason}")


def _finish(rep: _Report, fleet: Fleet, node: Node, checksums: bool) -> NodeStatus:
    """Check the records against the fleet: processes, monitor, heartbeat, spec mismatch."""
    status = rep.status
    configured = [p.name for p in fleet.service.processes]
    extra = set(rep.alive) - set(configured)
    if extra:
        raise ProbeError(f"report names unconfigured process {clean_line(sorted(extra)[0], 40)!r}")
    if rep.hb_bad:  # a heartbeat with bad lines is not trusted at all
        rep.hb_time, rep.hb_procs = None, {}
    interval = fleet.service.monitor_interval
    clock = status.clock
    assert clock is not None  # parse() refuses a report without its clock record
    hb_fresh = rep.hb_time is not None and clock - rep.hb_time <= HEARTBEAT_STALE_INTERVALS * interval
    if rep.hb_time is not None:
        status.heartbeat_age = max(0.0, clock - rep.hb_time)
    mpid, mstate = rep.monitor_pid
    status.monitor_pid = mpid
    if rep.noroot or (mpid is None and rep.hb_time is None):
        status.monitor = "absent"
    elif mstate == "alive" and hb_fresh:
        status.monitor = "alive"
    else:
        status.monitor = "dead"
    use_beat = hb_fresh and status.monitor == "alive"
    for name in configured:
        status.processes.append(_proc(name, rep.alive.get(name, (False, None)),
                                      rep.hb_procs.get(name) if use_beat else None))
    if rep.hb_procs:
        _spec_mismatch(status, configured, rep.hb_procs)
    if checksums:
        rep.digests.pop("", None)
        status.digests = rep.digests
        status.special_files = rep.specials
        status.file_warnings = rep.file_warnings
        status.warnings.extend(rep.file_warnings)
    if rep.noroot:
        status.error = f"service root {clean_line(node.root, 100)} does not exist"
    return status


def _proc(name: str, seen: tuple[bool, int | None], beat: tuple | None) -> ProcStatus:
    is_alive, pid = seen
    proc = ProcStatus(name=name, alive=is_alive, pid=pid, state="running" if is_alive else "dead")
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
    return proc


def _spec_mismatch(status: NodeStatus, configured: list[str], spec_procs: dict) -> None:
    """The monitor's heartbeat lists the processes of the spec it runs: a spec that names other
    processes than the fleet file means restarts (and the sweep's counts) will not agree."""
    extra = sorted(set(spec_procs) - set(configured))
    missing = [n for n in configured if n not in spec_procs]
    parts = []
    if extra:
        parts.append("processes not in the fleet file: " + ", ".join(extra))
    if missing:
        parts.append("fleet processes missing from it: " + ", ".join(missing))
    if parts:
        status.warnings.append(clean_line("monitor spec differs from the fleet file: " + "; ".join(parts), 240))


def carry_checksums(previous: NodeStatus | None, status: NodeStatus) -> None:
    """A liveness sweep keeps the last checksum sweep's digests and what it flagged."""
    if previous is None or previous.digests is None:
        return
    status.digests = previous.digests
    status.digests_time = previous.digests_time
    status.digest_tool = previous.digest_tool
    status.special_files = previous.special_files
    status.file_warnings = previous.file_warnings
    status.warnings.extend(previous.file_warnings or [])
