"""State capture: snapshot the fleet's ``state`` paths of every selected node, in parallel, into
``DEST/<timestamp>/<node>.tar.gz``, with a status per node.

- The timestamp directory (UTC, ``YYYYmmddTHHMMSSZ``, suffixed ``-2``, ``-3``... when taken) is
  created fresh for each capture, so captures never mix or overwrite each other.
- Per node, one exec: ``cd ROOT``, expand each state path (globs allowed, like ``logs``), report
  the ones that match nothing, then ``tar -cf - ./PATH... | gzip -1 -c``. The stream goes
  chunk by chunk (1 MiB at most in flight, written by a worker thread) into
  ``<node>.tar.gz.part``: an archive is never held whole in memory. The command is bounded on
  the node (timeout(1)) and here (``timeout`` overall, and the command timeout without a byte).
- The part is then checked as a whole: ``tarfile`` reads it in stream mode (gzip CRC and every
  tar header), counting members and bytes; only a readable archive is fsynced and linked to its
  final name (the part is removed). A node whose stream fails or is unreadable leaves nothing.
- Status: ``done`` (with the member count; warnings for state paths that are missing and for
  tar's exit 1, "file changed as we read it", which live state often does), ``skipped`` when
  none of the paths exists on the node (no archive), ``failed`` when tar hit a fatal error (exit
  2: the archive is kept but incomplete, and said so) or the stream broke, ``unreachable``.
  Missing paths are reported, never fatal. A ``status.json`` beside the archives records the
  report.

Paths come from the fleet file (or ``--paths``), relative to the service root; every path word is
shell-quoted and prefixed with ``./`` so none is read as an option. Names inside archives are
whatever the node holds: extract them with care (GNU tar refuses ``..`` members by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tarfile
import time
from pathlib import Path

from pltui.actions.base import Action, ActionError, ActionReport
from pltui.actions.logs.codecs import PlainVerifier
from pltui.actions.logs.localstore import DiskFull, FileSink, LocalError, fsync_dir, local_error
from pltui.actions.logs.names import sh_quote
from pltui.actions.logs.stream import stream_exec
from pltui.fleet import NAME_RE
from pltui.model import SSHState
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, bounded

DEFAULT_TIMEOUT = 600.0
MISSING_EXIT = 5

CAPTURE_SCRIPT = b"""
LC_ALL=C
export LC_ALL
NL='
'
cd "$ROOT" 2>/dev/null || { echo "pltui-noroot" >&2; exit 3; }
set --
set -f
IFS=$NL
i=0
for pattern in $PATHS; do
    i=$((i + 1))
    found=0
    set +f
    for f in $pattern; do
        case $f in /*) p=$f ;; *) p=./$f ;; esac
        if [ -e "$p" ] || [ -L "$p" ]; then
            found=1
            set -- "$@" "$p"
        fi
    done
    set -f
    [ "$found" = 1 ] || echo "pltui-missing $i" >&2
done
set +f
unset IFS
[ $# -gt 0 ] || { echo "pltui-none" >&2; exit 5; }
{ tar -cf - "$@"; echo "pltui-tar $?" >&2; } | gzip -1 -c
"""


def _stamp_dir(dest: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        path = dest / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(mode=0o755)
            return path
        except FileExistsError:
            continue
    raise ActionError(f"cannot find a free capture directory under {dest}")


def check_archive(path: Path) -> tuple[int, int]:
    """(members, bytes) of a .tar.gz read in stream mode; raises (tarfile.TarError, OSError, EOFError...)."""
    members = size = 0
    with tarfile.open(path, mode="r|gz") as archive:
        for member in archive:
            members += 1
            size += member.size
    return members, size


class CaptureState(Action):
    """Snapshot the fleet's state paths of each node into DEST/<timestamp>/<node>.tar.gz."""

    kind = "capture"
    mutating = False

    def __init__(self, *args, dest: str | os.PathLike, paths: list[str] | None = None, parallel: int = 16,
                 timeout: float = DEFAULT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.dest = Path(dest).expanduser()
        self.paths = list(paths) if paths else list(self.fleet.service.state)
        self.parallel = max(1, parallel)
        self.timeout = timeout
        self.dir: Path | None = None
        self.bytes = 0

    def arguments(self) -> dict:
        return {"dest": str(self.dest), "paths": self.paths}

    def plan(self) -> dict:
        return {"kind": self.kind, "nodes": self.nodes, "dest": str(self.dest), "paths": self.paths}

    async def execute(self) -> ActionReport:
        if not self.paths:
            raise ActionError("no state paths: set [service].state in the fleet file or pass --paths")
        if any("\n" in p or "\0" in p for p in self.paths):
            raise ActionError("a state path may not contain a newline")
        try:
            self.dest.mkdir(parents=True, exist_ok=True)
            self.dir = _stamp_dir(self.dest)
        except OSError as exc:
            raise ActionError(f"cannot use {self.dest}: {exc.strerror or exc}") from None
        started = time.monotonic()
        await self.for_each(self.nodes, self._node, self.parallel)
        elapsed = time.monotonic() - started
        report = self.report(summary={"dir": str(self.dir), "bytes": self.bytes, "elapsed": round(elapsed, 3)})
        try:
            (self.dir / "status.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", "utf-8")
        except OSError:
            pass
        return report

    async def _node(self, name: str) -> None:
        if not NAME_RE.match(name):
            self.result(name, "failed", f"node name {name!r} is not a safe file name")
            return
        node = self.fleet.nodes[name]
        final = self.dir / f"{name}.tar.gz"
        part = self.dir / f"{name}.tar.gz.part"
        script = (b"ROOT=" + shell_path(node.root).encode() + b"\nPATHS=" +
                  sh_quote("\n".join(self.paths).encode()) + b"\n" + CAPTURE_SCRIPT)
        self.progress(name, "capturing", "")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self.result(name, "failed", str(local_error(exc, part)))
            return
        sink = FileSink(fd, PlainVerifier(), hashlib.sha256(), part)
        last = [0.0]

        async def feed(chunk: bytes) -> None:
            await sink(chunk)
            now = time.monotonic()
            if now - last[0] >= 0.25:
                last[0] = now
                self.progress(name, "capturing", "", bytes_done=sink.written + len(chunk))

        ok = False
        try:
            async with sink.draining(), asyncio.timeout(self.timeout):
                status, err = await stream_exec(self.transport, node, bounded("/bin/sh -s", self.timeout), feed,
                                                idle=lambda: self.transport.command_timeout, input=script,
                                                what="the capture")
            lines = err.decode("utf-8", "replace").splitlines()
            missing = [self.paths[int(l.split()[1]) - 1] for l in lines
                       if l.startswith("pltui-missing ") and l.split()[1].isdigit() and 0 < int(l.split()[1]) <= len(self.paths)]
            tar_exit = next((int(l.split()[1]) for l in lines if l.startswith("pltui-tar ") and l.split()[1].isdigit()), None)
            other = [l for l in lines if not l.startswith("pltui-")]
            if status == 3:
                self.result(name, "failed", f"service root {node.root} does not exist")
                return
            if status == MISSING_EXIT and "pltui-none" in lines:
                self.result(name, "skipped", "none of the state paths exists on the node", missing=missing)
                return
            if status != 0 or tar_exit is None:
                detail = clean_line(" ".join(other), 200)
                self.result(name, "failed", f"the node could not stream the archive (exit {status}"
                            + (f": {detail})" if detail else ")"), missing=missing)
                return
            try:
                members, size = await asyncio.to_thread(check_archive, part)
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                self.result(name, "failed", f"received archive is not a readable .tar.gz: {clean_line(str(exc), 120)}")
                return
            await asyncio.to_thread(self._store, fd, part, final)
            ok = True
            self.bytes += sink.written
            warnings = []
            if missing:
                warnings.append(f"missing: {', '.join(clean_line(m, 80) for m in missing)}")
            if tar_exit == 1:
                warnings.append("some files changed while tar read them")
            note = f"{members} entries, {size} bytes ({sink.written} compressed) in {final.name}"
            data = dict(archive=str(final), members=members, bytes=size, compressed=sink.written,
                        missing=missing, tar_exit=tar_exit)
            if tar_exit is not None and tar_exit >= 2:
                detail = clean_line(" ".join(other), 160)
                self.result(name, "failed", f"incomplete archive kept ({note}): tar exit {tar_exit}"
                            + (f": {detail}" if detail else ""), **data)
            else:
                self.result(name, "done", note + ("; " + "; ".join(warnings) if warnings else ""), **data)
        except NodeError as exc:
            state = "unreachable" if exc.state in (SSHState.REFUSED, SSHState.UNREACHABLE) else "failed"
            self.result(name, state, exc.message)
        except (asyncio.TimeoutError, TimeoutError):
            self.result(name, "failed", f"capture did not finish within {self.timeout:g}s")
        except DiskFull as exc:
            self.result(name, "failed", str(exc))
        except LocalError as exc:
            self.result(name, "failed", str(exc))
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
            if not ok:
                try:
                    os.unlink(part)
                except OSError:
                    pass

    @staticmethod
    def _store(fd: int, part: Path, final: Path) -> None:
        try:
            os.fsync(fd)
            os.link(part, final)
            os.unlink(part)
            fsync_dir(final.parent)
        except OSError as exc:
            raise local_error(exc, final) from None
