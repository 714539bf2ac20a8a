"""One rollout node's remote steps: `release.sh CMD` (with the service's processes in its
environment), the bundle's SFTP upload, and verification by probing until the new version runs
with every process alive and stable. `Rollout` (pltui.actions.rollout) orders these steps, saves
each phase and rolls back; this module only talks to the node."""

from __future__ import annotations

import asyncio
import math
import posixpath
import shlex
import time
from importlib import resources
from typing import Any

import asyncssh
from asyncssh.sftp import SFTPConnectionLost

from pltui.fleet import Node
from pltui.model import NodeStatus, SSHState
from pltui.probe import shell_path
from pltui.sanitize import clean_line
from pltui.ssh import NodeError

SETTLE = 1.0             # seconds the same pids must stay alive during verification
POLL = 0.5               # seconds between verification probes
MIN_UPLOAD_RATE = 32 * 1024  # bytes/s below which an upload times out

NETWORK_STATES = (SSHState.REFUSED, SSHState.UNREACHABLE, SSHState.TIMEOUT, SSHState.ERROR, SSHState.HOSTKEY,
                  SSHState.AUTH)


class StepFailed(Exception):
    """A node-side step failed (the node answered, with an error)."""


_SCRIPT: str | None = None


def release_script() -> str:
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = resources.files("pltui.node").joinpath("release.sh").read_text("utf-8")
    return _SCRIPT


def sftp_path(root: str) -> str:
    """The service root as an SFTP path (relative paths are relative to the login directory)."""
    if root in ("~", "~/"):
        return "."
    if root.startswith("~/"):
        return root[2:].rstrip("/") or "."
    return root.rstrip("/") or "/"


class NodeSteps:
    """The remote steps of a rollout, mixed into `Rollout`: they use its fleet, transport,
    bundle, action_id, state, store, state_dir, progress() and _engine."""

    def _script(self, node: Node, cmd: str) -> bytes:
        procs = self.fleet.service.processes
        lines = [
            f"ROOT={shell_path(node.root)}",
            f"CMD={shlex.quote(cmd)}",
            f"ID={shlex.quote(self.action_id)}",
            f"SHA256={shlex.quote(self.bundle.sha256)}",
            f"KEEP={int(self.state.get('keep_releases', 2))}",
            f"NPROCS={len(procs)}",
        ]
        for i, p in enumerate(procs, 1):
            lines += [
                f"P{i}_NAME={shlex.quote(p.name)}",
                f"P{i}_START={shlex.quote(p.start)}",
                f"P{i}_PIDFILE={shlex.quote(p.pidfile)}",
                f"P{i}_STOP={shlex.quote(p.stop or '')}",
                f"P{i}_RELOAD={shlex.quote(p.reload or '')}",
                f"P{i}_STOP_TIMEOUT={max(1, int(math.ceil(p.stop_timeout)))}",
            ]
        return ("\n".join(lines) + "\n" + release_script()).encode()

    def _timeout(self, cmd: str) -> float:
        base = self.transport.command_timeout
        if cmd in ("stop", "start", "reload"):
            return max(base, 2 * sum(p.stop_timeout for p in self.fleet.service.processes) + 10)
        if cmd == "prepare":
            return base * 4 + self.bundle.size / MIN_UPLOAD_RATE
        return base * 2

    async def release(self, node: Node, cmd: str) -> str:
        """Run `release.sh CMD` on a node; its stdout. StepFailed on a node-side error."""
        result = await self.transport.run(node, "/bin/sh -s", input=self._script(node, cmd), timeout=self._timeout(cmd),
                                          what=cmd)
        if result.exit_status != 0:
            text = clean_line(result.stderr or result.stdout, 300)
            raise StepFailed(text or f"release.sh {cmd}: exit status {result.exit_status}")
        return result.stdout.decode("utf-8", "replace")

    async def node_release_status(self, node: Node) -> dict[str, Any]:
        out = await self.release(node, "status")
        info: dict[str, Any] = {}
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            info[key] = value
        if "end" not in info or info.get("release-status") != "1":
            raise StepFailed("garbled answer from release.sh status")
        return info

    async def upload(self, name: str, node: Node) -> None:
        base = sftp_path(node.root)
        staging = posixpath.join(base, ".pltui", "staging")
        final = f"{staging}/{self.action_id}.tar.gz"
        part = final + ".part"
        total = self.bundle.size
        last = [0.0]

        def handler(_src, _dst, done, _total):
            step.touch()
            now = time.monotonic()
            if done >= total or now - last[0] >= 0.25:
                last[0] = now
                self.progress(name, "uploading", f"{done}/{total} bytes", bytes_done=done, bytes_total=total)

        timeout = self.transport.command_timeout + total / MIN_UPLOAD_RATE
        self.progress(name, "uploading", f"0/{total} bytes", bytes_done=0, bytes_total=total)
        try:
            async with self.transport.step(node, "the upload", timeout, idle=self.transport.command_timeout) as step:
                async with self.transport.sftp(node) as sftp:
                    await sftp.makedirs(staging, exist_ok=True)
                    await sftp.put(str(self.bundle.tarball), part, progress_handler=handler)
                    try:
                        await sftp.posix_rename(part, final)
                    except asyncssh.SFTPOpUnsupported:
                        try:
                            await sftp.remove(final)
                        except asyncssh.SFTPNoSuchFile:
                            pass
                        await sftp.rename(part, final)
        except NodeError:
            self.transport.drop(name)
            raise
        except (SFTPConnectionLost, asyncssh.SFTPNoConnection) as exc:
            self.transport.drop(name)
            raise NodeError(SSHState.ERROR, f"connection lost during the upload: {exc.reason}") from None
        except asyncssh.SFTPError as exc:
            raise StepFailed(f"upload to {final} failed: {exc.reason}") from None
        except OSError as exc:
            raise StepFailed(f"cannot read the bundle {self.bundle.tarball}: {exc.strerror or exc}") from None

    # -- probing ------------------------------------------------------------------------------

    @property
    def engine(self):
        if self._engine is None:
            from pltui.sweep import Engine

            self._engine = Engine(self.fleet, state_dir=self.state_dir, nodes=[], transport=self.transport,
                                  store=self.store)
        return self._engine

    async def probe(self, node: Node) -> NodeStatus:
        status = await self.engine.probe_node(node, False)
        if status.ssh in NETWORK_STATES:
            raise NodeError(status.ssh, status.error or status.ssh.value)
        return status

    async def verify(self, node: Node, version: str | None, timeout: float) -> tuple[bool, str, NodeStatus | None]:
        """Poll until `version` runs with every process alive (and still, SETTLE s later)."""
        deadline = time.monotonic() + timeout
        stable: tuple[float, tuple] | None = None
        problem = "no answer"
        status = None
        while True:
            status = await self.probe(node)
            now = time.monotonic()
            dead = [p for p in status.processes if not p.alive]
            if status.ssh != SSHState.OK:
                problem, stable = status.error or status.ssh.value, None
            elif version is not None and status.version != version:
                problem, stable = f"reports version {status.version or 'none'}, expected {version}", None
            elif dead:
                stable = None
                names = ", ".join(p.name for p in dead)
                problem = f"process {names} not running"
                if status.monitor != "alive":
                    hints = ", ".join(f".pltui/run/{p.name}.out" for p in dead)
                    return False, f"{problem} after start (exited; see {hints} on the node)", status
                backoff = [p.name for p in dead if p.state == "backoff"]
                if backoff:
                    return False, f"process {', '.join(backoff)} keeps exiting (monitor backoff)", status
            else:
                pids = tuple(p.pid for p in status.processes)
                if not pids:
                    return True, "", status
                if stable is None or stable[1] != pids:
                    stable = (now, pids)
                elif now - stable[0] >= SETTLE:
                    return True, "", status
                problem = "processes not yet stable"
            if now >= deadline:
                return False, f"not healthy within {timeout:g}s: {problem}", status
            wait = stable[0] + SETTLE - now if stable is not None else POLL  # one more probe when settled
            await asyncio.sleep(min(max(0.05, wait), max(0.05, deadline - now)))
