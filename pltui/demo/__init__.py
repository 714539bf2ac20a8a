"""The demo fleet: N real SSH nodes on loopback with a real service, the real node monitor and
planted trouble, for newcomers (`pltui demo`), tests and benchmarks.

::

    demo = await build_demo(24, tmp_path / "demo")       # nodes up, monitors running
    ... Engine(pltui.fleet.load(demo.fleet_path)) ...
    await demo.stop()                                     # nothing left running

Every node is a `pltui.demo.nodesim.SimNode` (an asyncssh server on 127.0.0.1 with its own port and
host key, listed in DIR/known_hosts; host keys are checked strictly) whose commands run as real
shell commands in the node's service root DIR/nodes/NAME. Each root holds::

    VERSION, PROTOCOL           1.4.2 / 7 (alpha nodes: 1.5.0 / 8)
    bin/proxy, bin/cache        the demo service (pltui/demo_service/*.sh), long-running sh loops
    etc/proxy.conf, cache.conf  their configuration (important files, checksummed)
    logs/*.log                  growing logs, rotated to *.log.1 past a cap
    var/cache/                  the cache's state
    .pltui/                     the REAL node monitor, installed by `pltui.actions.control.Bootstrap`
                                over SSH (the path operators use), supervising proxy and cache

Planted trouble, on fixed nodes (by index; names shown for fewer than 1000 nodes)::

    demo001-003  alpha: release 1.5.0, protocol 8, own track (an isolated cohort; no drift)
    demo004      drift: etc/proxy.conf edited by hand
    demo005      crash loop: bin/cache exits at once (var/cache/CORRUPT); the monitor backs off
    demo006      monitor dead: killed (SIGKILL) after bootstrap; a sweep with heal=monitor revives it
    demo007      refuses connections (sshd down)
    demo008      accepts TCP, never speaks SSH
    demo009      prints garbage for every command
    demo010-     healthy: release 1.4.2, protocol 7

Also written: DIR/fleet.toml (tomli-w), DIR/bundles/demo-1.5.1/ and .tar.gz (a release for
`pltui rollout`), DIR/LEGEND.txt. With ``chaos=True`` a background task keeps killing random
service processes and monitors and takes nodes down and up again (log: DIR/chaos.log).

`Demo.stop` stops the nodes, kills every process carrying the fleet's token
(`SimFleet.stop`), then checks every pid the demo saw (monitors, service processes, anything
marked) by pid and start time, and kills what is left. A small reaper process (no token, its
own session) does the same if the demo's process dies without stopping (SIGKILL, crash).
`DemoThread` runs a demo on its own event loop in a thread (the console's loop never stalls it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

from pltui.nodesets import fold
from pltui.demo.nodesim import MARKER_ENV, SimFleet, kill_pids, marked_pids, node_names, pid_alive

PREFIX = "demo"
FLEET_NAME = "demo"
BASE_VERSION, BASE_PROTOCOL = "1.4.2", "7"
ALPHA_VERSION, ALPHA_PROTOCOL = "1.5.0", "8"
BUNDLE_VERSION, BUNDLE_PROTOCOL = "1.5.1", "8"
MIN_NODES = 10            # 3 alpha + 6 trouble + at least one healthy node
MAX_NODES = 5000
SHARED_KEY_FROM = 200     # from this many nodes on, one host key for all (faster start-up)
PRESEED_FROM = 200       # from this many nodes on, monitor files are put in place before bootstrap
MARKER = ".pltui-demo"    # in a demo directory: marks it as ours, flock()ed while it runs
KEEP_OLD = 3              # default demo directories kept (unlocked ones beyond are removed)

ALPHA, DRIFT, CRASHLOOP, MONITOR_DEAD, REFUSE, SILENT, GARBAGE, HEALTHY = (
    "alpha", "drift", "crashloop", "monitor-dead", "refuse", "silent", "garbage", "healthy")
# role of node index i (1-based); every other node is healthy
ROLE_OF_INDEX = {1: ALPHA, 2: ALPHA, 3: ALPHA, 4: DRIFT, 5: CRASHLOOP, 6: MONITOR_DEAD,
                 7: REFUSE, 8: SILENT, 9: GARBAGE}
TROUBLE = (DRIFT, CRASHLOOP, MONITOR_DEAD, REFUSE, SILENT, GARBAGE)
DESCRIPTION = {
    ALPHA: f"alpha: release {ALPHA_VERSION}, protocol {ALPHA_PROTOCOL}, own track (an isolated cohort)",
    DRIFT: "drift: etc/proxy.conf edited by hand (a checksum sweep shows it)",
    CRASHLOOP: "crash loop: cache exits at once (var/cache/CORRUPT); the monitor backs off",
    MONITOR_DEAD: "monitor dead: killed after bootstrap (heal = monitor restarts it)",
    REFUSE: "refuses connections (sshd down)",
    SILENT: "accepts TCP, never speaks SSH (unreachable)",
    GARBAGE: "prints garbage for every command (garbled)",
    HEALTHY: f"healthy: release {BASE_VERSION}, protocol {BASE_PROTOCOL}",
}
DRIFTED_FILE = "etc/proxy.conf"


class DemoError(Exception):
    """The demo cannot start (bad arguments, a directory in use...): one line for the operator."""


@dataclass(frozen=True)
class Pace:
    """How busy the demo is; slower for big fleets so 1000 nodes stay cheap on one machine."""

    monitor: int      # monitor interval, seconds
    proxy: int        # proxy log period
    cache: int        # cache log period
    sweep: str        # [sweep].interval
    checksums: str    # [sweep].checksum_interval
    log_max: int      # bytes per log file before rotation

    @classmethod
    def for_nodes(cls, n: int) -> "Pace":
        if n <= 50:
            return cls(2, 2, 5, "15s", "2m", 64 * 1024)
        if n <= 250:
            return cls(5, 5, 10, "30s", "5m", 32 * 1024)
        return cls(15, 20, 30, "60s", "10m", 16 * 1024)


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
                pid = _read_pid(pidfile)
                if pid:
                    pids.append(pid)
        return pids

    def _remember(self, pids) -> None:
        for pid in pids:
            if pid not in self._seen:
                start = _start_time(pid)
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
        left = await asyncio.to_thread(_kill_seen, self._seen)
        self._reap()
        _release(self._lock_fd)
        self._lock_fd = None
        await asyncio.to_thread(_end_reaper, self._reaper)
        self._reaper = None
        return left


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() and int(text[0]) > 1 else None


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _set_subreaper(on: bool) -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER) on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_seen(seen: dict[int, int | None]) -> list[int]:
    """Kill the pids still alive that are the very processes we saw (same start time)."""
    same = [pid for pid, start in seen.items() if pid_alive(pid) and _start_time(pid) == start]
    return kill_pids(same, grace=1.0) if same else []


# --------------------------------------------------------------------------------------------
# The directory


def default_dir(state_root: Path) -> Path:
    """A fresh directory under STATE/demo/ (older unused ones beyond the last few are removed,
    with the sweep history pltui kept for them)."""
    parent = state_root / "demo"
    parent.mkdir(parents=True, exist_ok=True)
    prune_old(parent, state_root=state_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise DemoError(f"cannot make a fresh demo directory in {parent}")


def prune_old(parent: Path, keep: int = KEEP_OLD, *, state_root: Path | None = None) -> None:
    """Remove old demo directories under `parent` (ours, by marker, and not in use), and with
    `state_root` also the fleet state (history database) pltui kept for each."""
    from pltui.paths import fleet_dir

    dirs = sorted((p for p in parent.iterdir() if (p / MARKER).is_file()), key=lambda p: p.name)
    for path in dirs[:-keep] if keep else dirs:
        fd = _try_lock(path / MARKER)
        if fd is None:
            continue  # a running demo
        try:
            if state_root is not None:
                with contextlib.suppress(OSError):
                    shutil.rmtree(fleet_dir(state_root, FLEET_NAME, (path / "fleet.toml").resolve()),
                                  ignore_errors=True)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            _release(fd)


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def claim_dir(base_dir: Path) -> int:
    """Make `base_dir` ours for this run: absent, empty, or an old demo directory not in use
    (whose contents are then removed). Returns the fd holding its lock."""
    base_dir.mkdir(parents=True, exist_ok=True)
    marker = base_dir / MARKER
    entries = [p for p in base_dir.iterdir()]
    if entries and not marker.is_file():
        raise DemoError(f"{base_dir} is not empty and not a demo directory; give a new or empty --dir")
    fd = _try_lock(marker)
    if fd is None:
        raise DemoError(f"{base_dir} is in use by another running demo")
    for entry in entries:
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    os.ftruncate(fd, 0)
    os.write(fd, f"pltui demo, pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd


# --------------------------------------------------------------------------------------------
# The reaper: kills the fleet's processes if this process dies without stopping them


_REAPER = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
token = sys.argv[1].encode()
needle = sys.argv[2].encode() + b"=" + token
try:
    sys.stdin.buffer.read()   # EOF: the demo process stopped (or died)
except Exception:
    pass
me = os.getpid()
for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found += 1
            try:
                os.kill(int(entry), sig)
            except OSError:
                pass
    if not found:
        break
    time.sleep(0.5)
"""


def start_reaper(token: str) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-I", "-c", _REAPER, token, MARKER_ENV], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
    except OSError:
        return None


def _end_reaper(reaper: subprocess.Popen | None) -> None:
    if reaper is None:
        return
    with contextlib.suppress(OSError):
        reaper.stdin.close()
    try:
        reaper.wait(5)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait(5)


# --------------------------------------------------------------------------------------------
# Node contents


def _program(name: str, version: str) -> bytes:
    text = resources.files("pltui.demo_service").joinpath(f"{name}.sh").read_text("utf-8")
    return text.replace("@VERSION@", version).encode()


def release_files(version: str, protocol: str, pace: Pace) -> dict[str, tuple[bytes, int]]:
    """The files of one release of the demo service: relative path -> (content, mode)."""
    http2 = "off" if version == BASE_VERSION else "on"  # what the newer releases bring
    proxy_conf = (f"# demo proxy {version}\nlisten = 8080\nupstream = origin.demo.invalid:80\n"
                  f"http2 = {http2}\nperiod = {pace.proxy}\nlog_max = {pace.log_max}\n")
    cache_conf = f"# demo cache {version}\nsize_mb = 256\nperiod = {pace.cache}\nlog_max = {pace.log_max}\n"
    return {
        "VERSION": (f"{version}\n".encode(), 0o644),
        "PROTOCOL": (f"{protocol}\n".encode(), 0o644),
        "bin/proxy": (_program("proxy", version), 0o755),
        "bin/cache": (_program("cache", version), 0o755),
        "etc/proxy.conf": (proxy_conf.encode(), 0o644),
        "etc/cache.conf": (cache_conf.encode(), 0o644),
    }


def _write_files(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for rel, (data, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)


def lay_out_node(root: Path, role: str, pace: Pace) -> None:
    """A node's service root before the monitor comes: the release, logs, state, trouble."""
    alpha = role == ALPHA
    files = release_files(ALPHA_VERSION if alpha else BASE_VERSION, ALPHA_PROTOCOL if alpha else BASE_PROTOCOL, pace)
    _write_files(root, files)
    for sub in ("logs", "run", "var/cache"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if role == DRIFT:
        conf = root / DRIFTED_FILE
        conf.write_text(conf.read_text().replace("upstream = origin.demo.invalid:80",
                                                 "upstream = 10.9.8.7:80   # hand-edited during incident 4711"))
    if role == CRASHLOOP:
        (root / "var/cache/CORRUPT").write_text("index checksum mismatch at block 4711\n")


def service_spec(pace: Pace) -> dict[str, Any]:
    return {
        "version_file": "VERSION",
        "protocol_file": "PROTOCOL",
        "important": ["VERSION", "PROTOCOL", "bin/*", "etc/*.conf"],
        "logs": ["logs/*.log", "logs/*.log.1"],
        "state": ["var", "etc"],
        "monitor_interval": f"{pace.monitor}s",
        "process": [
            {"name": "proxy", "start": "bin/proxy --config etc/proxy.conf", "pidfile": "run/proxy.pid",
             "reload": "kill -HUP $(cat run/proxy.pid)", "stop_timeout": "5s"},
            {"name": "cache", "start": "bin/cache --dir var/cache", "pidfile": "run/cache.pid",
             "stop_timeout": "5s"},
        ],
    }


def write_bundle(bundles: Path, pace: Pace) -> tuple[Path, Path]:
    """The next release as a directory and as a .tar.gz (top directory holding VERSION)."""
    name = f"demo-{BUNDLE_VERSION}"
    directory = bundles / name
    files = release_files(BUNDLE_VERSION, BUNDLE_PROTOCOL, pace)
    _write_files(directory, files)
    tarball = bundles / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(directory, arcname=name)
    return directory, tarball


def fleet_tables(names: list[str], roles: dict[str, str], pace: Pace) -> dict[str, Any]:
    """write_fleet keyword arguments: groups, tracks, service, sweep, rollout, ssh settings."""
    alpha = [n for n in names if roles[n] == ALPHA]
    trouble = [n for n in names if roles[n] in TROUBLE]
    groups = {}
    if alpha:
        groups["alpha"] = fold(alpha)
    groups["production"] = "@all!@alpha" if alpha else "@all"
    if trouble:
        groups["trouble"] = fold(trouble)
    stages = []
    if alpha:
        stages.append({"name": "alpha", "group": "alpha", "batch": "100%", "parallel": 4, "max_fail": 0,
                       "pause": False})
    stages.append({"name": "production", "group": "production", "batch": [1, "25%", "100%"],
                   "parallel": 16, "max_fail": len(trouble), "pause": True})
    return {
        "name": FLEET_NAME,
        "service": service_spec(pace),
        "groups": groups,
        "tracks": ({"alpha": ["alpha"], "production": ["production"]} if alpha else {"production": ["production"]}),
        "sweep": {"interval": pace.sweep, "checksum_interval": pace.checksums, "quorum": 0.5, "heal": "monitor"},
        "rollout": {"health_timeout": "20s", "keep_releases": 2, "stage": stages},
        "ssh_overrides": {"connect_timeout": "3s", "command_timeout": "15s"},
    }


def assign_roles(names: list[str], trouble: bool) -> dict[str, str]:
    if not trouble:
        return {n: HEALTHY for n in names}
    return {n: ROLE_OF_INDEX.get(i, HEALTHY) for i, n in enumerate(names, 1)}


# --------------------------------------------------------------------------------------------
# Building


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
        reachable = [name for name, role in roles.items() if role not in (REFUSE, SILENT)]
        if n >= PRESEED_FROM:
            await asyncio.to_thread(preseed_monitor, sim, fleet_path, reachable)
        doomed: list[int] = []
        planting: list[asyncio.Task] = []

        async def kill_when_serving(root: Path) -> None:
            # once its processes run, the planted dead monitor dies (SIGKILL, as in a crash)
            await _wait(lambda: all((pid := _read_pid(root / "run" / f"{p}.pid")) and pid_alive(pid)
                                    for p in ("proxy", "cache")), 3.0)
            pid = _kill_monitor(root)
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
        subreaper = _set_subreaper(True)
        try:
            demo.bootstrap = await bootstrap_nodes(fleet_path, reachable, emit=on_progress)
        except BaseException:
            for task in planting:
                task.cancel()
            raise
        finally:
            if subreaper:
                _set_subreaper(False)
        if planting:
            await asyncio.gather(*planting)
        demo._children.update(p for p in demo._pidfile_pids() if _parent(p) == os.getpid())
        demo._children.update(p for p in doomed if _parent(p) == os.getpid())
        demo._reap()
        failed = {k: v for k, v in demo.bootstrap.items() if not v.startswith("done")}
        if failed:
            raise DemoError("bootstrap failed on " + fold(failed) + ": " + next(iter(failed.values())))
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
            await asyncio.to_thread(_end_reaper, reaper)
            _release(lock_fd)
        raise


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


def _kill_monitor(root: Path) -> int | None:
    """SIGKILL a node's monitor (as a crash would: its lock and pid file stay); returns its pid."""
    pid = _read_pid(root / ".pltui" / "monitor.pid")
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid
    return None


async def plant_trouble(demo: Demo, killed: list[int] = ()) -> None:
    """What bootstrap could not do: make sure the planted monitor is dead and gone (not even a
    zombie, which `kill -0` still sees), make a node print garbage."""
    killed = list(killed)
    for name in demo.with_role(MONITOR_DEAD):
        pid = _read_pid(demo.root(name) / ".pltui" / "monitor.pid")
        if pid and pid not in killed:
            demo._remember([pid])
            _kill_monitor(demo.root(name))
            killed.append(pid)
    for name in demo.with_role(GARBAGE):
        await demo.sim.nodes[name].set_mode("garbage")

    def gone() -> bool:
        demo._reap()
        return not any(os.path.exists(f"/proc/{pid}") for pid in killed)

    await _wait(gone, 3.0)


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
        return all((pid := _read_pid(p)) and pid_alive(pid) for p in expect)

    return await _wait(up, timeout)


async def _wait(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


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


# --------------------------------------------------------------------------------------------
# Chaos


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
            pid = _read_pid(self.demo.root(name) / "run" / f"{proc}.pid")
            if pid and pid_alive(pid):
                self.demo._remember([pid])
                _kill_group(pid)
                self.log(f"killed {proc} (pid {pid}) on {name}")
        elif roll < 0.75:
            pid = _read_pid(self.demo.root(name) / ".pltui" / "monitor.pid")
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


def _kill_group(pid: int) -> None:
    """SIGKILL a service process (and its group, when it leads one: the monitor uses setsid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# For synchronous callers (the console, subprocess-driven tests)


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
