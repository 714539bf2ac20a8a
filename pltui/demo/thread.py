"""For synchronous callers (the console, subprocess-driven tests, sync benchmarks): a demo or a
simulated fleet on its own event loop in a daemon thread."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Awaitable, Callable

from pltui.demo.build import build_demo
from pltui.demo.layout import DemoError
from pltui.demo.nodesim import SimFleet
from pltui.demo.running import Demo


class DemoThread:
    """A demo on its own event loop in a daemon thread::

        runner = DemoThread(24, path)
        demo = runner.start()        # raises what build_demo raised; Ctrl-C here cleans up
        ...
        runner.stop()                # everything stopped; returns pids that survived
    """

    def __init__(self, n: int, base_dir: str | os.PathLike, **kwargs: Any):
        self.args = (n, base_dir)
        self.kwargs = kwargs
        self.demo: Demo | None = None
        self.left: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pltui-demo", daemon=True)
        self._main: Any = None
        self._ready = threading.Event()
        self._began = threading.Event()
        self._finished = threading.Event()
        self._stop: asyncio.Event | None = None

    async def _lifecycle(self) -> None:
        self._began.set()
        try:
            self._stop = asyncio.Event()
            demo = await build_demo(*self.args, **self.kwargs)
            self.demo = demo
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                self.left = await asyncio.shield(demo.stop())
        finally:
            self._finished.set()

    def start(self, timeout: float = 600.0) -> Demo:
        """Build the demo; raises what build_demo raised (after cleaning up), also on Ctrl-C."""
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._lifecycle(), self._loop)
        try:
            deadline = time.monotonic() + timeout
            while not self._ready.wait(0.1):
                if self._main.done():
                    self._main.result()  # raises the build's error
                if time.monotonic() > deadline:
                    raise DemoError(f"the demo did not start within {timeout:g}s")
        except BaseException:
            self.stop()
            raise
        assert self.demo is not None
        return self.demo

    def call(self, fn: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        """Run ``await fn()`` on the demo's loop and return its result."""
        async def run():
            return await fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> list[int]:
        """Stop the demo (or cancel its start-up, which cleans up after itself) and the thread.
        Idempotent; returns pids that survived (normally none)."""
        if self._main is not None and not self._finished.is_set():
            if self._ready.is_set() and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            else:
                self._main.cancel()  # cancels the build task on the demo's loop
            if self._began.wait(1.0):
                self._finished.wait(timeout)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
        return self.left


class SimFleetThread:
    """A SimFleet on its own event loop in a daemon thread, for synchronous code::

        with SimFleetThread(5, tmp) as sim:
            sim.fleet.write_fleet(tmp / "fleet.toml")
            subprocess.run(["pltui", "sweep", ...])
            sim.set_mode("sim002", "refuse")
    """

    def __init__(self, n: int, base_dir: str | os.PathLike, **kwargs: Any):
        self._args = (n, base_dir)
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.fleet: SimFleet | None = None

    def __enter__(self) -> "SimFleetThread":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> SimFleet:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pltui-simfleet", daemon=True)
        self._thread.start()
        try:
            self.fleet = self.call(lambda: SimFleet.start(*self._args, **self._kwargs), timeout=timeout)
        except BaseException:
            self._shutdown()
            raise
        return self.fleet

    def call(self, coro_fn: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        """Run ``await coro_fn()`` on the fleet's loop and return its result."""
        assert self._loop is not None

        async def run():
            return await coro_fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def set_mode(self, name: str, mode: str, **kwargs: Any) -> None:
        self.call(lambda: self.fleet.nodes[name].set_mode(mode, **kwargs))

    def stop(self) -> None:
        if self.fleet is not None and self._loop is not None:
            fleet, self.fleet = self.fleet, None
            self.call(fleet.stop)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            if not self._loop.is_running():
                self._loop.close()
            self._loop = None
            self._thread = None
