"""Repair checksum drift: give drifted nodes the majority's version of each drifted file.

1. A checksum sweep of every node of the tracks of the selected nodes (majorities are per track,
   so the whole track is needed), unless an engine with fresh checksums is handed in
   (`resweep=False`). Only *selected* drifted nodes are repaired.
2. For each selected drifted node and each drifted file whose track has a quorum majority:
   - a reachable majority node (one that reported the majority digest) provides the file over
     SFTP, streamed to a local temporary file; its sha256 must equal the majority digest (the
     copy is fetched once per file and reused for every drifted node);
   - it is uploaded beside the target under a temporary hidden name
     (`.pltui-repair-<id>-<n>`), its sha256 is checked again *on the node*, it gets the source
     file's mode, and it is renamed over the target (`mv`, atomic);
   - the node's previous, drifted copy is kept (hard link, or a copy) under
     `ROOT/.pltui/drift/<action id>/<path>`, so nothing is lost. (Not beside the file as
     `<file>.pltui-drift-*`: an important glob such as `conf/*` would then checksum the old copy
     and report it as new drift.)
3. The repaired nodes are checksummed again; each node's result says what was repaired, what
   is still drifted and what failed.

Left alone, and reported: files the majority does *not* have (the drifted node has an extra
file), files without a quorum majority, paths that are absolute or contain `..`, targets that
are symbolic links or not regular files, and paths running through a symbolic link on the
drifted node. Every path comes from nodes' own reports: it is never given to a shell unquoted,
and it never leaves the service root.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import shlex
import shutil
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import asyncssh

from pltui.actions.base import Action, ActionReport, Control, Emit
from pltui.actions.logs.localstore import file_sha256
from pltui.fleet import Fleet, Node
from pltui.model import SSHState
from pltui.nodesets import fold
from pltui.nodesha import SHA256_FUNCTION
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import NodeError, Transport
from pltui.store import Store

DRIFT_DIR = ".pltui/drift"
MIN_THROUGHPUT = 64 * 1024          # bytes/s a transfer may not fall below (on top of the command timeout)
_CONNECTION_STATES = {SSHState.REFUSED, SSHState.UNREACHABLE, SSHState.HOSTKEY, SSHState.AUTH}


class RepairError(Exception):
    """One file could not be repaired on one node; the message says why (one line)."""


def check_path(path: str) -> tuple[str | None, str | None]:
    """(normalised relative path, None) for a path safe to write under a root, else (None, why)."""
    if not path or "\x00" in path:
        return None, "empty path or NUL byte"
    if path.startswith("/"):
        return None, "absolute path"
    parts = path.split("/")
    if ".." in parts:
        return None, "path contains '..'"
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        return None, "path names the root itself"
    if parts[0] == ".pltui":
        return None, "path inside pltui's own directory"
    return "/".join(parts), None


def sftp_root(root: str) -> str:
    """The service root as an SFTP path (relative SFTP paths start at the login's home)."""
    if root == "~":
        return "."
    if root.startswith("~/"):
        return root[2:].rstrip("/") or "."
    return root.rstrip("/") or "/"


def sftp_path(root: str, relative: str) -> str:
    return posixpath.join(sftp_root(root), relative)


def _word(relative: str) -> str:
    """A path relative to the root as one shell word that never starts with `-`."""
    return shlex.quote("./" + relative)


def prepare_command(root: str, relative: str) -> str:
    """Shell: refuse symlinked parents and non-regular targets, create the parent dirs, and remove
    the uploads an interrupted repair left in the target's directory (`.pltui-repair-*`: ours only,
    and no other repair runs on the node while we hold its lock)."""
    parts = relative.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    checks = ""
    if parents:
        words = " ".join(_word(p) for p in parents)
        checks = (f"for p in {words}; do if [ -L \"$p\" ]; then "
                  f"echo \"refusing: $p is a symbolic link\" >&2; exit 3; fi; done\n")
    target = _word(relative)
    lines = [
        f"cd {shell_path(root)} || exit 125",
        checks.rstrip("\n"),
        f"t={target}",
        'if [ -L "$t" ] || { [ -e "$t" ] && [ ! -f "$t" ]; }; then '
        'echo "refusing: the target is a symbolic link or not a regular file" >&2; exit 3; fi',
    ]
    if parents:
        lines.append(f"mkdir -p -- {_word(parents[-1])} || exit 4")
    directory = _word(parents[-1]) if parents else "."
    lines.append(f'for s in {directory}/.pltui-repair-*; do if [ -f "$s" ] && [ ! -L "$s" ]; then rm -f -- "$s"; fi; done')
    lines.append("echo ready")
    return "\n".join(line for line in lines if line)


def finalize_command(root: str, relative: str, tmp_relative: str, old_relative: str, digest: str, mode: int) -> str:
    """Shell: verify the uploaded temp file's sha256, give it `mode`, keep the old target as
    `old_relative`, and rename the temp file over the target."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("bad digest")
    return "\n".join([
        f"cd {shell_path(root)} || exit 125",
        f"tmp={_word(tmp_relative)}",
        f"t={_word(relative)}",
        f"old={_word(old_relative)}",
        f"want={digest}",
        'fail() { rm -f -- "$tmp"; echo "$1" >&2; exit "$2"; }',
        SHA256_FUNCTION,  # sha256sum, else busybox, openssl, shasum (pltui.nodesha)
        'pltui_sha256 </dev/null >/dev/null 2>&1 || fail "no sha256 tool on the node (sha256sum, busybox, openssl, '
        'shasum): cannot verify the upload" 5',
        'd=$(pltui_sha256 <"$tmp")',
        'd=${d%% *}',
        '[ "$d" = "$want" ] || fail "the uploaded copy has sha256 ${d:-(none)} on the node, not the majority digest" 6',
        f'chmod {mode:o} -- "$tmp" || fail "cannot set the file mode" 7',
        'if [ -L "$t" ] || { [ -e "$t" ] && [ ! -f "$t" ]; }; then '
        'fail "refusing: the target is a symbolic link or not a regular file" 3; fi',
        'if [ -f "$t" ]; then',
        '  mkdir -p -- "${old%/*}" && { ln -- "$t" "$old" 2>/dev/null || cp -p -- "$t" "$old"; } '
        '|| fail "cannot keep the old copy" 8',
        '  echo kept',
        'fi',
        'mv -f -- "$tmp" "$t" || fail "cannot move the new copy into place" 9',
        'echo installed',
    ])


@dataclass
class FileFix:
    path: str                 # as the nodes reported it
    relative: str             # normalised, safe
    majority: str             # the majority digest
    had: str | None           # the node's digest (None: missing)
    holders: int
    answering: int
    sources: list[str]        # reachable nodes holding the majority digest

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "majority": self.majority, "had": self.had, "holders": self.holders,
                "answering": self.answering, "sources": fold(self.sources), "source_count": len(self.sources)}


@dataclass
class NodePlan:
    node: str
    track: str
    state: str                                   # clean, drifted, unchecked
    error: str = ""
    fixes: list[FileFix] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)          # files the majority lacks
    rejected: dict[str, str] = field(default_factory=dict)  # path -> why it is left alone

    def to_json(self) -> dict[str, Any]:
        return {"track": self.track, "state": self.state, "error": self.error or None,
                "repair": [f.to_json() for f in self.fixes], "extra": list(self.extra),
                "rejected": dict(self.rejected)}


class RepairAction(Action):
    kind = "repair"
    mutating = True

    def __init__(self, fleet: Fleet, transport: Transport, store: Store | None, nodes: Iterable[str], *,
                 engine=None, state_dir: str | os.PathLike | None = None, resweep: bool = True,
                 dry_run: bool = False, emit: Emit | None = None, control: Control | None = None,
                 action_id: str | None = None):
        super().__init__(fleet, transport, store, nodes, emit=emit, control=control, action_id=action_id)
        self.engine = engine
        self._own_engine = engine is None
        self.state_dir = state_dir
        self.resweep = resweep
        self.dry_run = dry_run
        if dry_run:
            self.mutating = False  # a plan touches nothing: no locks
        self.plans: dict[str, NodePlan] | None = None
        self.no_quorum: dict[str, list[dict[str, Any]]] = {}
        self.swept: list[str] = []
        self._tmpdir: Path | None = None
        self._fetched: dict[tuple[str, str], tuple[Path, int]] = {}
        self._fetch_failed: dict[tuple[str, str], str] = {}
        self._fetch_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._counter = 0
        drift_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.action_id)
        self.drift_dir = f"{DRIFT_DIR}/{drift_id}"

    def arguments(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "resweep": self.resweep}

    # -- planning -----------------------------------------------------------------------------

    def track_nodes(self) -> list[str]:
        tracks = {self.fleet.nodes[n].track for n in self.nodes}
        return [n for n, node in self.fleet.nodes.items() if node.track in tracks]

    def _engine(self):
        if self.engine is None:
            from pltui.sweep import Engine

            self.engine = Engine(self.fleet, state_dir=self.state_dir, nodes=self.track_nodes(),
                                 transport=self.transport, store=self.store, heal="off")
        return self.engine

    async def make_plan(self) -> dict[str, Any]:
        """Checksum the involved tracks (unless fresh checksums were handed in) and decide what to
        repair. Touches nothing on any node."""
        engine = self._engine()
        involved = self.track_nodes()
        missing = [n for n in involved if engine.statuses.get(n) is None or engine.statuses[n].digests is None]
        if self.resweep or missing:
            self.progress(None, "sweeping", f"checksum sweep of {len(involved)} nodes ({fold(involved)})")
            await engine.sweep(checksums=True, nodes=involved)
            self.swept = involved
        consensus = engine.consensus
        statuses = engine.statuses
        plans: dict[str, NodePlan] = {}
        sources_cache: dict[tuple[str, str], list[str]] = {}
        for name in self.nodes:
            node = self.fleet.nodes[name]
            status = statuses.get(name)
            plan = NodePlan(name, node.track, "clean")
            plans[name] = plan
            if status is None or not status.reachable or status.digests is None:
                plan.state = "unchecked"
                plan.error = (status.error if status is not None and status.error else "no checksum report")
                continue
            if status.digest_tool == "none":
                plan.state = "unchecked"
                plan.error = "no sha256 tool on the node"
                continue
            for path in consensus.drift.get(name, []):
                verdict = consensus.files.get((node.track, path))
                if verdict is None or not verdict.quorum:
                    continue
                plan.state = "drifted"
                if verdict.digest is None:
                    plan.extra.append(path)
                    continue
                relative, why = check_path(path)
                if relative is None:
                    plan.rejected[path] = why
                    continue
                key = (node.track, path)
                if key not in sources_cache:
                    sources_cache[key] = [
                        m for m in involved
                        if statuses.get(m) is not None and statuses[m].reachable and statuses[m].digests is not None
                        and statuses[m].digests.get(path) == verdict.digest
                    ]
                sources = [m for m in sources_cache[key] if m != name]
                if not sources:
                    plan.rejected[path] = "no reachable node holds the majority's version"
                    continue
                plan.fixes.append(FileFix(path, relative, verdict.digest, status.digests.get(path),
                                          verdict.holders, verdict.answering, sources))
        tracks = {self.fleet.nodes[n].track for n in self.nodes}
        self.no_quorum = {}
        for track in sorted(tracks):
            members = [statuses[m] for m in involved if self.fleet.nodes[m].track == track
                       and statuses.get(m) is not None and statuses[m].digests is not None]
            for path in consensus.no_quorum.get(track, []):
                split = Counter((s.digests.get(path) or "absent")[:12] for s in members)
                self.no_quorum.setdefault(track, []).append({"path": path, "split": dict(split.most_common())})
        self.plans = plans
        return self.plan()

    def plan(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "dry_run": self.dry_run, "nodes": list(self.nodes)}
        if self.plans is not None:
            doc["swept"] = fold(self.swept) if self.swept else None
            doc["plan"] = {n: p.to_json() for n, p in self.plans.items()}
            doc["no_quorum"] = self.no_quorum
        return doc

    # -- fetching a majority copy ----------------------------------------------------------------

    def _transfer_timeout(self, size: int) -> float:
        return self.transport.command_timeout + size / MIN_THROUGHPUT

    async def _download(self, source: str, fix: FileFix, local: Path) -> int:
        """Stream a source node's copy to `local`; return its mode. Raises RepairError."""
        node = self.fleet.nodes[source]
        remote = sftp_path(node.root, fix.relative)
        try:
            # a throughput floor for the whole file, and the command timeout without any progress
            # (a frozen node is found by its silence, not after a large file's whole budget)
            async with self.transport.step(node, "the download", self.transport.command_timeout,
                                           idle=self.transport.command_timeout) as deadline:
                async with self.transport.sftp(node) as sftp:
                    attrs = await sftp.stat(remote)
                    regular = (stat.S_ISREG(attrs.permissions) if attrs.permissions is not None
                               else attrs.type == asyncssh.FILEXFER_TYPE_REGULAR)
                    if not regular:
                        raise RepairError(f"{source}: not a regular file")
                    deadline.reschedule(self._transfer_timeout(attrs.size or 0))
                    self.progress(source, "sending", fix.path, bytes_total=attrs.size)
                    await sftp.get(remote, str(local), progress_handler=lambda *_: deadline.touch())
        except NodeError as exc:
            self.transport.drop(source)
            raise RepairError(f"{source}: {exc.message}") from None
        except asyncssh.SFTPError as exc:
            raise RepairError(f"{source}: SFTP: {clean_line(exc.reason, 200)}") from None
        except (asyncssh.Error, OSError) as exc:
            raise RepairError(f"{source}: {clean_line(str(exc), 200)}") from None
        got = await asyncio.to_thread(file_sha256, local)
        if got != fix.majority:
            raise RepairError(f"{source}: its copy has sha256 {got[:12]}, not the majority's {fix.majority[:12]} "
                              f"(changed since the sweep?)")
        return (attrs.permissions or 0o644) & 0o7777

    async def fetch(self, track: str, fix: FileFix) -> tuple[Path, int]:
        """A verified local copy of the majority's version (fetched once per file)."""
        key = (track, fix.path)
        lock = self._fetch_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._fetched:
                return self._fetched[key]
            if key in self._fetch_failed:
                raise RepairError(self._fetch_failed[key])
            assert self._tmpdir is not None
            self._counter += 1
            local = self._tmpdir / f"copy-{self._counter}"
            problems = []
            # Spread the reading over the majority: start at a different node per file.
            start = int(hashlib.sha256(fix.path.encode("utf-8", "surrogateescape")).hexdigest(), 16) % len(fix.sources)
            for source in fix.sources[start:] + fix.sources[:start]:
                try:
                    mode = await self._download(source, fix, local)
                except RepairError as exc:
                    problems.append(str(exc))
                    local.unlink(missing_ok=True)
                    if len(problems) >= 3:
                        break
                    continue
                self._fetched[key] = (local, mode)
                return local, mode
            message = "no majority node could provide a verified copy: " + "; ".join(problems)
            self._fetch_failed[key] = message
            raise RepairError(message)

    # -- installing it on a drifted node ------------------------------------------------------------

    async def _run(self, node: Node, command: str, what: str) -> str:
        result = await self.transport.run(node, command, what=what)
        if result.exit_status != 0:
            detail = clean_line(result.stderr, 200) or clean_line(result.stdout, 200) or f"exit {result.exit_status}"
            raise RepairError(f"{what}: {detail}")
        return result.stdout.decode("utf-8", "replace")

    async def install(self, node: Node, fix: FileFix, local: Path, mode: int) -> str | None:
        """Put the verified copy in place on `node`; return where the old copy was kept (or None)."""
        self._counter += 1
        directory, _, _ = fix.relative.rpartition("/")
        tmp_name = f".pltui-repair-{self.action_id[-6:]}-{self._counter}"
        tmp_relative = f"{directory}/{tmp_name}" if directory else tmp_name
        old_relative = f"{self.drift_dir}/{fix.relative}"
        await self._run(node, prepare_command(node.root, fix.relative), "preparing")
        self.progress(node.name, "uploading", fix.path, bytes_total=local.stat().st_size)
        remote_tmp = sftp_path(node.root, tmp_relative)
        try:
            async with self.transport.step(node, "the upload", self._transfer_timeout(local.stat().st_size),
                                           idle=self.transport.command_timeout) as deadline:
                async with self.transport.sftp(node) as sftp:
                    await sftp.put(str(local), remote_tmp, progress_handler=lambda *_: deadline.touch())
        except (asyncssh.Error, OSError, NodeError) as exc:
            if isinstance(exc, NodeError):
                if exc.state in _CONNECTION_STATES:
                    raise  # the node is gone (or stopped answering): nothing to clean up on it now
                self.transport.drop(node.name)
                message = exc.message
            elif isinstance(exc, asyncssh.SFTPError):
                message = f"SFTP: {clean_line(exc.reason, 200)}"
            else:
                message = clean_line(str(exc), 200)
            try:
                await self.transport.run(node, f"cd {shell_path(node.root)} && rm -f -- {_word(tmp_relative)}")
            except NodeError:
                pass
            raise RepairError(f"upload: {message}") from None
        self.progress(node.name, "installing", fix.path)
        output = await self._run(node, finalize_command(node.root, fix.relative, tmp_relative, old_relative,
                                                        fix.majority, mode), "installing")
        return old_relative if "kept" in output.split() else None

    async def repair_node(self, plan: NodePlan) -> dict[str, Any]:
        node = self.fleet.nodes[plan.node]
        repaired: list[str] = []
        kept: dict[str, str] = {}
        errors: dict[str, str] = {}
        for index, fix in enumerate(plan.fixes):
            if not await self.control.checkpoint():
                for later in plan.fixes[index:]:
                    errors[later.path] = "action aborted"
                break
            self.progress(plan.node, "repairing", fix.path)
            try:
                local, mode = await self.fetch(plan.track, fix)
                old = await self.install(node, fix, local, mode)
            except RepairError as exc:
                errors[fix.path] = clean_line(str(exc), 300)
                continue
            except NodeError as exc:
                errors[fix.path] = exc.message
                if exc.state in _CONNECTION_STATES:  # the node is gone: the rest would fail alike
                    for later in plan.fixes[index + 1:]:
                        errors[later.path] = f"not tried: {exc.message}"
                    break
                continue
            repaired.append(fix.path)
            if old:
                kept[fix.path] = old
        return {"repaired": repaired, "kept": kept, "errors": errors}

    # -- the action ------------------------------------------------------------------------------

    async def execute(self) -> ActionReport:
        try:
            return await self._execute()
        finally:
            # An engine made here opens its own store when none was given: close that one.
            if self._own_engine and self.store is None and self.engine is not None and self.engine.store is not None:
                self.engine.store.close()

    async def _execute(self) -> ActionReport:
        if self.plans is None:
            await self.make_plan()
        assert self.plans is not None
        outcome: dict[str, dict[str, Any]] = {}
        if not self.dry_run:
            todo = [p for p in self.plans.values() if p.fixes]
            self._tmpdir = Path(tempfile.mkdtemp(prefix="pltui-repair-"))
            try:
                async def work(name: str) -> None:
                    outcome[name] = await self.repair_node(self.plans[name])

                await self.for_each([p.node for p in todo], work, self.fleet.ssh.fanout)
            finally:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            touched = [n for n, o in outcome.items() if o["repaired"]]
            if touched:
                for name in touched:
                    self.progress(name, "verifying", "checksum sweep after the repair")
                await self._engine().sweep(checksums=True, nodes=touched)
        self._results(outcome)
        summary = {"dry_run": self.dry_run, "swept": fold(self.swept) if self.swept else None,
                   "plan": {n: p.to_json() for n, p in self.plans.items()}, "no_quorum": self.no_quorum,
                   "drift_dir": self.drift_dir}
        return self.report(stopped_because="aborted by the operator" if self.control.aborted else None,
                           summary=summary)

    def _results(self, outcome: dict[str, dict[str, Any]]) -> None:
        engine = self._engine()
        for name, plan in self.plans.items():
            if name in self.results:  # e.g. untouched after an abort
                continue
            base = {"track": plan.track, "extra": plan.extra, "rejected": plan.rejected}
            if plan.state == "unchecked":
                self.result(name, "unreachable", plan.error, **base)
                continue
            if plan.state == "clean":
                self.result(name, "skipped", "no drift", **base)
                continue
            if self.dry_run:
                parts = []
                if plan.fixes:
                    parts.append(f"would repair {len(plan.fixes)} file(s)")
                if plan.extra:
                    parts.append(f"{len(plan.extra)} extra file(s) the majority lacks: left alone")
                if plan.rejected:
                    parts.append(f"{len(plan.rejected)} file(s) left alone")
                self.result(name, "planned", "; ".join(parts), repair=[f.path for f in plan.fixes], **base)
                continue
            done = outcome.get(name, {"repaired": [], "kept": {}, "errors": {}})
            status = engine.statuses.get(name)
            still = list(engine.consensus.drift.get(name, []))
            data = dict(base, repaired=done["repaired"], kept=done["kept"], errors=done["errors"],
                        still_drifted=still)
            if done["repaired"] and (status is None or not status.reachable or status.digests is None):
                error = status.error if status is not None and status.error else "no checksum report"
                self.result(name, "failed", f"repaired {len(done['repaired'])} file(s) but the check afterwards "
                            f"failed: {error}", **data)
                continue
            parts = []
            if done["repaired"]:
                parts.append(f"repaired {len(done['repaired'])} file(s)")
            if done["errors"]:
                parts.append(f"{len(done['errors'])} failed")
            if plan.rejected:
                parts.append(f"{len(plan.rejected)} left alone")
            extra = [p for p in still if p in plan.extra]
            if extra:
                parts.append(f"{len(extra)} extra file(s) the majority lacks: left alone")
            if len(still) > len(extra):
                parts.append(f"{len(still) - len(extra)} still drifted")
            if done["errors"] or plan.rejected:
                state = "failed"
            elif still:
                state = "drifted"
            else:
                state = "done"
            self.result(name, state, "; ".join(parts) or "nothing repaired", **data)
