"""Log collection: pull every node's log files into ``DEST/<node>/...``, verified, resumable,
never overwriting, and (``--prune``) delete a node's file only once a verified copy is on disk.

Per node, in order:

1. **List** (one exec, ``pltui/node/logs.sh`` on ``sh -s``): every regular file matching the
   fleet's ``logs`` globs (a directory match takes the files below it; symlinks are never
   followed) with its size, mtime, ctime, inode and the sha256 of its first SIZE bytes,
   computed on the node. On a re-run (a manifest exists) the node first only stats the files,
   and a second exec hashes just the versions -- (size, mtime, ctime, inode); any write changes
   ctime -- that the manifest does not hold with its copy present: the node is not made to
   re-read hundreds of MB it already handed over. Records are NUL-terminated with the name
   last, so a name may hold any byte but NUL; the parser caps the output, checks every field
   and treats every byte as hostile. A name is mapped below ``DEST/<node>/`` only when it is
   relative, with no ``..`` component (``.`` and empty components are dropped) and no
   component over 200 bytes: anything else is rejected and reported, so a hostile node cannot
   write outside its own directory. Directories below ``DEST/<node>`` are created as plain
   directories; a symlink met on the way is refused.

2. **Transfer**, one file at a time per node, nodes in parallel (``parallel``), one exec per
   file on the pooled connection. The node reads the file in segments of 64 MiB with ``dd``
   (the last bounded to the listed size with ``head -c``, so a log still being appended yields
   exactly the listed bytes) and **compresses on the node** each segment on its own
   (``nice -n 10 zstd -1`` where the node and this machine both have zstd, else ``gzip -1``;
   the niceness keeps the service's CPU, ``nice=0`` for none; names already ending in
   .gz/.zst/.xz/... travel and are stored as they are). So each segment is one zstd frame /
   gzip member, the concatenation is a valid .zst / .gz file, and every segment's end -- found
   in the stream itself (`FrameScanner` reads zstd frame and block headers; zlib reports gzip
   member ends) -- is a resume point. Bytes go to ``DEST/<node>/.pltui-partial/<h>.part``;
   ``<h>.idx`` records the file's identity (path, size, sha256, codec) and each finished
   segment (raw and stored offsets). One exec per file, not per segment: a new channel costs a
   few round trips, which over a long link is worth seconds per segment.

   Why compress on the node, measured on this 2-core loopback (real sshd; nodes, client and
   other work sharing the cores): a prototype pulling 4 x 150 MiB of access-log text reached
   ~300 MB/s with raw asyncssh SFTP and no compression at all, 160-240 MB/s with local zlib
   level 1 (deflate is the bottleneck), ~150 MB/s with node ``gzip -1``, and 330-380 MB/s with
   node ``zstd -1`` + local ``zstd -d`` at a fifth of the client CPU (the channel carries ~1/5 of
   the bytes). bench/bench_logs.py, 4 nodes x 300 MiB, everything included (listing and hashing
   on the nodes, verification, Python start-up): scp -r 440 MB/s at 3.4 ms CPU per MB (nodes +
   client); pltui 250 MB/s (0.57 of scp) at 6.5 ms/MB with zstd, 130 MB/s with gzip; the same
   result by hand (scp, sha256sum on both ends, zstd -1) 133 MB/s at 10.3 ms/MB. On a shared
   2-core box every tool is CPU-bound, and zstd -1 alone (~2.3 ms/MB) plus the two sha256 passes
   and the local decompression (~2 ms/MB) cost more than scp's whole transfer: 80% of scp is
   out of reach there for any design that compresses and verifies. On a real fleet the node's
   CPU is its own and the link is the limit, and compressing there moves ~5x fewer bytes.

3. **Verify**: while bytes arrive they are decompressed locally (zlib for gzip, a ``zstd -dc``
   child for zstd) and hashed; the file counts as collected only when the decompressed length
   and sha256 equal the node's listing. A resumed file re-reads its kept prefix through the same
   decoder first, so the whole file is always verified. A mismatch (the file was rewritten or
   truncated during the transfer) discards the partial and fails that file; a re-run retries.

4. **Store**: the verified partial is hard-linked to its final name (``link`` fails rather than
   replace an existing file, so nothing is ever clobbered), then a record is appended to
   ``DEST/<node>/.pltui-manifest.jsonl``: path (percent-encoded as in the probe), node sha256,
   size, mtime, codec, stored name, stored size and stored sha256. The final name is
   ``PATH.zst`` / ``PATH.gz`` / ``PATH``; when that name exists and is not this very file,
   ``PATH.~1~.zst``, ``PATH.~2~.zst``... (GNU numbered-backup style). A re-run skips a file
   whose (path, sha256) the manifest lists with its stored file present (same size; with
   ``--prune`` also the same stored sha256, else it is collected again under a new name). A
   crash between link and record is repaired on the next run (the idx names the final file;
   same inode => adopted). Durability: with ``--prune`` every copy, its directories and its
   record are fsynced before anything is deleted (copies made by earlier runs are re-hashed
   and fsynced first); without it nothing is fsynced as it goes (a killed process loses no page
   cache, the node keeps the original, and a copy damaged by a power cut fails the stored
   sha256 check before any later prune). That keeps a plain collection as fast as scp's.

5. **Prune** (``prune=True``), one exec per node, only for files that are in the manifest
   (this run or an earlier one) with a stored copy whose sha256 is re-checked now, and that did
   not move while being hashed. On the node, per file, in one shell step: size and mtime must
   equal the listing (else "changed": it is still being written), no process may have it open
   (``/proc/*/fd``, where visible), the sha256 must still match, and size/mtime must not have
   moved while hashing; only then ``rm``. Nothing is pruned in a run stopped by a full disk.

Failures: a dropped connection or an idle stream (no byte for the command timeout) retries
the file twice (after 1 s, 3 s) from its last finished segment, then fails the node; a full
local disk (ENOSPC/EDQUOT) stops the whole collection with one line naming the DEST path (every
node writes to the same disk), keeping the partials (trimmed to their last finished segment)
for the next run; other local errors fail that file only. A killed collection loses nothing:
the partials and the manifest are the state, and a re-run continues. ``DEST/.pltui-lock``
(flock) keeps two collections out of one DEST; the kernel drops it with the process.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import zlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

import asyncssh

from pltui.actions.base import Action, ActionError, ActionReport
from pltui.fleet import NAME_RE, Node
from pltui.model import SSHState
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, Transport, bounded

SEGMENT = 64 << 20            # raw bytes per transfer exec (a resume point); multiple of BLOCK
BLOCK = 1 << 20               # dd block size
LIST_MAX_OUTPUT = 32 << 20    # a listing longer than this is refused
MAX_FILES = 100_000
MAX_COMPONENT = 200           # bytes per path component (room for .~N~.zst and the filesystem's 255)
HASH_RATE = 10 << 20          # slowest node hashing we wait for (bytes/s), on top of the command timeout
SEND_RATE = 32 << 10          # slowest transfer the node-side bound allows (bytes/s)
NODE_BOUND = 6 * 3600         # node-side cap (timeout(1)) for a list or prune run
RETRY_DELAYS = (1.0, 3.0)
STREAM_WINDOW = 8 << 20       # SSH channel window of a transfer
PROGRESS_EVERY = 0.25         # seconds between progress events per node
MANIFEST = ".pltui-manifest.jsonl"
PARTIAL_DIR = ".pltui-partial"
LOCK_FILE = ".pltui-lock"
COMPRESSIONS = ("auto", "zstd", "gzip", "none")
CODEC_EXT = {"zstd": ".zst", "gzip": ".gz", "none": ""}
COMPRESSOR = {"zstd": "zstd -1 -q -c", "gzip": "gzip -1 -c"}
# Names that are compressed already: stored byte for byte under their own name.
COMPRESSED_SUFFIXES = (".gz", ".tgz", ".z", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".lzma", ".lz", ".lz4",
                       ".zst", ".tzst", ".zstd", ".sz", ".br", ".zip", ".7z", ".rar")
_HEX64 = re.compile(rb"^[0-9a-f]{64}$")
_UINT = re.compile(rb"^[0-9]{1,19}$")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# --------------------------------------------------------------------------------------------
# Names


def pct(name: bytes) -> str:
    """Percent-encode bytes outside [A-Za-z0-9._/-] (the probe's format): JSON-safe, reversible."""
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
    """(relative path with no '.', '..' or empty components, None) or (None, why it is rejected)."""
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


def _node_word(path: bytes) -> bytes:
    return sh_quote(b"./" + path)


# --------------------------------------------------------------------------------------------
# The listing


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


# --------------------------------------------------------------------------------------------
# Streaming exec


@asynccontextmanager
async def _in_use(transport: Transport, node: Node):
    """The node's pooled connection, marked in use while we stream (a transport that keeps fewer
    connections than nodes under a low open-file limit must not close it to make room)."""
    using = getattr(transport, "using", None) or getattr(transport, "_using", None)
    if using is None:
        yield await transport.connection(node)
        return
    async with using(node) as conn:
        yield conn


async def stream_exec(transport: Transport, node: Node, command: str, sink: Callable[[bytes], Awaitable[None]], *,
                      idle: Callable[[], float], input: bytes | None = None,
                      stderr_cap: int = 16384) -> tuple[int | None, bytes]:
    """Run `command` on a node on its pooled connection, handing stdout to `sink` chunk by chunk.

    No byte for `idle()` seconds -> NodeError(TIMEOUT) and the channel is closed (the node's
    command gets SIGPIPE/HUP; bound it on the node too). Returns (exit status, stderr head).
    Connection trouble becomes NodeError; exceptions from `sink` propagate (channel closed).
    """
    async with transport.fanout, _in_use(transport, node) as conn:
        try:
            # an 8 MiB window: a 2 MiB one caps a stream at 10 MB/s over a 200 ms round trip
            async with conn.create_process(command, encoding=None, stderr=asyncssh.PIPE, window=STREAM_WINDOW) as proc:
                err = bytearray()

                async def pump_err():
                    while True:
                        chunk = await proc.stderr.read(65536)
                        if not chunk:
                            return
                        if len(err) < stderr_cap:
                            err.extend(chunk[:stderr_cap - len(err)])

                async def feed():
                    try:
                        if input:
                            proc.stdin.write(input)
                        proc.stdin.write_eof()
                    except (BrokenPipeError, ConnectionResetError, OSError):
                        pass

                err_task = asyncio.ensure_future(pump_err())
                feed_task = asyncio.ensure_future(feed())
                try:
                    while True:
                        try:
                            chunk = await asyncio.wait_for(proc.stdout.read(1 << 20), idle())
                        except (asyncio.TimeoutError, TimeoutError):
                            raise NodeError(SSHState.TIMEOUT, f"no data from the node for {idle():.0f}s") from None
                        if not chunk:
                            break
                        await sink(chunk)
                    try:
                        await asyncio.wait_for(asyncio.shield(err_task), idle())
                        await asyncio.wait_for(proc.wait_closed(), idle())
                    except (asyncio.TimeoutError, TimeoutError):
                        raise NodeError(SSHState.TIMEOUT, "the node did not finish the command") from None
                finally:
                    for task in (err_task, feed_task):
                        if not task.done():
                            task.cancel()
                    await asyncio.gather(err_task, feed_task, return_exceptions=True)
                return proc.exit_status, bytes(err)
        except NodeError:
            raise
        except asyncssh.ChannelOpenError as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"cannot open a session channel: {exc.reason}") from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError, ConnectionError) as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"connection lost: {exc}") from None
        except asyncssh.Error as exc:
            transport.drop(node.name)
            raise NodeError(SSHState.ERROR, f"SSH error: {exc}") from None


# --------------------------------------------------------------------------------------------
# Verifiers: learn the original's length and sha256 from the stored (compressed) bytes


class VerifyError(Exception):
    pass


class PlainVerifier:
    def __init__(self):
        self.hash = hashlib.sha256()
        self.raw = 0

    def feed(self, data: bytes) -> None:
        self.hash.update(data)
        self.raw += len(data)

    def finish(self) -> tuple[int, str]:
        return self.raw, self.hash.hexdigest()

    def close(self) -> None:
        pass


class GzipVerifier(PlainVerifier):
    """Concatenated gzip members, decompressed with zlib; a truncated last member is an error."""

    def __init__(self):
        super().__init__()
        self.d = zlib.decompressobj(31)
        self.pending = False  # bytes of an unfinished member were fed
        self.fed = 0
        self.ends: list[int] = []  # stored offsets where a member ended

    def feed(self, data: bytes) -> None:
        buf = data
        self.fed += len(data)
        try:
            while buf:
                self.pending = True
                out = self.d.decompress(buf, 4 << 20)
                if out:
                    super().feed(out)
                if self.d.eof:
                    buf = self.d.unused_data
                    self.ends.append(self.fed - len(buf))
                    self.d = zlib.decompressobj(31)
                    self.pending = False
                else:
                    buf = self.d.unconsumed_tail
        except zlib.error as exc:
            raise VerifyError(f"stored data is not valid gzip: {exc}") from None

    def finish(self) -> tuple[int, str]:
        if self.pending:
            raise VerifyError("stored gzip data ends in the middle of a member")
        return super().finish()


class ZstdVerifier(PlainVerifier):
    """Concatenated zstd frames, decompressed by a local `zstd -dc` child."""

    def __init__(self, zstd: str):
        super().__init__()
        self.proc = subprocess.Popen([zstd, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.error: BaseException | None = None
        self.reader = threading.Thread(target=self._read, name="pltui-zstd-verify", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.proc.stdout.read(1 << 20)
                if not data:
                    return
                PlainVerifier.feed(self, data)
        except BaseException as exc:  # pragma: no cover - pipe trouble
            self.error = exc

    def feed(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            raise VerifyError(f"stored data is not valid zstd (decoder stopped: {exc})") from None

    def finish(self) -> tuple[int, str]:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.reader.join()
        rc = self.proc.wait()
        if rc != 0 or self.error is not None:
            raise VerifyError(f"stored data is not valid zstd (zstd -d exit {rc})")
        return self.raw, self.hash.hexdigest()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def make_verifier(codec: str, zstd: str | None):
    if codec == "gzip":
        return GzipVerifier()
    if codec == "zstd":
        if zstd is None:
            raise VerifyError("no local zstd to verify a .zst copy")
        return ZstdVerifier(zstd)
    return PlainVerifier()


class FrameScanner:
    """Where each zstd frame ends in a stream of concatenated frames: reads the frame header and
    the 3-byte block headers only (RFC 8878), never decompresses. `feed` returns the stored
    offsets (from `base`) of the frames it saw end. Malformed input raises VerifyError."""

    MAGIC = b"\x28\xb5\x2f\xfd"

    def __init__(self, base: int = 0):
        self.pos = base          # stored offset of the next byte
        self.state = "magic"
        self.need = 4            # header bytes wanted for this state
        self.buf = bytearray()
        self.skip = 0            # content bytes to pass over
        self.checksum = False
        self.last = False

    def feed(self, data: bytes) -> list[int]:
        ends: list[int] = []
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self.skip:
                n = min(self.skip, len(view) - i)
                self.skip -= n
                i += n
                self.pos += n
                if not self.skip:
                    self._after_skip(ends)
                continue
            n = min(self.need - len(self.buf), len(view) - i)
            self.buf += view[i:i + n]
            i += n
            self.pos += n
            if len(self.buf) == self.need:
                header, self.buf = bytes(self.buf), bytearray()
                self._header(header, ends)
        return ends

    def _after_skip(self, ends: list[int]) -> None:
        if self.state == "content":
            if self.last:
                if self.checksum:
                    self.state, self.skip = "checksum", 4
                else:
                    self._frame_end(ends)
            else:
                self.state, self.need = "block", 3
        elif self.state in ("checksum", "rest"):
            if self.state == "checksum":
                self._frame_end(ends)
            else:
                self.state, self.need = "block", 3

    def _frame_end(self, ends: list[int]) -> None:
        ends.append(self.pos)
        self.state, self.need = "magic", 4

    def _header(self, header: bytes, ends: list[int]) -> None:
        if self.state == "magic":
            if header != self.MAGIC:
                raise VerifyError("stored data is not a zstd frame")
            self.state, self.need = "descriptor", 1
        elif self.state == "descriptor":
            fhd = header[0]
            if fhd & 0x08:
                raise VerifyError("zstd frame header uses a reserved bit")
            fcs_flag, single = fhd >> 6, bool(fhd & 0x20)
            self.checksum = bool(fhd & 0x04)
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 0x03]
            rest += (1 if single else 0, 2, 4, 8)[fcs_flag]
            self.state = "rest"
            if rest:
                self.skip = rest
            else:
                self.state, self.need = "block", 3
        elif self.state == "block":
            value = int.from_bytes(header, "little")
            self.last = bool(value & 1)
            kind = (value >> 1) & 3
            size = value >> 3
            if kind == 3:
                raise VerifyError("zstd block of a reserved type")
            self.state = "content"
            self.skip = 1 if kind == 1 else size
            if not self.skip:
                self._after_skip(ends)


# --------------------------------------------------------------------------------------------
# Local files


class LocalError(Exception):
    """A local file-system problem for one file (or, as DiskFull, for the whole collection)."""


class DiskFull(LocalError):
    pass


def local_error(exc: OSError, path: Path | str) -> LocalError:
    what = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        return DiskFull(f"local disk full: cannot write {path} ({what})")
    return LocalError(f"cannot write {path}: {what}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dirs(base: Path, parts: list[str], *, durable: bool = True) -> Path:
    """Create base/parts... as plain directories (fsyncing each new one's parent); refuse symlinks."""
    d = base
    for part in parts:
        parent, d = d, d / part
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            os.mkdir(d, 0o755)
            if durable:
                fsync_dir(parent)
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise LocalError(f"{d} exists and is not a plain directory")
    return d


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 << 20)
            if not block:
                return h.hexdigest()
            h.update(block)


class Manifest:
    """DEST/<node>/.pltui-manifest.jsonl: one JSON record per line, appended and fsynced.

    {"kind": "collected", "path": PCT, "sha256", "size", "mtime", "codec", "stored": PCT (relative
    to DEST/<node>), "stored_size", "stored_sha256", "time"} and {"kind": "pruned", "path",
    "sha256", "size", "mtime", "time"}. A torn last line (crash while appending) is ignored.
    """

    def __init__(self, node_dir: Path):
        self.node_dir = node_dir
        self.path = node_dir / MANIFEST
        self.collected: dict[tuple[bytes, str], list[dict]] = {}
        self.by_path: dict[bytes, list[dict]] = {}
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        if rec.get("kind") == "collected":
                            self._index(rec)
                    except (ValueError, TypeError, KeyError, AttributeError):
                        continue
        except FileNotFoundError:
            pass

    def _index(self, rec: dict) -> None:
        key = (unpct(rec["path"]), rec["sha256"])
        rec["_stored"] = os.fsdecode(unpct(rec["stored"]))
        self.collected.setdefault(key, []).append(rec)
        self.by_path.setdefault(key[0], []).append(rec)

    def known(self, rf: "RemoteFile") -> dict | None:
        """The newest record of this very version of the file (same size, mtime, ctime and
        inode: any write changes ctime) whose stored copy is still there."""
        for rec in reversed(self.by_path.get(rf.path, [])):
            if (rec.get("size"), rec.get("mtime"), rec.get("ctime"), rec.get("ino")) == rf.version \
                    and self.lookup(rf.path, rec["sha256"]) is rec:
                return rec
        return None

    def lookup(self, path: bytes, sha256: str) -> dict | None:
        """The newest record of (path, sha256) whose stored file is still there with its size."""
        for rec in reversed(self.collected.get((path, sha256), [])):
            try:
                st = os.lstat(self.node_dir / rec["_stored"])
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size == rec.get("stored_size"):
                return rec
        return None

    def append(self, rec: dict, *, durable: bool = True) -> None:
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                write_all(fd, line)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise local_error(exc, self.path) from None
        if rec.get("kind") == "collected":
            self._index(dict(rec))

    def sync(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# The action


@dataclass
class FileResult:
    path: bytes
    state: str                 # collected, present (collected earlier), failed, rejected, unreadable
    message: str = ""
    size: int = 0
    stored: str | None = None
    stored_size: int = 0
    prune: str | None = None   # with --prune: pruned, kept, gone
    prune_message: str = ""

    def to_json(self) -> dict:
        doc: dict[str, Any] = {"path": pct(self.path), "shown": display(self.path), "state": self.state}
        if self.message:
            doc["message"] = self.message
        doc["size"] = self.size
        if self.stored:
            doc["stored"] = pct(os.fsencode(self.stored))
            doc["stored_size"] = self.stored_size
        if self.prune:
            doc["prune"] = self.prune
            if self.prune_message:
                doc["prune_message"] = self.prune_message
        return doc


@dataclass
class _NodeRun:
    node: Node
    dir: Path
    manifest: Manifest | None = None
    files: list[FileResult] = field(default_factory=list)
    bytes_total: int = 0
    bytes_done: int = 0
    bytes_stored: int = 0
    last_progress: float = 0.0
    current: str = ""
    nice: bool = False


class _Sink:
    """Writes stream chunks to the partial file, its hash and the verifier, in a worker thread,
    one chunk at a time and in order (the next chunk waits for the previous one)."""

    def __init__(self, fd: int, verifier, stored_hash, path: Path, after: Callable[[bytes], None] | None = None):
        self.fd = fd
        self.verifier = verifier
        self.stored_hash = stored_hash
        self.path = path
        self.after = after
        self.pending: asyncio.Future | None = None
        self.written = 0
        self.buffer: list[bytes] = []
        self.buffered = 0

    def _work(self, chunk: bytes) -> None:
        try:
            write_all(self.fd, chunk)
        except OSError as exc:
            raise local_error(exc, self.path) from None
        self.written += len(chunk)
        self.stored_hash.update(chunk)
        self.verifier.feed(chunk)
        if self.after is not None:
            self.after(chunk)

    BATCH = 1 << 20  # hand the worker ~1 MiB at a time (SSH delivers far smaller pieces)

    async def __call__(self, chunk: bytes) -> None:
        self.buffer.append(chunk)
        self.buffered += len(chunk)
        if self.buffered >= self.BATCH:
            await self._dispatch()

    async def _dispatch(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending
        if self.buffered:
            data = b"".join(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
            self.buffer, self.buffered = [], 0
            self.pending = asyncio.get_running_loop().run_in_executor(None, self._work, data)

    async def drain(self) -> None:
        await self._dispatch()
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending


class _Marks:
    """Resume points: notes in the idx each time a segment's frame / member / bytes end in the
    stored stream (called in the sink's worker thread, after the bytes are written)."""

    def __init__(self, codec: str, verifier, segments: list[tuple[int, int]], base: int, idx: Path):
        self.codec = codec
        self.verifier = verifier
        self.segments = segments
        self.idx = idx
        self.done = 0
        self.stored = base
        self.scanner = FrameScanner(base) if codec == "zstd" else None
        if codec == "gzip":
            verifier.ends.clear()

    def after(self, chunk: bytes) -> None:
        self.stored += len(chunk)
        if self.scanner is not None:
            ends = self.scanner.feed(chunk)
        elif self.codec == "gzip":
            ends, self.verifier.ends[:] = list(self.verifier.ends), []
        else:
            ends = []
            while self.done + len(ends) < len(self.segments):
                offset, length = self.segments[self.done + len(ends)]
                end = offset + length  # raw: stored offset == raw offset
                if end > self.stored:
                    break
                ends.append(end)
        lines = []
        for end in ends:
            if self.done >= len(self.segments):
                raise VerifyError("the node sent more segments than asked for")
            offset, length = self.segments[self.done]
            self.done += 1
            lines.append(f"{offset + length} {end}\n")
        if lines:
            with open(self.idx, "ab") as f:
                f.write("".join(lines).encode())


class CollectLogs(Action):
    """Collect the fleet's logs into `dest` (see the module docstring)."""

    kind = "logs"

    def __init__(self, *args, dest: str | os.PathLike, prune: bool = False, parallel: int = 16,
                 compress: str = "auto", segment: int = SEGMENT, retries: int = len(RETRY_DELAYS), nice: int = 10,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if compress not in COMPRESSIONS:
            raise ActionError(f"unknown compression {compress!r} (one of {', '.join(COMPRESSIONS)})")
        if segment < BLOCK or segment % BLOCK:
            raise ActionError(f"segment size must be a multiple of {BLOCK} bytes")
        self.dest = Path(dest).expanduser()
        self.prune = prune
        self.mutating = prune  # node locks only when we delete on nodes
        # fsync copies, directories and manifest records as they are made only when pruning:
        # without --prune the node keeps the original (a process kill loses no page cache, and
        # a copy damaged by a power cut is caught by the stored sha256 before any later prune)
        self.durable = prune
        self.parallel = max(1, parallel)
        self.compress = compress
        if not 0 <= nice <= 19:
            raise ActionError("nice must be between 0 and 19")
        self.nice = nice  # the node's compressor runs at this niceness (0: as the login shell does)
        self.segment = segment
        self.retries = max(0, min(retries, len(RETRY_DELAYS)))
        self.zstd = shutil.which("zstd")
        self.stop_reason: str | None = None
        self.runs: dict[str, _NodeRun] = {}
        self._lock_fd: int | None = None

    def arguments(self) -> dict:
        return {"dest": str(self.dest), "prune": self.prune, "compress": self.compress, "parallel": self.parallel,
                "nice": self.nice}

    def plan(self) -> dict:
        return {"kind": self.kind, "nodes": self.nodes, "dest": str(self.dest), "prune": self.prune,
                "compress": self.compress, "logs": list(self.fleet.service.logs)}

    # -- the run ----------------------------------------------------------------------------

    def _lock_dest(self) -> None:
        try:
            self.dest.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dest / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ActionError(f"cannot use {self.dest}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise ActionError(f"another log collection is writing to {self.dest} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock_dest(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def execute(self) -> ActionReport:
        if not self.fleet.service.logs:
            raise ActionError("the fleet has no [service].logs globs: nothing to collect")
        if self.compress == "zstd" and self.zstd is None:
            raise ActionError("--compress zstd needs zstd on this machine to verify the copies")
        self._lock_dest()
        started = time.monotonic()
        try:
            await self.for_each(self.nodes, self._node, self.parallel)
        finally:
            self._unlock_dest()
        for result in self.results.values():
            if result.state == "untouched":
                result.message = f"not started: {self.stop_reason or 'the collection was aborted'}"
        elapsed = time.monotonic() - started
        collected = [f for r in self.runs.values() for f in r.files if f.state == "collected"]
        raw = sum(f.size for f in collected)
        stored = sum(f.stored_size for f in collected)
        states: dict[str, int] = {}
        for r in self.runs.values():
            for f in r.files:
                states[f.state] = states.get(f.state, 0) + 1
                if f.prune:
                    states[f.prune] = states.get(f.prune, 0) + 1
        summary = {
            "dest": str(self.dest),
            "files": states,
            "bytes_collected": raw,
            "bytes_stored": stored,
            "elapsed": round(elapsed, 3),
            "mb_per_s": round(raw / elapsed / 1e6, 1) if elapsed > 0 else None,
        }
        return self.report(stopped_because=self.stop_reason, summary=summary)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.control.abort()

    def _emit(self, run: _NodeRun, state: str, detail: str = "", *, force: bool = False, extra: int = 0) -> None:
        now = time.monotonic()
        if not force and now - run.last_progress < PROGRESS_EVERY:
            return
        run.last_progress = now
        self.progress(run.node.name, state, detail, bytes_done=run.bytes_done + extra, bytes_total=run.bytes_total)

    async def _node(self, name: str) -> None:
        try:
            await self._node_inner(name)
        except (LocalError, VerifyError, ListError, OSError, ValueError) as exc:
            # never let one node's unexpected trouble end the others' collection
            self.result(name, "failed", f"{type(exc).__name__}: {clean_line(str(exc), 200)}")

    async def _node_inner(self, name: str) -> None:
        node = self.fleet.nodes[name]
        node_dir = self.dest / name
        if not NAME_RE.match(name):
            self.result(name, "failed", f"node name {name!r} is not a safe directory name")
            return
        run = _NodeRun(node, node_dir)
        self.runs[name] = run
        run.manifest = await asyncio.to_thread(Manifest, node_dir)  # reads only: nothing made yet
        self.progress(name, "listing", "listing and hashing log files on the node")
        try:
            listing = await self._listing(run)
        except NodeError as exc:
            self.result(name, "unreachable" if exc.state in (SSHState.REFUSED, SSHState.UNREACHABLE) else "failed",
                        exc.message)
            return
        except ListError as exc:
            self.result(name, "failed", f"listing: {exc}")
            return
        try:
            await asyncio.to_thread(self._prepare_dir, run)
        except (LocalError, OSError) as exc:
            err = exc if isinstance(exc, LocalError) else local_error(exc, node_dir)
            if isinstance(err, DiskFull):
                self._stop(str(err))
            self.result(name, "failed", str(err))
            return
        for raw_name, why in listing.rejected:
            run.files.append(FileResult(raw_name, "rejected", why))
        for raw_name, why in listing.skipped:
            if why != "vanished":
                run.files.append(FileResult(raw_name, "unreadable", why))
        todo: list[tuple[RemoteFile, str]] = []
        for rf in listing.files:
            rec = run.manifest.lookup(rf.path, rf.sha256)
            if rec is not None and self.prune and not await asyncio.to_thread(self._copy_intact, run, rec):
                rec = None  # a damaged local copy: collect again (under a new name) before pruning
            if rec is not None:
                if (rec.get("size"), rec.get("mtime"), rec.get("ctime"), rec.get("ino")) != rf.version:
                    # same bytes under a new stamp (touched, renamed...): remember this version too,
                    # so the next run need not hash it again
                    alias = {k: v for k, v in rec.items() if not k.startswith("_")}
                    alias.update(size=rf.size, mtime=rf.mtime, ctime=rf.ctime, ino=rf.ino, time=round(time.time(), 3))
                    await asyncio.to_thread(run.manifest.append, alias, durable=self.durable)
                run.files.append(FileResult(rf.path, "present", "", rf.size, rec["_stored"], rec.get("stored_size", 0)))
                continue
            codec = self._codec(rf, listing)
            todo.append((rf, codec))
        run.nice = listing.nice
        run.bytes_total = sum(rf.size for rf, _ in todo)
        broken: NodeError | None = None
        for rf, codec in todo:
            if self.control.aborted or broken is not None:
                why = f"connection lost ({broken.message})" if broken is not None else "the collection stopped"
                run.files.append(FileResult(rf.path, "failed", f"not attempted: {why}", rf.size))
                continue
            run.current = rf.shown
            self._emit(run, "collecting", rf.shown, force=True)
            try:
                result = await self._collect_file(run, rf, codec)
            except NodeError as exc:
                broken = exc
                result = FileResult(rf.path, "failed", exc.message, rf.size)
            except DiskFull as exc:
                self._stop(f"{exc}; free some space and run again to resume (partial copies are kept)")
                result = FileResult(rf.path, "failed", str(exc), rf.size)
            except (LocalError, VerifyError) as exc:
                result = FileResult(rf.path, "failed", str(exc), rf.size)
            run.files.append(result)
            run.bytes_done += rf.size
            if result.state == "collected":
                run.bytes_stored += result.stored_size
        if not self.control.aborted:
            await asyncio.to_thread(self._clean_partials, run, listing)
        if self.prune and not self.control.aborted and broken is None:
            try:
                await self._retrying(node, lambda: self._prune(run, listing))
            except NodeError as exc:
                broken = exc
            except DiskFull as exc:
                self._stop(str(exc))
        self._finish_node(run, broken)

    def _finish_node(self, run: _NodeRun, broken: NodeError | None) -> None:
        counts: dict[str, int] = {}
        for f in run.files:
            counts[f.state] = counts.get(f.state, 0) + 1
            if f.prune:
                counts[f.prune] = counts.get(f.prune, 0) + 1
        bad = [f for f in run.files if f.state in ("failed", "rejected", "unreadable")]
        labels = (("collected", "collected"), ("present", "already collected"), ("pruned", "pruned on the node"),
                  ("kept", "kept on the node"), ("failed", "failed"), ("rejected", "rejected"),
                  ("unreadable", "unreadable"))
        message = ", ".join(f"{counts[s]} {label}" for s, label in labels if counts.get(s)) or "no log files"
        collected = sum(f.size for f in run.files if f.state == "collected")
        if collected:
            message += f" ({collected} bytes this run)"
        if broken is not None:
            message += f"; {broken.message}"
        elif bad:
            message += f"; {display(bad[0].path)}: {bad[0].message}"
        else:
            kept = next((f for f in run.files if f.prune == "kept"), None)
            if kept is not None:
                message += f"; {display(kept.path)}: {kept.prune_message}"
        self.result(run.node.name, "failed" if bad or broken is not None else "done", message,
                    files=[f.to_json() for f in run.files], counts=counts, bytes_collected=collected,
                    bytes_stored=run.bytes_stored, dir=str(run.dir))

    async def _retrying(self, node: Node, make: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            try:
                return await make()
            except NodeError as exc:
                # a node that cannot be reached at all is reported at once; a connection lost
                # mid-way (or a stalled stream) is retried
                if attempt >= self.retries or self.control.aborted or exc.state not in (SSHState.ERROR, SSHState.TIMEOUT):
                    raise
                self.transport.drop(node.name)
                self.progress(node.name, "retrying", f"{exc.message}; retrying in {RETRY_DELAYS[attempt]:g}s")
                await asyncio.sleep(RETRY_DELAYS[attempt])
                attempt += 1

    def _codec(self, rf: RemoteFile, listing: Listing) -> str:
        if rf.path.lower().endswith(tuple(s.encode() for s in COMPRESSED_SUFFIXES)):
            return "none"
        wanted = self.compress
        if wanted == "none":
            return "none"
        if wanted in ("auto", "zstd") and "zstd" in listing.codecs and self.zstd:
            return "zstd"
        if wanted in ("auto", "gzip", "zstd") and "gzip" in listing.codecs:
            return "gzip"
        return "none"

    # -- list -------------------------------------------------------------------------------

    async def _listing(self, run: _NodeRun) -> Listing:
        """The node's log files, each with its sha256. With a manifest (a re-run), the node first
        only stats them, and hashes just the versions (size, mtime, ctime, inode) not collected
        yet: a node is not made to re-read hundreds of MB of logs it was already relieved of."""
        node = run.node
        if not run.manifest.collected:
            return await self._retrying(node, lambda: self._list(node, "list"))
        listing = await self._retrying(node, lambda: self._list(node, "stat"))
        unknown = []
        for rf in listing.files:
            rec = run.manifest.known(rf)
            if rec is not None:
                rf.sha256 = rec["sha256"]
            else:
                unknown.append(rf)
        if unknown:
            hashed = await self._retrying(node, lambda: self._list(node, "hash", [rf.path for rf in unknown]))
            fresh = {rf.path: rf for rf in hashed.files}
            listing.files = [fresh.get(rf.path, rf) if rf.sha256 is None else rf for rf in listing.files]
            listing.files = [rf for rf in listing.files if rf.sha256 is not None]  # vanished meanwhile
            listing.skipped += [s for s in hashed.skipped if s[1] != "vanished"]
        return listing

    async def _list(self, node: Node, mode: str, paths: list[bytes] = ()) -> Listing:
        parser = ListParser()
        timeout = self.transport.command_timeout

        async def sink(chunk: bytes) -> None:
            parser.feed(chunk)

        def idle() -> float:
            return timeout + parser.listing.hashing / HASH_RATE

        script = node_script(node, mode, logs=self.fleet.service.logs, words=list(paths))
        status, err = await stream_exec(self.transport, node, bounded("/bin/sh -s", NODE_BOUND), sink,
                                        idle=idle, input=script)
        try:
            return parser.finish()
        except ListError as exc:
            detail = clean_line(err, 160)
            raise ListError(f"{exc}" + (f" ({detail})" if detail else f" (exit {status})" if status else "")) from None

    # -- local preparation ------------------------------------------------------------------

    def _prepare_dir(self, run: _NodeRun) -> None:
        try:
            run.dir.mkdir(parents=True, exist_ok=True)
            ensure_dirs(run.dir, [PARTIAL_DIR])
        except OSError as exc:
            raise local_error(exc, run.dir) from None

    def _partial_paths(self, run: _NodeRun, path: bytes) -> tuple[Path, Path]:
        h = hashlib.sha256(path).hexdigest()[:32]
        base = run.dir / PARTIAL_DIR
        return base / f"{h}.part", base / f"{h}.idx"

    def _open_partial(self, part: Path, idx: Path, identity: dict) -> tuple[int, int, str | None]:
        """Resume state: (raw offset, stored offset, final name linked already or None)."""
        raw_done = comp_done = 0
        final = None
        try:
            with open(idx, "rb") as f:
                lines = f.read().splitlines()
            head = json.loads(lines[0]) if lines else None
            size = os.path.getsize(part)
            if head != identity:
                raise ValueError("another file's partial")
            for line in lines[1:]:
                if line.startswith(b"{"):
                    final = json.loads(line).get("final")
                    continue
                raw_s, comp_s = line.split()
                raw, comp = int(raw_s), int(comp_s)
                if comp <= size:
                    raw_done, comp_done = raw, comp
        except (OSError, ValueError, IndexError):
            raw_done = comp_done = 0
            final = None
            for p in (part, idx):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            with open(idx, "wb") as f:
                f.write((json.dumps(identity, sort_keys=True) + "\n").encode())
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, comp_done)
        finally:
            os.close(fd)
        return raw_done, comp_done, final

    def _clean_partials(self, run: _NodeRun, listing: Listing) -> None:
        """Drop partials of files no longer listed as they were; adopt a linked-but-unrecorded one."""
        wanted = {self._partial_paths(run, rf.path)[1].name: rf for rf in listing.files}
        base = run.dir / PARTIAL_DIR
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            if not name.endswith(".idx") or name in wanted:
                continue
            idx = base / name
            part = idx.with_suffix(".part")
            try:
                lines = idx.read_bytes().splitlines()
                head = json.loads(lines[0])
                finals = [json.loads(l)["final"] for l in lines[1:] if l.startswith(b"{")]
                if finals and part.exists() and os.path.samefile(part, run.dir / finals[-1]):
                    self._record(run, head, finals[-1], part)
            except (OSError, ValueError, IndexError, KeyError, TypeError, LocalError):
                pass
            for p in (part, idx):
                try:
                    os.unlink(p)
                except OSError:
                    pass
        for name in names:  # orphan .part files
            if name.endswith(".part") and name[:-5] + ".idx" not in names:
                try:
                    os.unlink(base / name)
                except OSError:
                    pass
        try:
            base.rmdir()  # only when empty
        except OSError:
            pass

    def _record(self, run: _NodeRun, identity: dict, final: str, part: Path) -> dict:
        rec = {
            "kind": "collected", "path": identity["path"], "sha256": identity["sha256"], "size": identity["size"],
            "mtime": identity.get("mtime"), "ctime": identity.get("ctime"), "ino": identity.get("ino"),
            "codec": identity["codec"], "stored": pct(os.fsencode(final)),
            "stored_size": os.path.getsize(part), "stored_sha256": identity.get("stored_sha256") or file_sha256(part),
            "time": round(time.time(), 3),
        }
        run.manifest.append(rec, durable=self.durable)
        return rec

    # -- transfer ---------------------------------------------------------------------------

    async def _collect_file(self, run: _NodeRun, rf: RemoteFile, codec: str) -> FileResult:
        attempt = 0
        while True:
            try:
                return await self._transfer(run, rf, codec)
            except NodeError as exc:
                if attempt >= self.retries or self.control.aborted or exc.state in (SSHState.HOSTKEY, SSHState.AUTH):
                    raise
                self.transport.drop(run.node.name)
                self.progress(run.node.name, "retrying", f"{rf.shown}: {exc.message}; resuming in {RETRY_DELAYS[attempt]:g}s")
                await asyncio.sleep(RETRY_DELAYS[attempt])
                attempt += 1

    def _segments(self, size: int, start: int) -> list[tuple[int, int]]:
        if size == 0:
            return [(0, 0)] if start == 0 else []
        out = []
        offset = start
        while offset < size:
            length = min(self.segment, size - offset)
            out.append((offset, length))
            offset += length
        return out

    def _send_script(self, node: Node, rf: RemoteFile, segments: list[tuple[int, int]], codec: str,
                     nice: bool) -> bytes:
        """One exec for the rest of the file: each segment read with dd (the last bounded by
        head -c to the listed size) and compressed on its own, so that each is one zstd frame /
        gzip member and its end a resume point."""
        word = _node_word(rf.path)
        lines = [b"cd " + shell_path(node.root).encode() + b" || exit 3", b"[ -f " + word + b" ] || exit 4"]
        for offset, length in segments:
            count = -(-length // BLOCK)
            src = b"dd if=" + word + b" bs=%d skip=%d count=%d 2>/dev/null" % (BLOCK, offset // BLOCK, count)
            if length % BLOCK:
                src += b" | head -c %d" % length
            if codec != "none":
                src += b" | " + (b"nice -n %d " % self.nice if nice and self.nice else b"") + COMPRESSOR[codec].encode()
            lines.append(src + b" || exit 5")
        return b"\n".join(lines) + b"\n"

    async def _transfer(self, run: _NodeRun, rf: RemoteFile, codec: str) -> FileResult:
        node = run.node
        part, idx = self._partial_paths(run, rf.path)
        identity = {"path": pct(rf.path), "size": rf.size, "mtime": rf.mtime, "ctime": rf.ctime, "ino": rf.ino,
                    "sha256": rf.sha256, "codec": codec}
        try:
            raw_done, comp_done, final = await asyncio.to_thread(self._open_partial, part, idx, identity)
        except OSError as exc:
            raise local_error(exc, part) from None
        if final is not None:
            try:
                if os.path.samefile(part, run.dir / final):
                    rec = await asyncio.to_thread(self._record, run, identity, final, part)
                    await asyncio.to_thread(self._drop_partial, part, idx)
                    return FileResult(rf.path, "collected", "", rf.size, final, rec["stored_size"])
            except OSError:
                pass
        verifier = make_verifier(codec, self.zstd)
        stored_hash = hashlib.sha256()
        fd = os.open(part, os.O_RDWR)
        try:
            if comp_done:
                await asyncio.to_thread(self._replay, fd, comp_done, verifier, stored_hash)
            os.lseek(fd, comp_done, os.SEEK_SET)
            segments = self._segments(rf.size, raw_done)
            if segments:
                if self.control.aborted:
                    raise LocalError(f"not finished: {self.stop_reason or 'collection aborted'} (partial kept)")
                marks = _Marks(codec, verifier, segments, comp_done, idx)
                sink = _Sink(fd, verifier, stored_hash, part, marks.after)
                script = self._send_script(node, rf, segments, codec, run.nice)
                limit = self.transport.command_timeout + sum(n for _, n in segments) / SEND_RATE
                try:
                    status, err = await stream_exec(self.transport, node, bounded("/bin/sh -s", limit),
                                                    self._progress_sink(run, sink, verifier),
                                                    idle=lambda: self.transport.command_timeout, input=script)
                except BaseException:
                    try:
                        await sink.drain()
                    except Exception:
                        pass
                    raise
                await sink.drain()
                await asyncio.to_thread(marks.after, b"")  # an empty last segment (a 0-byte file) ends here
                if status == 4:
                    raise LocalError("the file vanished from the node before it was copied")
                if status != 0:
                    detail = clean_line(err, 160)
                    raise LocalError(f"the node could not send the file (exit {status}{': ' + detail if detail else ''})")
                if marks.done != len(segments):
                    raise VerifyError(f"the node sent {marks.done} of {len(segments)} segments")
            if self.durable:
                await asyncio.to_thread(os.fsync, fd)
            count, digest = await asyncio.to_thread(verifier.finish)
        except OSError as exc:
            error = local_error(exc, part)
            if isinstance(error, DiskFull):
                await asyncio.to_thread(self._trim, fd, idx)
            raise error from None
        except DiskFull:
            await asyncio.to_thread(self._trim, fd, idx)
            raise
        except VerifyError:
            await asyncio.to_thread(self._drop_partial, part, idx)
            raise
        finally:
            os.close(fd)
            verifier.close()
        if count != rf.size or digest != rf.sha256:
            await asyncio.to_thread(self._drop_partial, part, idx)
            raise VerifyError(f"verification failed: got {count} bytes with sha256 {digest[:12]}..., the node listed "
                              f"{rf.size} bytes with {rf.sha256[:12]}... (changed during the transfer?)")
        identity["stored_sha256"] = stored_hash.hexdigest()
        final, rec = await asyncio.to_thread(self._finalize, run, rf, codec, part, idx, identity)
        return FileResult(rf.path, "collected", "", rf.size, final, rec["stored_size"])

    def _progress_sink(self, run: _NodeRun, sink: _Sink, verifier) -> Callable[[bytes], Awaitable[None]]:
        async def feed(chunk: bytes) -> None:
            await sink(chunk)
            self._emit(run, "collecting", run.current, extra=verifier.raw)
        return feed

    def _replay(self, fd: int, length: int, verifier, stored_hash) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        left = length
        while left:
            block = os.read(fd, min(left, 4 << 20))
            if not block:
                raise VerifyError("partial file shorter than recorded")
            stored_hash.update(block)
            verifier.feed(block)
            left -= len(block)

    @staticmethod
    def _append_idx(idx: Path, line: str) -> None:
        with open(idx, "ab") as f:
            f.write(line.encode())

    @staticmethod
    def _trim(fd: int, idx: Path) -> None:
        """After a full disk: cut the partial back to its last finished segment (frees space)."""
        try:
            comp = 0
            for line in idx.read_bytes().splitlines()[1:]:
                if not line.startswith(b"{"):
                    comp = int(line.split()[1])
            os.ftruncate(fd, comp)
        except (OSError, ValueError, IndexError):
            pass

    @staticmethod
    def _drop_partial(part: Path, idx: Path) -> None:
        for p in (part, idx):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def _finalize(self, run: _NodeRun, rf: RemoteFile, codec: str, part: Path, idx: Path,
                  identity: dict) -> tuple[str, dict]:
        """Link the verified partial to a free final name (never replacing anything), record it."""
        rel = os.fsdecode(rf.path)
        parent_parts = rel.split("/")[:-1]
        ext = CODEC_EXT[codec]
        try:
            ensure_dirs(run.dir, parent_parts, durable=self.durable)
            for n in range(0, 10000):
                name = f"{rel}{ext}" if n == 0 else f"{rel}.~{n}~{ext}"
                target = run.dir / name
                if os.path.lexists(target):
                    continue
                self._append_idx(idx, json.dumps({"final": name}) + "\n")
                try:
                    os.link(part, target)  # fails rather than replace an existing file
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                        raise
                    if os.path.lexists(target):  # no hard links here: check, then rename
                        continue
                    rec = self._record(run, identity, name, part)
                    os.rename(part, target)
                    if self.durable:
                        fsync_dir(target.parent)
                    self._drop_partial(part, idx)
                    return name, rec
                if self.durable:
                    fsync_dir(target.parent)
                rec = self._record(run, identity, name, part)
                self._drop_partial(part, idx)
                return name, rec
        except OSError as exc:
            raise local_error(exc, run.dir / rel) from None
        raise LocalError(f"no free name for {display(rf.path)} in {run.dir}")

    # -- prune ------------------------------------------------------------------------------

    @staticmethod
    def _copy_intact(run: _NodeRun, rec: dict) -> bool:
        """The stored copy still has the sha256 recorded when it was verified; made durable
        (file and directory fsynced) since it is about to be the only copy."""
        stored = run.dir / rec["_stored"]
        try:
            if file_sha256(stored) != rec.get("stored_sha256"):
                return False
            fd = os.open(stored, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            for directory in stored.parents:  # up to DEST/<node>: directories made by earlier runs
                fsync_dir(directory)
                if directory == run.dir:
                    break
            return True
        except OSError:
            return False

    async def _prune(self, run: _NodeRun, listing: Listing) -> None:
        candidates: list[RemoteFile] = []
        results = {f.path: f for f in run.files}
        for rf in listing.files:
            fr = results.get(rf.path)
            if fr is None or fr.state not in ("collected", "present"):
                continue
            if rf.moved:
                self._kept(run, rf, "still being written (changed while hashed); kept")
                continue
            rec = run.manifest.lookup(rf.path, rf.sha256)
            if rec is None:
                continue
            if not await asyncio.to_thread(self._copy_intact, run, rec):
                self._kept(run, rf, f"local copy {display(rec['_stored'])} no longer matches its record; kept")
                continue
            candidates.append(rf)
        if not candidates:
            return
        try:
            await asyncio.to_thread(run.manifest.sync)
        except OSError as exc:
            raise local_error(exc, run.manifest.path) from None
        words: list[bytes] = []
        for rf in candidates:
            words += [str(rf.size).encode(), str(rf.mtime).encode(), rf.sha256.encode(), rf.path]
        total = sum(rf.size for rf in candidates)
        self.progress(run.node.name, "pruning", f"checking and deleting {len(candidates)} collected files")
        out = bytearray()

        async def sink(chunk: bytes) -> None:
            if len(out) + len(chunk) > 1 << 20:
                raise NodeError(SSHState.GARBLED, "prune answer too long")
            out.extend(chunk)

        timeout = self.transport.command_timeout + total / HASH_RATE
        status, err = await stream_exec(self.transport, run.node, bounded("/bin/sh -s", NODE_BOUND), sink,
                                        idle=lambda: timeout, input=node_script(run.node, "prune", words=words))
        answers: dict[int, str] = {}
        ended = False
        for line in bytes(out).split(b"\n"):
            fields = line.split()
            if fields == [b"end"]:
                ended = True
            elif len(fields) == 2 and fields[1].isdigit() and fields[0] in (
                    b"pruned", b"changed", b"mismatch", b"open", b"gone", b"failed"):
                answers[int(fields[1])] = fields[0].decode()
        now = round(time.time(), 3)
        for i, rf in enumerate(candidates, 1):
            answer = answers.get(i)
            if answer == "pruned":
                run.manifest.append({"kind": "pruned", "path": pct(rf.path), "sha256": rf.sha256, "size": rf.size,
                                     "mtime": rf.mtime, "time": now})
                self._set_prune(run, rf, "pruned", "")
            elif answer == "changed":
                self._kept(run, rf, "still being written (size or mtime changed since listing); kept")
            elif answer == "mismatch":
                self._kept(run, rf, "content changed since listing; kept")
            elif answer == "open":
                self._kept(run, rf, "open by a process on the node; kept")
            elif answer == "failed":
                self._kept(run, rf, "could not delete it on the node; kept")
            elif answer == "gone":
                self._set_prune(run, rf, "gone", "already gone from the node")
            else:
                self._kept(run, rf, "prune not confirmed by the node; kept" +
                           ("" if ended else f" (exit {status}: {clean_line(err, 80)})"))

    def _set_prune(self, run: _NodeRun, rf: RemoteFile, outcome: str, message: str) -> None:
        for f in run.files:
            if f.path == rf.path:
                f.prune = outcome
                f.prune_message = message
                return

    def _kept(self, run: _NodeRun, rf: RemoteFile, message: str) -> None:
        self._set_prune(run, rf, "kept", message)
