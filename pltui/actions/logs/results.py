"""What a node's collection came to: a `FileResult` per file (its JSON is the report's ``files``)
and the `NodeRun` that gathers them with the node's byte counts while it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pltui.actions.logs.localstore import Manifest
from pltui.actions.logs.names import display, pct
from pltui.fleet import Node


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
    sent: int | None = None    # raw bytes fetched this run (less than size: resumed, or a grown log continued)

    def to_json(self) -> dict:
        doc: dict[str, Any] = {"path": pct(self.path), "shown": display(self.path), "state": self.state}
        if self.message:
            doc["message"] = self.message
        doc["size"] = self.size
        if self.stored:
            doc["stored"] = pct(os.fsencode(self.stored))
            doc["stored_size"] = self.stored_size
        if self.sent is not None:
            doc["sent"] = self.sent
        if self.prune:
            doc["prune"] = self.prune
            if self.prune_message:
                doc["prune_message"] = self.prune_message
        return doc


def tally(files: Iterable[FileResult]) -> dict[str, int]:
    """How many files ended in each state and, with --prune, each prune outcome."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.state] = counts.get(f.state, 0) + 1
        if f.prune:
            counts[f.prune] = counts.get(f.prune, 0) + 1
    return counts


@dataclass
class NodeRun:
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

    def set_prune(self, path: bytes, outcome: str, message: str) -> None:
        for f in self.files:
            if f.path == path:
                f.prune = outcome
                f.prune_message = message
                return

    def kept(self, path: bytes, message: str) -> None:
        self.set_prune(path, "kept", message)
