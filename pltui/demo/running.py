"""A running demo (`Demo`): its nodes, roles and bundle, the pids it saw, and `stop()`, which
ends every process the demo started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pltui.demo.dirs import release_lock
from pltui.demo.layout import DESCRIPTION, Pace
from pltui.demo.nodesim import SimFleet, marked_pids
from pltui.demo.procs import end_reaper, kill_seen, read_pid, start_time
from pltui.nodesets import fold


@dataclass
class Demo:
    """A running demo fleet. `roles` maps node name -> role; `stop()` ends everything."""

    base_dir: Path
    sim: SimFleet
    fleet_path: Path
    bundle_dir: Path
    bundle_tarball: Path
    roles: dict[str, str]
    pace: Pace
    startup_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    bootstrap: dict[str, str] = field(default_factory=dict)   # node -> bootstrap result state
    chaos_log: Path | None = None
    _reaper: subprocess.Popen | None = None
    _lock_fd: int | None = None
    _chaos_task: asyncio.Task | None = None
    _seen: dict[int, int | None] = field(default_factory=dict)   # pid -> start time
    _children: set[int] = field(default_factory=set)   # node processes that became our children
    _reaper_task: asyncio.Task | None = None
    _stopped: bool = False

    # -- facts ---------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return self.sim.names

    @property
    def token(self) -> str:
        return self.sim.token

    def with_role(self, role: str) -> list[str]:
        return [n for n, r in self.roles.items() if r == role]

    def node(self, role: str) -> str:
        """The (first) node planted with `role`."""
        return self.with_role(role)[0]

    def root(self, name: str) -> Path:
        return self.sim.nodes[name].root

    def legend(self) -> list[str]:
        """One line per role, in fleet order: "demo004      drift: ..."."""
        lines = []
        width = max(len(fold(self.with_role(r))) for r in set(self.roles.values()))
        seen: list[str] = []
        for role in self.roles.values():
            if role not in seen:
                seen.append(role)
        for role in seen:
            lines.append(f"{fold(self.with_role(role)):<{width}}  {DESCRIPTION[role]}")
        return lines

    def started_pids(self) -> dict[int, int | None]:
        """Every pid the demo's nodes are running or ran (pid -> start time), as seen now."""
        self._remember(self._pidfile_pids() + marked_pids(self.token))
        return dict(self._seen)

    def _pidfile_pids(self) -> list[int]:
        pids = []
        for node in self.sim.nodes.values():
            for pidfile in [node.root / ".pltui" / "monitor.pid", *(node.root / "run").glob("*.pid")]:
                pid = read_pid(pidfile)
                if pid:
                    pids.append(pid)
        return pids

    def _remember(self, pids) -> None:
        for pid in pids:
            if pid not in self._seen:
                start = start_time(pid)
                if start is not None:
                    self._seen[pid] = start

    def _reap(self) -> None:
        """Collect the exit of those of our (adopted) children that died; never blocks."""
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.discard(pid)

    async def _reap_forever(self) -> None:
        while self._children:
            await asyncio.sleep(0.5)
            self._reap()

    # -- the end -------------------------------------------------------------------------------

    async def stop(self) -> list[int]:
        """Stop chaos, the nodes and every process they started; returns pids that survived."""
        if self._stopped:
            return []
        self._stopped = True
        for task in (self._chaos_task, self._reaper_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            self.started_pids()
        await self.sim.stop()
        left = await asyncio.to_thread(kill_seen, self._seen)
        self._reap()
        release_lock(self._lock_fd)
        self._lock_fd = None
        await asyncio.to_thread(end_reaper, self._reaper)
        self._reaper = None
        return left

