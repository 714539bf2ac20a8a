"""Chaos for the demo: random service processes and monitors killed, nodes down and back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from typing import TYPE_CHECKING, Callable

from pltui.demo.layout import ALPHA, HEALTHY
from pltui.demo.nodesim import pid_alive
from pltui.demo.procs import kill_group, read_pid

if TYPE_CHECKING:
    from pltui.demo.running import Demo


class Chaos:
    """Kills random service processes and monitors, takes nodes down and brings them back."""

    DOWN_MODES = ("refuse", "silent")

    def __init__(self, demo: Demo, rng: random.Random, period: float, on_event: Callable[[str], None] | None):
        self.demo = demo
        self.rng = rng
        self.period = period
        self.on_event = on_event
        self.down: dict[str, float] = {}   # node -> loop time to bring it back
        self.victims = demo.with_role(HEALTHY) + demo.with_role(ALPHA)
        self.max_down = max(1, len(self.victims) // 8)

    def log(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} chaos: {text}"
        with contextlib.suppress(OSError):
            with open(self.demo.chaos_log, "a") as f:
                f.write(line + "\n")
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(line)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.period)
                try:
                    await self.step(loop.time())
                except (OSError, ValueError) as exc:
                    self.log(f"step failed: {exc}")
        finally:
            for name in list(self.down):
                with contextlib.suppress(Exception):
                    await self.demo.sim.nodes[name].set_mode("ok")

    async def step(self, now: float) -> None:
        for name, until in list(self.down.items()):
            if now >= until:
                del self.down[name]
                await self.demo.sim.nodes[name].set_mode("ok")
                self.log(f"{name} is back")
        up = [n for n in self.victims if n not in self.down]
        if not up:
            return
        name = self.rng.choice(up)
        roll = self.rng.random()
        if roll < 0.6:
            proc = self.rng.choice(("proxy", "cache"))
            pid = read_pid(self.demo.root(name) / "run" / f"{proc}.pid")
            if pid and pid_alive(pid):
                self.demo._remember([pid])
                kill_group(pid)
                self.log(f"killed {proc} (pid {pid}) on {name}")
        elif roll < 0.75:
            pid = read_pid(self.demo.root(name) / ".pltui" / "monitor.pid")
            if pid and pid_alive(pid):
                self.demo._remember([pid])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.log(f"killed the monitor (pid {pid}) on {name}")
                await asyncio.sleep(0.05)
                self.demo._reap()
        elif len(self.down) < self.max_down:
            mode = self.rng.choice(self.DOWN_MODES)
            seconds = self.rng.uniform(4, 12) * self.period
            self.down[name] = now + seconds
            await self.demo.sim.nodes[name].set_mode(mode)
            self.log(f"{name} down ({mode}) for {seconds:.0f}s")
