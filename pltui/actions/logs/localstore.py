"""The local side: errors, fsync and directory helpers, the sink that writes received bytes, and
``DEST/<node>/.pltui-manifest.jsonl``, the record of every verified copy (what a re-run skips and
what a prune trusts).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import stat
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pltui.actions.logs.names import pct, unpct

if TYPE_CHECKING:
    from pltui.actions.logs.listing import RemoteFile

MANIFEST = ".pltui-manifest.jsonl"
LOCK_FILE = ".pltui-lock"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DISK_FULL_PREFIX = "local disk full"  # how a stop for a full DEST reads (the CLI exits 2 on it)


class LocalError(Exception):
    """A local file-system problem for one file (or, as DiskFull, for the whole collection)."""


class DiskFull(LocalError):
    pass


def local_error(exc: OSError, path: Path | str) -> LocalError:
    what = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        return DiskFull(f"{DISK_FULL_PREFIX}: cannot write {path} ({what})")
    return LocalError(f"cannot write {path}: {what}")


def _fsync_path(path: Path, flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    _fsync_path(path)


def fsync_dir(path: Path) -> None:
    _fsync_path(path, os.O_DIRECTORY)


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


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 << 20)
            if not block:
                return h.hexdigest()
            h.update(block)


class FileSink:
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

    @asynccontextmanager
    async def draining(self):
        """Drain on the way out, however the stream ended; when it failed, its error is the one
        raised (a write error behind it would only hide why)."""
        try:
            yield self
        except BaseException:
            try:
                await self.drain()
            except Exception:
                pass
            raise
        await self.drain()


class Manifest:
    """DEST/<node>/.pltui-manifest.jsonl: one JSON record per line, appended and fsynced.

    {"kind": "collected", "path": PCT, "sha256", "size", "mtime", "codec", "stored": PCT (relative
    to DEST/<node>), "stored_size", "stored_sha256", "marks": [[RAW, STORED], ...] (the copy's
    resume points), "time"} and {"kind": "pruned", "path", "sha256", "size", "mtime", "time"}.
    A torn last line (crash while appending) is ignored. A log that grew replaces its stored copy
    (same name, a new record): the older record's copy then no longer matches it and is ignored.
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

    def known(self, rf: RemoteFile) -> dict | None:
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

    def base_for(self, rf: RemoteFile, codec: str, block: int) -> tuple[dict, int, int] | None:
        """(record, raw, stored): the stored copy of an earlier, shorter version of this very file
        (same inode, same codec, copy present) and its last resume point on a `block` boundary,
        from which a log that was appended to can be continued. The transfer checks the whole
        result against the node's sha256, so a file rewritten in place is never spliced."""
        for rec in reversed(self.by_path.get(rf.path, [])):
            if rec.get("codec") != codec or rec.get("ino") != rf.ino or not 0 < rec.get("size", 0) < rf.size:
                continue
            if self.lookup(rf.path, rec["sha256"]) is not rec:
                continue
            marks = [(raw, stored) for raw, stored in rec.get("marks") or ()
                     if 0 < raw <= rec["size"] and raw % block == 0 and 0 < stored <= rec["stored_size"]]
            if marks:
                raw, stored = max(marks)
                return rec, raw, stored
        return None

    def copy_intact(self, rec: dict) -> bool:
        """The stored copy still has the sha256 recorded when it was verified; made durable
        (file and directory fsynced) since it is about to be the only copy."""
        stored = self.node_dir / rec["_stored"]
        try:
            if file_sha256(stored) != rec.get("stored_sha256"):
                return False
            fsync_file(stored)
            for directory in stored.parents:  # up to DEST/<node>: directories made by earlier runs
                fsync_dir(directory)
                if directory == self.node_dir:
                    break
            return True
        except OSError:
            return False

    def record_copy(self, identity: dict, final: str, part: Path, *, durable: bool) -> dict:
        """Append the "collected" record of a verified copy, linked as `final`, stored in `part`."""
        rec = {
            "kind": "collected", "path": identity["path"], "sha256": identity["sha256"], "size": identity["size"],
            "mtime": identity.get("mtime"), "ctime": identity.get("ctime"), "ino": identity.get("ino"),
            "codec": identity["codec"], "stored": pct(os.fsencode(final)),
            "stored_size": os.path.getsize(part), "stored_sha256": identity.get("stored_sha256") or file_sha256(part),
            "time": round(time.time(), 3),
        }
        if identity.get("marks"):
            rec["marks"] = identity["marks"]  # resume points: where a grown log is continued from
        self.append(rec, durable=durable)
        return rec

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
            fsync_file(self.path)
        except FileNotFoundError:
            return
