"""Copies in progress: ``DEST/<node>/.pltui-partial/<h>.part`` holds the stored bytes received so
far, ``<h>.idx`` the file's identity (first line, JSON), a ``RAW STORED`` line per finished
segment (a resume point) and ``{"final": NAME}`` once the copy is being linked to NAME.

They are the collection's state: a killed or failed run resumes from them, and a copy linked
but not yet recorded in the manifest is adopted by the next run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from pltui.actions.logs.codecs import CODEC_EXT, VerifyError
from pltui.actions.logs.localstore import LocalError, Manifest, ensure_dirs, fsync_dir, local_error
from pltui.actions.logs.names import PARTIAL_DIR, display


def partial_paths(node_dir: Path, path: bytes) -> tuple[Path, Path]:
    """(part, idx) of a node file: named by a hash, so that no node name reaches them."""
    h = hashlib.sha256(path).hexdigest()[:32]
    base = node_dir / PARTIAL_DIR
    return base / f"{h}.part", base / f"{h}.idx"


def open_partial(part: Path, idx: Path, identity: dict) -> tuple[int, int, str | None]:
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
        drop_partial(part, idx)
        with open(idx, "wb") as f:
            f.write((json.dumps(identity, sort_keys=True) + "\n").encode())
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, comp_done)
    finally:
        os.close(fd)
    return raw_done, comp_done, final


def replay(fd: int, length: int, verifier, stored_hash) -> None:
    """Feed a resumed partial's kept prefix through the verifier: the whole file is verified."""
    os.lseek(fd, 0, os.SEEK_SET)
    left = length
    while left:
        block = os.read(fd, min(left, 4 << 20))
        if not block:
            raise VerifyError("partial file shorter than recorded")
        stored_hash.update(block)
        verifier.feed(block)
        left -= len(block)


def append_idx(idx: Path, line: str) -> None:
    with open(idx, "ab") as f:
        f.write(line.encode())


def trim_partial(fd: int, idx: Path) -> None:
    """After a full disk: cut the partial back to its last finished segment (frees space)."""
    try:
        comp = 0
        for line in idx.read_bytes().splitlines()[1:]:
            if not line.startswith(b"{"):
                comp = int(line.split()[1])
        os.ftruncate(fd, comp)
    except (OSError, ValueError, IndexError):
        pass


def drop_partial(part: Path, idx: Path) -> None:
    for p in (part, idx):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def finalize(manifest: Manifest, path: bytes, codec: str, part: Path, idx: Path, identity: dict, *,
             durable: bool) -> tuple[str, dict]:
    """Link the verified partial to a free final name (never replacing anything), record it."""
    node_dir = manifest.node_dir
    rel = os.fsdecode(path)
    parent_parts = rel.split("/")[:-1]
    ext = CODEC_EXT[codec]
    try:
        ensure_dirs(node_dir, parent_parts, durable=durable)
        for n in range(0, 10000):
            name = f"{rel}{ext}" if n == 0 else f"{rel}.~{n}~{ext}"
            target = node_dir / name
            if os.path.lexists(target):
                continue
            append_idx(idx, json.dumps({"final": name}) + "\n")
            try:
                os.link(part, target)  # fails rather than replace an existing file
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                if os.path.lexists(target):  # no hard links here: check, then rename
                    continue
                rec = manifest.record_copy(identity, name, part, durable=durable)
                os.rename(part, target)
                if durable:
                    fsync_dir(target.parent)
                drop_partial(part, idx)
                return name, rec
            if durable:
                fsync_dir(target.parent)
            rec = manifest.record_copy(identity, name, part, durable=durable)
            drop_partial(part, idx)
            return name, rec
    except OSError as exc:
        raise local_error(exc, node_dir / rel) from None
    raise LocalError(f"no free name for {display(path)} in {node_dir}")


def seed_partial(node_dir: Path, rec: dict, stored: int, part: Path, idx: Path, identity: dict) -> None:
    """Start a grown log's partial with the first `stored` bytes of its earlier copy (up to one of
    that copy's resume points, noted as the partial's first one): only the rest is fetched."""
    raw = next(r for r, s in rec["marks"] if s == stored)
    with open(node_dir / rec["_stored"], "rb") as src, open(part, "wb") as dst:
        left = stored
        while left:
            block = src.read(min(left, 4 << 20))
            if not block:
                raise LocalError(f"stored copy {display(rec['_stored'])} is shorter than its record")
            dst.write(block)
            left -= len(block)
    with open(idx, "wb") as f:
        f.write((json.dumps(identity, sort_keys=True) + "\n").encode())
        f.write(f"{raw} {stored}\n".encode())


def replace_copy(manifest: Manifest, name: str, part: Path, idx: Path, identity: dict, *, durable: bool) -> dict:
    """A grown log's verified copy takes the place of its earlier copy `name` (whose content is
    its verified prefix): recorded first, then renamed over it (a crash in between leaves the
    older record matching the older copy, so nothing is lost)."""
    target = manifest.node_dir / name
    try:
        rec = manifest.record_copy(identity, name, part, durable=durable)
        os.rename(part, target)
        if durable:
            fsync_dir(target.parent)
    except OSError as exc:
        raise local_error(exc, target) from None
    drop_partial(part, idx)
    return rec


def clean_partials(manifest: Manifest, listed: Iterable[bytes], *, durable: bool) -> None:
    """Drop partials of files no longer listed as they were; adopt a linked-but-unrecorded one."""
    node_dir = manifest.node_dir
    wanted = {partial_paths(node_dir, path)[1].name for path in listed}
    base = node_dir / PARTIAL_DIR
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
            if finals and part.exists() and os.path.samefile(part, node_dir / finals[-1]):
                manifest.record_copy(head, finals[-1], part, durable=durable)
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
