"""Building the demo: nodes up, files laid out, the real node monitor bootstrapped over SSH,
trouble planted (`build_demo`)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Callable

from pltui.demo.chaos import Chaos
from pltui.demo.dirs import claim_dir, release_lock
from pltui.demo.layout import (
    BUNDLE_VERSION, CRASHLOOP, GARBAGE, MAX_NODES, MIN_NODES, MONITOR_DEAD, PREFIX, PRESEED_FROM, REFUSE,
    SHARED_KEY_FROM, SILENT, DemoError, Pace, assign_roles, fleet_tables, lay_out_node, write_bundle,
)
from pltui.demo.nodesim import SimFleet, node_names, pid_alive
from pltui.demo.procs import end_reaper, kill_monitor, parent_pid, read_pid, set_subreaper, start_reaper, wait_until
from pltui.demo.running import Demo
from pltui.nodesets import fold


async def build_demo(
    n: int = 24,
    base_dir: str | os.PathLike = "demo",
    *,
    chaos: bool = False,
    trouble: bool = True,
    seed: int | None = None,
    chaos_period: float = 3.0,
    on_chaos: Callable[[str], None] | None = None,
    shared_host_key: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> Demo:
    """Start an `n`-node demo fleet in `base_dir` (new, empty, or an old demo directory).

    trouble=False gives only healthy nodes (benchmarks); chaos=True starts the chaos task
    (one disruption every ~`chaos_period` seconds; `on_chaos` gets a line for each).
    `progress` gets a line now and then while a big fleet bootstraps.
    Cancellation or failure at any point stops whatever was started.
    """
    if not isinstance(n, int) or n < (MIN_NODES if trouble else 1) or n > MAX_NODES:
        low = MIN_NODES if trouble else 1
        raise DemoError(f"the demo needs between {low} and {MAX_NODES} nodes, got {n}")
    if not os.path.exists("/proc/self/stat"):
        raise DemoError("the demo needs Linux: it tracks its processes through /proc")
    started = time.monotonic()
    base_dir = Path(base_dir).expanduser().resolve()
    lock_fd = claim_dir(base_dir)
    names = node_names(PREFIX, n)
    roles = assign_roles(names, trouble)
    pace = Pace.for_nodes(n)
    modes = {name: ("refuse" if role == REFUSE else "silent") for name, role in roles.items()
             if role in (REFUSE, SILENT)}
    timings: dict[str, float] = {}
    sim: SimFleet | None = None
    demo: Demo | None = None
    reaper: subprocess.Popen | None = None
    try:
        t = time.monotonic()
        sim = await SimFleet.start(n, base_dir, prefix=PREFIX, modes=modes,
                                   shared_host_key=n >= SHARED_KEY_FROM if shared_host_key is None else shared_host_key)
        reaper = start_reaper(sim.token)
        timings["nodes"] = time.monotonic() - t
        t = time.monotonic()
        await asyncio.to_thread(_lay_out_all, sim, roles, pace)
        tables = fleet_tables(names, roles, pace)
        fleet_path = sim.write_fleet(base_dir / "fleet.toml", **tables)
        bundle_dir, tarball = await asyncio.to_thread(write_bundle, base_dir / "bundles", pace)
        timings["files"] = time.monotonic() - t
        demo = Demo(base_dir=base_dir, sim=sim, fleet_path=fleet_path, bundle_dir=bundle_dir, bundle_tarball=tarball,
                    roles=roles, pace=pace, _reaper=reaper, _lock_fd=lock_fd)
        t = time.monotonic()
        doomed = await _bootstrap(demo, progress)
        timings["bootstrap"] = time.monotonic() - t
        t = time.monotonic()
        demo._remember(doomed)
        await plant_trouble(demo, doomed)
        if demo._children:
            demo._reaper_task = asyncio.create_task(demo._reap_forever(), name="pltui-demo-reaper")
        await wait_for_service(demo, timeout=5.0)
        timings["trouble"] = time.monotonic() - t
        demo.started_pids()
        demo.timings = timings
        demo.startup_seconds = time.monotonic() - started
        (base_dir / "LEGEND.txt").write_text(legend_text(demo))
        if chaos:
            demo.chaos_log = base_dir / "chaos.log"
            demo._chaos_task = asyncio.create_task(
                Chaos(demo, random.Random(seed), chaos_period, on_chaos).run(), name="pltui-demo-chaos")
        return demo
    except BaseException:
        if demo is not None:
            await asyncio.shield(demo.stop())
        else:
            if sim is not None:
                await asyncio.shield(sim.stop())
            await asyncio.to_thread(end_reaper, reaper)
            release_lock(lock_fd)
        raise


async def _bootstrap(demo: Demo, progress: Callable[[str], None] | None) -> list[int]:
    """Start the real node monitor on every reachable node over SSH (planting the dead monitor
    as soon as its node is done); returns the pids of the monitors killed on purpose."""
    sim, roles, fleet_path = demo.sim, demo.roles, demo.fleet_path
    reachable = [name for name, role in roles.items() if role not in (REFUSE, SILENT)]
    if len(demo.names) >= PRESEED_FROM:
        await asyncio.to_thread(preseed_monitor, sim, fleet_path, reachable)
    doomed: list[int] = []
    planting: list[asyncio.Task] = []

    async def kill_when_serving(root: Path) -> None:
        # once its processes run, the planted dead monitor dies (SIGKILL, as in a crash)
        await wait_until(lambda: all((pid := read_pid(root / "run" / f"{p}.pid")) and pid_alive(pid)
                               for p in ("proxy", "cache")), 3.0)
        pid = kill_monitor(root)
        if pid:
            doomed.append(pid)

    finished: set[str] = set()
    reported = [time.monotonic()]

    def on_progress(event) -> None:
        state = getattr(event, "state", None)
        # planted as soon as bootstrap is done there, while the other nodes still bootstrap
        if state == "done" and roles.get(event.node) == MONITOR_DEAD:
            planting.append(asyncio.ensure_future(kill_when_serving(sim.nodes[event.node].root)))
        if state in ("done", "skipped", "failed", "unreachable") and event.node:
            finished.add(event.node)
            if progress is not None and time.monotonic() - reported[0] >= 3:
                reported[0] = time.monotonic()
                progress(f"node monitors started on {len(finished)}/{len(reachable)} nodes")

    # While the monitors detach, this process is their subreaper: they become our children,
    # so a monitor we kill is reaped at once (see Demo._reap), not whenever PID 1 gets to it.
    subreaper = set_subreaper(True)
    try:
        demo.bootstrap = await bootstrap_nodes(fleet_path, reachable, emit=on_progress)
    except BaseException:
        for task in planting:
            task.cancel()
        raise
    finally:
        if subreaper:
            set_subreaper(False)
    if planting:
        await asyncio.gather(*planting)
    demo._children.update(p for p in demo._pidfile_pids() if parent_pid(p) == os.getpid())
    demo._children.update(p for p in doomed if parent_pid(p) == os.getpid())
    demo._reap()
    failed = {k: v for k, v in demo.bootstrap.items() if not v.startswith("done")}
    if failed:
        raise DemoError("bootstrap failed on " + fold(failed) + ": " + next(iter(failed.values())))
    return doomed


def _lay_out_all(sim: SimFleet, roles: dict[str, str], pace: Pace) -> None:
    for name, node in sim.nodes.items():
        lay_out_node(node.root, roles[name], pace)


async def bootstrap_nodes(fleet_path: Path, names: list[str], emit: Callable | None = None) -> dict[str, str]:
    """Install and start the real node monitor over SSH, as `pltui bootstrap` does.
    Returns node -> "state: message"."""
    from pltui import fleet as fleet_mod
    from pltui.actions.control import Bootstrap
    from pltui.ssh import Transport

    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    try:
        action = Bootstrap(fleet, transport, None, names, emit=emit)
        report = await action.run()
    finally:
        await transport.close()
    return {name: f"{r.state}: {r.message}" for name, r in report.results.items()}


def preseed_monitor(sim: SimFleet, fleet_path: Path, names: list[str]) -> None:
    """Put the very files Bootstrap installs (monitor.sh, spec) in place locally, so that for a
    big fleet Bootstrap only checks them over SSH and starts the monitor (half the commands)."""
    from pltui import fleet as fleet_mod
    from pltui.actions.control import MONITOR, SPEC
    from pltui.monitorspec import monitor_script, render_spec

    fleet = fleet_mod.load(fleet_path)
    files = ((SPEC, render_spec(fleet.service).encode(), 0o600), (MONITOR, monitor_script(), 0o700))
    for name in names:
        for rel, data, mode in files:
            path = sim.nodes[name].root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chmod(path, mode)


async def plant_trouble(demo: Demo, killed: list[int] = ()) -> None:
    """What bootstrap could not do: make sure the planted monitor is dead and gone (not even a
    zombie, which `kill -0` still sees), make a node print garbage."""
    killed = list(killed)
    for name in demo.with_role(MONITOR_DEAD):
        pid = read_pid(demo.root(name) / ".pltui" / "monitor.pid")
        if pid and pid not in killed:
            demo._remember([pid])
            kill_monitor(demo.root(name))
            killed.append(pid)
    for name in demo.with_role(GARBAGE):
        await demo.sim.nodes[name].set_mode("garbage")

    def gone() -> bool:
        demo._reap()
        return not any(os.path.exists(f"/proc/{pid}") for pid in killed)

    await wait_until(gone, 3.0)


async def wait_for_service(demo: Demo, timeout: float) -> bool:
    """Wait (bounded) until every running node's processes are up; True when they all are."""
    expect = []
    for name, role in demo.roles.items():
        if role in (REFUSE, SILENT):
            continue
        for proc in ("proxy", "cache"):
            if role == CRASHLOOP and proc == "cache":
                continue
            expect.append(demo.root(name) / "run" / f"{proc}.pid")

    def up() -> bool:
        return all((pid := read_pid(p)) and pid_alive(pid) for p in expect)

    return await wait_until(up, timeout)


def legend_text(demo: Demo) -> str:
    lines = [f"pltui demo: {len(demo.names)} nodes in {demo.base_dir}", ""]
    lines += demo.legend()
    lines += [
        "",
        f"fleet file: {demo.fleet_path}",
        f"bundle:     {demo.bundle_dir}  (release {BUNDLE_VERSION}; also {demo.bundle_tarball.name})",
        "",
        "try:",
        f"  pltui sweep {demo.fleet_path} --checksums",
        f"  pltui exec {demo.fleet_path} -g alpha -- cat VERSION",
        f"  pltui rollout {demo.fleet_path} {demo.bundle_dir} --yes",
    ]
    return "\n".join(lines) + "\n"
