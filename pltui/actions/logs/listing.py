"""The node-side listing: ``pltui/node/logs.sh`` sent to ``sh -s``, and a strict parser of its
records. They are NUL-terminated with the name last, so a name may hold any byte but NUL; the
parser caps the output, checks every field and treats every byte as hostile.

Modes: ``list`` stats and hashes every file the ``logs`` globs match; ``stat`` only stats them
(a re-run, so that the node need not re-read what it handed over already); ``hash`` hashes the
given files (`list_node` runs these three); ``prune`` deletes the given files once they check
out (see `prune.prune_node`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from pltui.actions.logs.names import display, normalize, sh_quote
from pltui.actions.logs.stream import stream_exec
from pltui.fleet import Node
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import Transport, bounded

LIST_MAX_OUTPUT = 32 << 20    # a listing longer than this is refused
MAX_FILES = 100_000
HASH_RATE = 10 << 20          # slowest node hashing we wait for (bytes/s), on top of the command timeout
NODE_BOUND = 6 * 3600         # node-side cap (timeout(1)) for a list or prune run
_HEX64 = re.compile(rb"^[0-9a-f]{64}$")
_UINT = re.compile(rb"^[0-9]{1,19}$")


class ListError(ValueError):
    """A node's listing could not be trusted."""


@dataclass
class RemoteFile:
    path: bytes                # normalized, relative to the service root
    size: int
    mtime: int
    sha256: str | None         # None: not hashed (a stat-only listing)
    moved: bool = False        # its stat changed while the node hashed it
    ctime: int = 0
    ino: int = 0

    @property
    def version(self) -> tuple[int, int, int, int]:
        """What identifies this version of the file without reading it (any write changes ctime)."""
        return (self.size, self.mtime, self.ctime, self.ino)

    @property
    def shown(self) -> str:
        return display(self.path)


@dataclass
class Listing:
    files: list[RemoteFile] = field(default_factory=list)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)   # (raw name, why)
    skipped: list[tuple[bytes, str]] = field(default_factory=list)    # unreadable / vanished
    codecs: set[str] = field(default_factory=set)
    nice: bool = False
    hashing: int = 0           # size of the file being hashed now (bounds the wait)
    hashed: int = 0
    done: bool = False


class ListParser:
    """Incremental, strict parser of logs.sh list output (NUL-terminated records)."""

    def __init__(self, max_output: int = LIST_MAX_OUTPUT):
        self.listing = Listing()
        self.buf = bytearray()
        self.total = 0
        self.max_output = max_output
        self.header = False
        self._seen: set[bytes] = set()
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_output:
            raise ListError(f"listing longer than {self.max_output} bytes")
        self.buf += data
        while True:
            end = self.buf.find(b"\0")
            if end < 0:
                if len(self.buf) > 64 * 1024:
                    raise ListError("a listing record longer than 64 KiB")
                return
            record = bytes(self.buf[:end])
            del self.buf[:end + 1]
            self._record(record)

    def _record(self, rec: bytes) -> None:
        lst = self.listing
        if lst.done:
            raise ListError("data after the end record")
        if not self.header:
            if rec.startswith(b"error "):
                self._error(rec)
                return
            if rec != b"pltui-logs 1":
                raise ListError(f"not a pltui listing (first record {clean_line(rec, 40)!r})")
            self.header = True
            return
        kind, _, rest = rec.partition(b" ")
        if kind == b"tools":
            words = rest.split(b" ")
            if len(words) < 3:
                raise ListError("bad tools record")
            lst.nice = words[2] == b"nice"
            lst.codecs = {w.decode() for w in words[3:] if w in (b"zstd", b"gzip")}
        elif kind == b"stat":
            size, _, rest2 = rest.partition(b" ")
            if not _UINT.match(size):
                raise ListError("bad size in a stat record")
            lst.hashing = int(size)
        elif kind == b"file":
            fields = rest.split(b" ", 6)
            if len(fields) != 7:
                raise ListError("bad file record")
            size, mtime, ctime, ino, sha, moved, name = fields
            if not all(_UINT.match(v) for v in (size, mtime, ctime, ino)) or moved not in (b"0", b"1"):
                raise ListError(f"bad file record for {display(name, 60)}")
            if sha == b"-":
                sha = None
            elif not _HEX64.match(sha):
                if not sha:
                    lst.skipped.append((name, "could not be read (sha256 failed)"))
                    return
                raise ListError(f"bad sha256 for {display(name, 60)}")
            lst.hashing = 0
            lst.hashed += 1
            path, why = normalize(name)
            if path is None:
                lst.rejected.append((name, why))
                return
            if path in self._seen:
                return
            if len(lst.files) >= MAX_FILES:
                raise ListError(f"more than {MAX_FILES} files")
            self._seen.add(path)
            lst.files.append(RemoteFile(path, int(size), int(mtime), sha.decode() if sha else None, moved == b"1",
                                        int(ctime), int(ino)))
        elif kind == b"skip":
            reason, _, name = rest.partition(b" ")
            if reason not in (b"unreadable", b"vanished"):
                raise ListError("bad skip record")
            lst.skipped.append((name, reason.decode()))
        elif kind == b"error":
            self._error(rec)
        elif rec == b"end":
            lst.done = True
        else:
            raise ListError(f"unexpected record {clean_line(rec, 40)!r}")

    def _error(self, rec: bytes) -> None:
        reason = rec[6:]
        self.error = {
            b"noroot": "service root does not exist",
            b"nostat": "the node has no `stat -c` (GNU or busybox stat needed)",
            b"nosum": "the node has no sha256 tool (sha256sum, shasum or openssl)",
        }.get(reason, f"node error {clean_line(reason, 40)!r}")
        self.listing.done = True

    def finish(self) -> Listing:
        if self.error:
            raise ListError(self.error)
        if self.buf or not self.listing.done:
            raise ListError("listing cut short (no end record)")
        return self.listing


def _script_body() -> bytes:
    return resources.files("pltui.node").joinpath("logs.sh").read_bytes()


_BODY: bytes | None = None


def node_script(node: Node, mode: str, *, logs: tuple[str, ...] = (), words: list[bytes] = ()) -> bytes:
    """logs.sh with its variables (and for prune, `set -- words`) prepended, shell-quoted."""
    global _BODY
    if _BODY is None:
        _BODY = _script_body()
    head = [
        b"ROOT=" + shell_path(node.root).encode(),
        b"MODE=" + mode.encode(),
        b"LOGS=" + sh_quote("\n".join(logs).encode()),
    ]
    if words:
        head.append(b"set -- " + b" ".join(sh_quote(w) for w in words))
    return b"\n".join(head) + b"\n" + _BODY


async def list_node(transport: Transport, node: Node, mode: str, logs: tuple[str, ...],
                    paths: list[bytes] = ()) -> Listing:
    """One listing exec (`mode` list, stat or hash), parsed as it streams; its wait for a byte
    grows with the size of the file being hashed."""
    parser = ListParser()
    timeout = transport.command_timeout

    async def sink(chunk: bytes) -> None:
        parser.feed(chunk)

    def idle() -> float:
        return timeout + parser.listing.hashing / HASH_RATE

    script = node_script(node, mode, logs=logs, words=list(paths))
    status, err = await stream_exec(transport, node, bounded("/bin/sh -s", NODE_BOUND), sink,
                                    idle=idle, input=script, what=f"the log listing ({mode})")
    try:
        return parser.finish()
    except ListError as exc:
        detail = clean_line(err, 160)
        raise ListError(f"{exc}" + (f" ({detail})" if detail else f" (exit {status})" if status else "")) from None
