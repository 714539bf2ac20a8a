"""The `CollectLogs` action: per node, list, transfer what the manifest lacks, verify, store and
(with prune) delete; nodes in parallel, one file at a time per node. The steps' own rules live
in the modules this one drives; this one keeps the order, the retries and the report.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from pltui.actions.base import Action, ActionError, ActionReport
from pltui.actions.logs.codecs import COMPRESSIONS, VerifyError, make_verifier, pick_codec
from pltui.actions.logs.listing import ListError, Listing, RemoteFile, list_node
from pltui.actions.logs.localstore import LOCK_FILE, DiskFull, FileSink, LocalError, Manifest, ensure_dirs, local_error
from pltui.actions.logs.names import PARTIAL_DIR, display, pct
from pltui.actions.logs.partials import (clean_partials, drop_partial, finalize, open_partial, partial_paths, replace_copy,
                                         replay, seed_partial, trim_partial)
from pltui.actions.logs.prune import prune_node
from pltui.actions.logs.results import FileResult, NodeRun, tally
from pltui.actions.logs.segments import BLOCK, SEGMENT, SEND_RATE, ResumeMarks, read_marks, segment_plan, send_script
from pltui.actions.logs.stream import stream_exec
from pltui.fleet import NAME_RE, Node
from pltui.model import SSHState
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, bounded

RETRY_DELAYS = (1.0, 3.0)
NO_RETRY = (SSHState.HOSTKEY, SSHState.AUTH, SSHState.UNREACHABLE)
PROGRESS_EVERY = 0.25         # seconds between progress events per node


class SpliceFailed(VerifyError):
    """A grown log continued from its earlier copy did not verify: it was not only appended to."""


class CollectLogs(Action):
    """Collect the fleet's logs into `dest` (see the package docstring)."""

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
        self.runs: dict[str, NodeRun] = {}
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
        states = tally(f for r in self.runs.values() for f in r.files)
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

    def _emit(self, run: NodeRun, state: str, detail: str = "", *, force: bool = False, extra: int = 0) -> None:
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
        run = NodeRun(node, node_dir)
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
            if rec is not None and self.prune and not await asyncio.to_thread(run.manifest.copy_intact, rec):
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
            codec = pick_codec(rf.path, self.compress, listing.codecs, self.zstd)
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
            await asyncio.to_thread(clean_partials, run.manifest, [rf.path for rf in listing.files], durable=self.durable)
        if self.prune and not self.control.aborted and broken is None:
            try:
                await self._retrying(node, lambda: prune_node(self.transport, run, listing, self.progress))
            except NodeError as exc:
                broken = exc
            except DiskFull as exc:
                self._stop(str(exc))
        self._finish_node(run, broken)

    def _finish_node(self, run: NodeRun, broken: NodeError | None) -> None:
        counts = tally(run.files)
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

    # -- list -------------------------------------------------------------------------------

    async def _listing(self, run: NodeRun) -> Listing:
        """The node's log files, each with its sha256. With a manifest (a re-run), the node first
        only stats them, and hashes just the versions (size, mtime, ctime, inode) not collected
        yet: a node is not made to re-read hundreds of MB of logs it was already relieved of."""
        node, logs = run.node, self.fleet.service.logs
        if not run.manifest.collected:
            return await self._retrying(node, lambda: list_node(self.transport, node, "list", logs))
        listing = await self._retrying(node, lambda: list_node(self.transport, node, "stat", logs))
        unknown = []
        for rf in listing.files:
            rec = run.manifest.known(rf)
            if rec is not None:
                rf.sha256 = rec["sha256"]
            else:
                unknown.append(rf)
        if unknown:
            paths = [rf.path for rf in unknown]
            hashed = await self._retrying(node, lambda: list_node(self.transport, node, "hash", logs, paths))
            fresh = {rf.path: rf for rf in hashed.files}
            listing.files = [fresh.get(rf.path, rf) if rf.sha256 is None else rf for rf in listing.files]
            listing.files = [rf for rf in listing.files if rf.sha256 is not None]  # vanished meanwhile
            listing.skipped += [s for s in hashed.skipped if s[1] != "vanished"]
        return listing

    # -- local preparation ------------------------------------------------------------------

    def _prepare_dir(self, run: NodeRun) -> None:
        try:
            run.dir.mkdir(parents=True, exist_ok=True)
            ensure_dirs(run.dir, [PARTIAL_DIR])
        except OSError as exc:
            raise local_error(exc, run.dir) from None

    # -- transfer ---------------------------------------------------------------------------

    async def _collect_file(self, run: NodeRun, rf: RemoteFile, codec: str) -> FileResult:
        attempt = 0
        continued = True
        while True:
            try:
                return await self._transfer(run, rf, codec, continued)
            except SpliceFailed:
                if not continued:  # pragma: no cover - only a continued transfer raises it
                    raise
                continued = False  # rewritten, not appended: fetch it whole, as a copy of its own
            except NodeError as exc:
                # a node that stopped answering (or never did) would cost a connect timeout per
                # retry: reported at once, like the listing does
                if attempt >= self.retries or self.control.aborted or exc.state in NO_RETRY:
                    raise
                self.transport.drop(run.node.name)
                self.progress(run.node.name, "retrying", f"{rf.shown}: {exc.message}; resuming in {RETRY_DELAYS[attempt]:g}s")
                await asyncio.sleep(RETRY_DELAYS[attempt])
                attempt += 1

    async def _transfer(self, run: NodeRun, rf: RemoteFile, codec: str, continued: bool = True) -> FileResult:
        """Fetch what the partial (resumed, or continued from a grown log's earlier copy) lacks,
        verify the whole file, store it."""
        node = run.node
        part, idx = partial_paths(run.dir, rf.path)
        identity = {"path": pct(rf.path), "size": rf.size, "mtime": rf.mtime, "ctime": rf.ctime, "ino": rf.ino,
                    "sha256": rf.sha256, "codec": codec}
        try:
            raw_done, comp_done, final = await asyncio.to_thread(open_partial, part, idx, identity)
        except OSError as exc:
            raise local_error(exc, part) from None
        base = run.manifest.base_for(rf, codec, BLOCK) if continued else None
        if base is not None and raw_done == comp_done == 0 and final is None:
            try:
                await asyncio.to_thread(seed_partial, run.dir, base[0], base[2], part, idx, identity)
            except OSError as exc:
                raise local_error(exc, part) from None
            raw_done, comp_done = base[1], base[2]
        else:
            base = None
        fetched_from = raw_done
        if final is not None:
            try:
                if os.path.samefile(part, run.dir / final):
                    rec = await asyncio.to_thread(run.manifest.record_copy, identity, final, part,
                                                  durable=self.durable)
                    await asyncio.to_thread(drop_partial, part, idx)
                    return FileResult(rf.path, "collected", "", rf.size, final, rec["stored_size"])
            except OSError:
                pass
        verifier = make_verifier(codec, self.zstd)
        if base is not None:
            verifier.watch_prefix(base[0]["size"])
        stored_hash = hashlib.sha256()
        fd = os.open(part, os.O_RDWR)
        try:
            if comp_done:
                await asyncio.to_thread(replay, fd, comp_done, verifier, stored_hash)
            os.lseek(fd, comp_done, os.SEEK_SET)
            segments = segment_plan(rf.size, raw_done, self.segment)
            if segments:
                if self.control.aborted:
                    raise LocalError(f"not finished: {self.stop_reason or 'collection aborted'} (partial kept)")
                marks = ResumeMarks(codec, verifier, segments, comp_done, idx)
                sink = FileSink(fd, verifier, stored_hash, part, marks.after)
                script = send_script(node.root, rf.path, segments, codec, self.nice if run.nice else 0)
                limit = self.transport.command_timeout + sum(n for _, n in segments) / SEND_RATE
                async with sink.draining():
                    status, err = await stream_exec(self.transport, node, bounded("/bin/sh -s", limit),
                                                    self._progress_sink(run, sink, verifier),
                                                    idle=lambda: self.transport.command_timeout, input=script,
                                                    what=f"the transfer of {rf.shown}")
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
                await asyncio.to_thread(trim_partial, fd, idx)
            raise error from None
        except DiskFull:
            await asyncio.to_thread(trim_partial, fd, idx)
            raise
        except VerifyError as exc:
            await asyncio.to_thread(drop_partial, part, idx)
            if base is not None and not isinstance(exc, SpliceFailed):
                # the earlier copy did not even decode (damaged on disk): fetch the file whole
                raise SpliceFailed(str(exc)) from None
            raise
        finally:
            os.close(fd)
            verifier.close()
        if count != rf.size or digest != rf.sha256:
            await asyncio.to_thread(drop_partial, part, idx)
            if base is not None:
                raise SpliceFailed("the earlier copy is not a prefix of the file")
            raise VerifyError(f"verification failed: got {count} bytes with sha256 {digest[:12]}..., the node listed "
                              f"{rf.size} bytes with {rf.sha256[:12]}... (changed during the transfer?)")
        identity["stored_sha256"] = stored_hash.hexdigest()
        identity["marks"] = await asyncio.to_thread(read_marks, idx)
        sent = rf.size - fetched_from
        if base is not None:  # the stored bytes up to the seed are the earlier copy's, marks included
            identity["marks"] = [m for m in base[0]["marks"] if m[0] < base[1]] + identity["marks"]
        if base is not None and verifier.prefix_hash.hexdigest() == base[0]["sha256"]:
            # the earlier version is this one's prefix: the grown copy replaces it, under its name
            rec = await asyncio.to_thread(replace_copy, run.manifest, base[0]["_stored"], part, idx, identity,
                                          durable=self.durable)
            return FileResult(rf.path, "collected", "", rf.size, base[0]["_stored"], rec["stored_size"], sent=sent)
        final, rec = await asyncio.to_thread(finalize, run.manifest, rf.path, codec, part, idx, identity,
                                             durable=self.durable)
        return FileResult(rf.path, "collected", "", rf.size, final, rec["stored_size"], sent=sent)

    def _progress_sink(self, run: NodeRun, sink: FileSink, verifier) -> Callable[[bytes], Awaitable[None]]:
        async def feed(chunk: bytes) -> None:
            await sink(chunk)
            self._emit(run, "collecting", run.current, extra=verifier.raw)
        return feed
