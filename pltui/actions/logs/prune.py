"""Pruning: delete a node's log file only once a verified copy of that very content is on disk.

A file is offered to the node only when it is in the manifest (this run or an earlier one) with
a stored copy whose sha256 is re-checked now and made durable, and when it did not move while
being hashed. The node then checks each file again in one shell step (size and mtime as listed,
not open by any process, same sha256, unmoved while hashing) before ``rm``; its answers name
files by index, never by name.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from pltui.actions.logs.listing import HASH_RATE, NODE_BOUND, Listing, RemoteFile, node_script
from pltui.actions.logs.localstore import local_error
from pltui.actions.logs.names import display, pct
from pltui.actions.logs.results import NodeRun
from pltui.actions.logs.stream import stream_exec
from pltui.model import SSHState
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, Transport, bounded

_KEPT_BECAUSE = {
    "changed": "still being written (size or mtime changed since listing); kept",
    "mismatch": "content changed since listing; kept",
    "open": "open by a process on the node; kept",
    "failed": "could not delete it on the node; kept",
}


async def prune_node(transport: Transport, run: NodeRun, listing: Listing, progress: Callable[..., None]) -> None:
    """Prune the node's collected files; each one's outcome lands on its FileResult in `run`."""
    candidates: list[RemoteFile] = []
    results = {f.path: f for f in run.files}
    for rf in listing.files:
        fr = results.get(rf.path)
        if fr is None or fr.state not in ("collected", "present"):
            continue
        if rf.moved:
            run.kept(rf.path, "still being written (changed while hashed); kept")
            continue
        rec = run.manifest.lookup(rf.path, rf.sha256)
        if rec is None:
            continue
        if not await asyncio.to_thread(run.manifest.copy_intact, rec):
            run.kept(rf.path, f"local copy {display(rec['_stored'])} no longer matches its record; kept")
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
    progress(run.node.name, "pruning", f"checking and deleting {len(candidates)} collected files")
    out = bytearray()

    async def sink(chunk: bytes) -> None:
        if len(out) + len(chunk) > 1 << 20:
            raise NodeError(SSHState.GARBLED, "prune answer too long")
        out.extend(chunk)

    timeout = transport.command_timeout + total / HASH_RATE
    status, err = await stream_exec(transport, run.node, bounded("/bin/sh -s", NODE_BOUND), sink,
                                    idle=lambda: timeout, input=node_script(run.node, "prune", words=words),
                                    what="pruning")
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
            run.set_prune(rf.path, "pruned", "")
        elif answer in _KEPT_BECAUSE:
            run.kept(rf.path, _KEPT_BECAUSE[answer])
        elif answer == "gone":
            run.set_prune(rf.path, "gone", "already gone from the node")
        else:
            run.kept(rf.path, "prune not confirmed by the node; kept" +
                     ("" if ended else f" (exit {status}: {clean_line(err, 80)})"))
