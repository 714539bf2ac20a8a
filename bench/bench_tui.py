"""Console benchmark: 2,000 nodes streaming sweep results into the TUI on a real terminal (a pty).

The console runs in a child process on a pseudo-terminal (Textual's real Linux driver, 256
colours, 160x50 unless told otherwise); this process plays the terminal: it reads everything the
console draws and types cursor keys. Inside the child, NodeUpdated events go through the real
engine's emit path (`Engine.emit`, as the sweep does, statuses stored first) at a sweep-like rate,
in passes of all nodes framed by SweepStarted / SweepFinished; then nothing happens for a while.

Figures:
  - CPU of the console process (all threads) while a sweep streams, and while idle
  - key-to-screen latency, p50/p95/max: from the key event reaching the app to the next screen
    update written out (measured in the child), and from the key written to the pty to the first
    bytes drawn back (measured here; idle phase only, where nothing else draws)
  - flushes per second and bytes drawn per second

    python bench/bench_tui.py                      # 2,000 nodes, 400 updates/s, 12 s + 8 s
    python bench/bench_tui.py --nodes 5000 --rate 1000

Real-sweep mode (`--real-sweep N`): the console opens on a real fleet of N in-process asyncssh
nodes served by a separate process (bench_sweep.Nodes), with a fresh state directory, and its own
engine sweeps them in the console's event loop: the cold sweep (handshakes; with no stored
checksums the engine's first sweep is a checksum sweep, as in a real first start), then idle,
then warm sweeps (pooled connections) started with the action the `s` key runs. Cursor keys are
typed throughout; each key is timed from the moment it is written to the pty to the first
screen update after the app handled it (both processes read CLOCK_MONOTONIC), and to the first
bytes read back after that update; the table gives p50/p95/max and console CPU per phase.

Per phase it also gives the event-loop thread's CPU and its run-queue wait (runnable, no CPU:
/proc schedstat), the node server's CPU (it shares this machine: on a real fleet that work is
remote) and the longest garbage collection. Diagnosis: --stalls MS lists event-loop callbacks
longer than MS, --py-spy FILE records the cold sweep, --gc-freeze tries gc.freeze() at sweeps.

    python bench/bench_tui.py --real-sweep 1000
    python bench/bench_tui.py --real-sweep 200 --stalls 30
    python bench/bench_tui.py --real-sweep 1000 --console-nice -10   # (root) the console not starved by the
                                                                     # node server nor other load: its own work
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path


def write_fleet(path: Path, n: int) -> Path:
    width = len(str(n))
    names = [f"n{i:0{width}d}" for i in range(1, n + 1)]
    lines = ["[fleet]", 'name = "bench"', f'nodes = ["n[{1:0{width}d}-{n:0{width}d}]"]', "",
             "[ssh]", 'known_hosts = "/dev/null"', "",
             "[groups]", f'alpha = "n[{1:0{width}d}-{20:0{width}d}]"', 'production = "@all!@alpha"', "",
             "[tracks]", 'alpha = ["alpha"]', 'production = ["production"]', "",
             "[service]", 'important = ["bin/*"]', "",
             "[[service.process]]", 'name = "proxy"', 'start = "bin/proxy"', 'pidfile = "run/proxy.pid"', "",
             "[[service.process]]", 'name = "cache"', 'start = "bin/cache"', 'pidfile = "run/cache.pid"', ""]
    for name in names:
        lines += [f'[node."{name}"]', 'host = "127.0.0.1"', "port = 9", ""]
    path.write_text("\n".join(lines))
    return path


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


# ----------------------------------------------------------------------------------------------
# The child: the console on the pty, fed by the engine's emit path


def child(args) -> None:
    from textual import events

    from pltui.fleet import load
    from pltui.model import NodeStatus, NodeUpdated, ProcStatus, SSHState, SweepFinished, SweepStarted
    from pltui.sweep import Engine
    from pltui.tui.app import ConsoleApp

    out_dir = Path(args.child)
    engine = Engine(load(out_dir / "fleet.toml"), state_dir=out_dir / "state")
    names = list(engine.nodes)
    result: dict = {"nodes": len(names), "latency": {"sweep": [], "idle": []}, "phases": {}}
    phase_file = out_dir / "phase"
    phase = {"name": "startup"}

    class BenchApp(ConsoleApp):
        pending_key: float | None = None
        key_started: float | None = None
        drawn = 0

        async def on_event(self, event) -> None:
            # a key reaches the app twice: from the driver, then bubbling back from the focused
            # widget (`is_forwarded`); time it from the first
            if isinstance(event, events.Key) and not event.is_forwarded:
                started = time.perf_counter()
                await super().on_event(event)
                self.pending_key = started
                return
            await super().on_event(event)

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is None:
                return
            self.drawn += 1
            if self.pending_key is not None and phase["name"] in ("sweep", "idle"):
                result["latency"][phase["name"]].append(time.perf_counter() - self.pending_key)
                self.pending_key = None

    app = BenchApp(engine, start_engine=False, config_dir=out_dir / "config")

    def status(i: int, name: str, round_: int) -> NodeStatus:
        kind = (i + round_) % 17
        if kind == 5:
            return NodeStatus(node=name, ssh=SSHState.TIMEOUT, error="command did not finish within 30s",
                              observed=time.time())
        procs = [ProcStatus("proxy", True, 1000 + i, "running", 0), ProcStatus("cache", kind != 3, None,
                                                                             "running" if kind != 3 else "backoff", 2)]
        return NodeStatus(node=name, ssh=SSHState.OK, observed=time.time(), latency_ms=5 + (i * 7 + round_ * 3) % 90,
                          monitor="alive", processes=procs, version="2.4.1" if kind != 7 else "2.3.9",
                          protocol="7" if kind != 7 else "6", load=((i + round_) % 40) / 10,
                          disk_free=(20 + i % 30) << 30, log_bytes=(i % 500) << 20)

    async def phase_mark(name: str) -> None:
        now = time.perf_counter(), time.process_time(), app.flushes, app.drawn
        previous = phase.get("mark")
        if previous is not None:
            wall, cpu, flushes, drawn = (a - b for a, b in zip(now, previous))
            result["phases"][phase["name"]] = {"wall": wall, "cpu": cpu, "flushes": flushes, "draws": drawn}
        phase["name"], phase["mark"] = name, now
        phase_file.write_text(name)

    async def feeder() -> None:
        await asyncio.sleep(args.startup)
        await phase_mark("sweep")
        per_tick = max(1, int(args.rate * 0.02))
        sent = 0
        round_ = 0
        deadline = time.perf_counter() + args.sweep
        while time.perf_counter() < deadline:
            round_ += 1
            engine.emit(SweepStarted(sweep_id=round_, checksums=False, total=len(names)))
            engine.sweeping, engine.progress = True, (0, len(names))
            for start in range(0, len(names), per_tick):
                tick = time.perf_counter()
                for i in range(start, min(start + per_tick, len(names))):
                    st = status(i, names[i], round_)
                    engine.statuses[names[i]] = st           # as the engine does, then emit
                    engine.emit(NodeUpdated(status=st))
                    sent += 1
                engine.progress = (min(start + per_tick, len(names)), len(names))
                await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - tick)))
                if time.perf_counter() >= deadline:
                    break
            engine.sweeping = False
            engine.last_sweep_end = time.time()
            engine.emit(SweepFinished(sweep_id=round_, checksums=False, summary={"health": {}}))
        result["events"] = sent
        await phase_mark("idle")
        await asyncio.sleep(args.idle)
        await phase_mark("quiet")                            # no keys, nothing arriving
        await asyncio.sleep(args.quiet)
        await phase_mark("done")
        (out_dir / "result.json").write_text(json.dumps(result))
        app.exit()

    async def main() -> None:
        async def start_feeding() -> None:
            app.run_worker(feeder(), name="bench-feeder")

        app.call_after_refresh(lambda: asyncio.ensure_future(start_feeding()))
        try:
            await app.run_async(mouse=False)
        finally:
            await engine.close()

    try:
        if os.environ.get("PLTUI_BENCH_PROFILE"):            # cProfile the console into this file
            import cProfile

            cProfile.runctx("asyncio.run(main())", globals(), {"asyncio": asyncio, "main": main},
                            os.environ["PLTUI_BENCH_PROFILE"])
        else:
            asyncio.run(main())
    except BaseException:
        import traceback

        (out_dir / "error").write_text(traceback.format_exc())
        raise


# ----------------------------------------------------------------------------------------------
# The parent: a terminal that reads everything and types keys


def parent(args) -> int:
    with tempfile.TemporaryDirectory(prefix="pltui-bench-tui-") as tmp:
        tmp_path = Path(tmp)
        write_fleet(tmp_path / "fleet.toml", args.nodes)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", args.height, args.width, 0, 0))
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="", XDG_CONFIG_HOME=str(tmp_path / "xdg"),
                   TEXTUAL_ANIMATIONS="none")
        cmd = [sys.executable, __file__, "--child", str(tmp_path), "--rate", str(args.rate), "--sweep", str(args.sweep),
               "--idle", str(args.idle), "--quiet", str(args.quiet), "--startup", str(args.startup)]
        # Textual draws on stderr: all three go to the terminal
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        drawn = 0
        pty_latency: list[float] = []
        started = time.perf_counter()
        next_key = 0.0
        key_sent: float | None = None
        last_output = time.perf_counter()
        up = True
        phase_file = tmp_path / "phase"
        current = "startup"
        next_phase_check = 0.0
        try:
            while proc.poll() is None:
                ready, _, _ = select.select([master], [], [], 0.01)
                now = time.perf_counter()
                if ready:
                    try:
                        data = os.read(master, 1 << 16)
                    except OSError:
                        break
                    drawn += len(data)
                    if key_sent is not None:
                        pty_latency.append(now - key_sent)
                        key_sent = None
                    last_output = now
                if now >= next_phase_check:
                    next_phase_check = now + 0.05
                    try:
                        current = phase_file.read_text() or current
                    except OSError:
                        pass
                if current in ("sweep", "idle") and now >= next_key:
                    quiet = now - last_output > 0.05     # nothing else drawing: a clean measure
                    os.write(master, b"j" if up else b"k")
                    up = not up
                    key_sent = now if (quiet and current == "idle") else None
                    next_key = now + args.key_interval
                if now - started > args.startup + args.sweep + args.idle + args.quiet + 120:
                    raise TimeoutError("the console did not finish")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            os.close(master)
        result_file = tmp_path / "result.json"
        if not result_file.exists():
            print("the console child produced no result:", file=sys.stderr)
            error = tmp_path / "error"
            print(error.read_text()[-3000:] if error.exists() else "(no traceback)", file=sys.stderr)
            return 1
        result = json.loads(result_file.read_text())
    report(args, result, pty_latency, drawn, time.perf_counter() - started)
    return 0


def report(args, result: dict, pty_latency: list[float], drawn: int, wall: float) -> None:
    print(f"pltui console benchmark: {result['nodes']} nodes, terminal {args.width}x{args.height}, "
          f"{args.rate} updates/s for {args.sweep:g} s, {args.idle:g} s idle with keys, {args.quiet:g} s quiet")
    for name in ("sweep", "idle", "quiet"):
        p = result["phases"].get(name)
        if not p:
            continue
        cpu = 100 * p["cpu"] / p["wall"]
        print(f"  {name:>5}: console CPU {cpu:5.1f}% of one core   ({p['cpu']:.2f} s CPU in {p['wall']:.1f} s; "
              f"{p['flushes'] / p['wall']:.1f} flushes/s, {p['draws'] / p['wall']:.1f} screen updates/s)")
    if "events" in result:
        print(f"  events: {result['events']} NodeUpdated ({result['events'] / result['phases']['sweep']['wall']:.0f}/s)")
    for name in ("sweep", "idle"):
        lat = [v * 1000 for v in result["latency"][name]]
        if lat:
            print(f"  key-to-screen ({name}, in the app): p50 {percentile(lat, 50):6.1f} ms   "
                  f"p95 {percentile(lat, 95):6.1f} ms   max {max(lat):6.1f} ms   ({len(lat)} keys)")
    if pty_latency:
        lat = [v * 1000 for v in pty_latency]
        print(f"  key-to-screen (idle, through the pty): p50 {percentile(lat, 50):6.1f} ms   "
              f"p95 {percentile(lat, 95):6.1f} ms   ({len(lat)} keys)")
    print(f"  drawn: {drawn / 1024:.0f} KiB to the terminal in {wall:.1f} s")
    sweep_lat = [v * 1000 for v in result["latency"]["sweep"]]
    idle = result["phases"].get("quiet")
    verdict = []
    if sweep_lat:
        verdict.append(f"p95 while sweeping {'<' if percentile(sweep_lat, 95) < 100 else '>='} 100 ms")
    if idle:
        verdict.append(f"idle CPU {100 * idle['cpu'] / idle['wall']:.1f}%")
    print("  target: p95 < 100 ms, idle CPU near zero -> " + ", ".join(verdict))


# ----------------------------------------------------------------------------------------------
# Real-sweep mode: the console's own engine sweeps a real (simulated, separate-process) fleet

KEY_PHASES = ("cold", "settle", "idle", "warm")     # the parent types keys in these phases


def child_real(args) -> None:
    from textual import events

    from pltui.fleet import load
    from pltui.model import SSHState, SweepFinished, SweepStarted
    from pltui.sweep import Engine
    from pltui.tui.app import ConsoleApp

    if args.console_nice:
        # The console is alone in its session; with autogroup scheduling (sched_autogroup_enabled)
        # CPU is shared fairly between sessions whatever a process's nice value, so set the
        # session's nice as well. Before any thread starts: threads inherit the nice value.
        os.setpriority(os.PRIO_PROCESS, 0, args.console_nice)
        try:
            Path("/proc/self/autogroup").write_text(str(args.console_nice))
        except OSError:
            pass
    out_dir = Path(args.child)
    engine = Engine(load(args.fleet), state_dir=out_dir / "state")
    result: dict = {"nodes": len(engine.nodes), "timeline": [], "segments": [], "sweeps": [], "keys": []}
    phase_file = out_dir / "phase"
    keys = result["keys"]                                   # [key, t_app (on_event), t_display or None]
    sweep_done = asyncio.Event()

    class BenchApp(ConsoleApp):
        pending: list[int] = []
        drawn = 0

        async def on_event(self, event) -> None:
            if isinstance(event, events.Key) and not event.is_forwarded:   # not its bubbling back
                t_app = time.perf_counter()
                await super().on_event(event)
                keys.append([event.key, t_app, None])
                self.pending.append(len(keys) - 1)
                return
            await super().on_event(event)

        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is None or self._batch_count:
                return
            self.drawn += 1
            if self.pending:
                now = time.perf_counter()
                for i in self.pending:
                    keys[i][2] = now
                self.pending.clear()

    app = BenchApp(engine, config_dir=out_dir / "config", state_dir=str(out_dir / "state"))
    if engine.transport.nofile_warning:
        app.add_startup_note("warning", engine.transport.nofile_warning)
    mark_state: dict = {"name": "startup", "mark": None}
    gc_stats = {"time": 0.0, "max": 0.0, "started": 0.0, "cpu": 0.0}
    collections: list = result.setdefault("gc", [])         # full or slow (> 5 ms) collections

    def gc_timer(stage: str, info: dict) -> None:
        if stage == "start":
            gc_stats["started"], gc_stats["cpu"] = time.perf_counter(), time.thread_time()
            return
        took = time.perf_counter() - gc_stats["started"]
        gc_stats["time"] += took
        gc_stats["max"] = max(gc_stats["max"], took)
        if info.get("generation") == 2 or took > 0.005:
            collections.append((gc_stats["started"], info.get("generation"), took,
                                time.thread_time() - gc_stats["cpu"], info.get("collected", 0)))

    gc.callbacks.append(gc_timer)
    loop_thread = threading.get_native_id()

    def run_queue_wait() -> float:
        """Seconds the event-loop thread was runnable but waiting for a CPU (/proc schedstat)."""
        try:
            with open(f"/proc/self/task/{loop_thread}/schedstat") as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    stalls: list = []
    if args.stalls:
        install_stall_probe(args.stalls / 1000, stalls)

    def mark(name: str) -> None:
        now = (time.perf_counter(), time.process_time(), time.thread_time(), app.flushes, app.drawn,
               run_queue_wait(), gc_stats["time"])
        previous = mark_state["mark"]
        if previous is not None:
            wall, cpu, loop_cpu, flushes, drawn, runq, gc_time = (a - b for a, b in zip(now, previous))
            result["segments"].append({"phase": mark_state["name"], "start": previous[0], "end": now[0], "wall": wall,
                                       "cpu": cpu, "loop_cpu": loop_cpu, "flushes": flushes, "draws": drawn,
                                       "runq": runq, "gc": gc_time, "gc_max": gc_stats["max"]})
            gc_stats["max"] = 0.0
        mark_state["name"], mark_state["mark"] = name, now
        result["timeline"].append([name, now[0]])
        result.setdefault("objects", []).append([name, len(gc.get_objects()) + gc.get_freeze_count()])
        phase_file.write_text(name)

    emit = engine.emit
    sweep_info: dict = {}

    def bench_emit(event) -> None:                          # phases follow the engine's own events
        emit(event)
        if args.gc_freeze and isinstance(event, (SweepStarted, SweepFinished)):
            gc.freeze()                                     # experiment: older objects out of full collections
        if isinstance(event, SweepStarted):
            sweep_info.update(checksums=event.checksums, started=time.perf_counter())
            mark("cold" if not result["sweeps"] else "warm")
        elif isinstance(event, SweepFinished):
            statuses = engine.statuses.values()
            result["sweeps"].append({
                "phase": mark_state["name"], "checksums": event.checksums,
                "wall": time.perf_counter() - sweep_info.get("started", time.perf_counter()),
                "ok": sum(s.ssh == SSHState.OK for s in statuses),
                "errors": sorted({s.error for s in statuses if s.error})[:3]})
            mark("settle")
            sweep_done.set()

    engine.emit = bench_emit

    async def controller() -> None:
        for i in range(1 + args.warm_sweeps):
            if i:
                app.sweep_now(False)                        # the `s` key's action
            await asyncio.wait_for(sweep_done.wait(), args.sweep_timeout)
            sweep_done.clear()
            await asyncio.sleep(args.settle)
            if i == 0:
                mark("idle")
                await asyncio.sleep(args.idle)
        mark("quiet")                                       # no keys, no sweep
        await asyncio.sleep(args.quiet)
        mark("done")
        result["stalls"] = stalls
        (out_dir / "result.json").write_text(json.dumps(result))
        app.exit()

    async def main() -> None:
        mark("startup")
        app.call_after_refresh(lambda: app.run_worker(controller(), name="bench-controller"))
        try:
            await app.run_async(mouse=False)
        finally:
            await engine.close()

    try:
        asyncio.run(main())
    except BaseException:
        import traceback

        (out_dir / "error").write_text(traceback.format_exc())
        raise


def install_stall_probe(threshold: float, stalls: list) -> None:
    """Time every event-loop callback; keep those longer than `threshold` seconds as
    (start, wall, cpu of this thread, what ran): a Task step is named by its coroutine."""
    run = asyncio.events.Handle._run

    def describe(handle) -> str:
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            frame = getattr(coro, "cr_frame", None)
            where = f" @{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}" if frame else ""
            return f"task {getattr(coro, '__qualname__', coro)}{where}"
        return getattr(callback, "__qualname__", None) or repr(callback)[:120]

    def timed_run(self) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        run(self)
        took = time.perf_counter() - t0
        if took >= threshold:
            stalls.append((t0, took, time.thread_time() - c0, describe(self)))

    asyncio.events.Handle._run = timed_run


def proc_cpu(pid: int) -> float | None:
    """CPU seconds of a process and its reaped children (utime + stime + cutime + cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def parent_real(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_sweep                                    # the separate-process node server

    with tempfile.TemporaryDirectory(prefix="pltui-bench-tui-real-") as tmp:
        tmp_path = Path(tmp)
        console_dir, sim_dir = tmp_path / "console", tmp_path / "sim"
        console_dir.mkdir()
        sim_dir.mkdir()
        t0 = time.perf_counter()
        nodes = bench_sweep.Nodes(args.real_sweep, sim_dir, sshd_max=0)
        with nodes as fleet_path:
            server = nodes.child.pid
            print(f"{args.real_sweep} asyncssh nodes up in {time.perf_counter() - t0:.1f} s (server pid {server}); "
                  f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            run = pty_session(args, tmp_path, console_dir, fleet_path, server)
        if run is None:
            return 1
    report_real(args, *run)
    return 0


def pty_session(args, tmp_path: Path, console_dir: Path, fleet_path: Path, server: int):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", args.height, args.width, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLORTERM="", XDG_CONFIG_HOME=str(tmp_path / "xdg"),
               TEXTUAL_ANIMATIONS="none")
    cmd = [sys.executable, __file__, "--child", str(console_dir), "--fleet", str(fleet_path),
           "--real-sweep", str(args.real_sweep), "--warm-sweeps", str(args.warm_sweeps), "--idle", str(args.idle),
           "--quiet", str(args.quiet), "--settle", str(args.settle), "--sweep-timeout", str(args.sweep_timeout),
           "--stalls", str(args.stalls), "--console-nice", str(args.console_nice)] + ["--gc-freeze"] * args.gc_freeze
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    spy: subprocess.Popen | None = None                   # py-spy on the console during the cold sweep
    drawn = 0
    reads: list[float] = []                                # when each chunk of output was read
    sends: list[tuple[str, float]] = []                    # each key typed, and when
    marks: list[tuple[str, float, float | None, tuple]] = []   # phase seen here: t, node-server CPU, load
    started = time.perf_counter()
    next_key, up = 0.0, True
    current, next_phase_check = "", 0.0
    phase_file = console_dir / "phase"
    try:
        while proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 0.01)
            now = time.perf_counter()
            if ready:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:
                    break
                drawn += len(data)
                reads.append(now)
            if now >= next_phase_check:
                next_phase_check = now + 0.05
                try:
                    seen = phase_file.read_text()
                except OSError:
                    seen = ""
                if seen and seen != current:
                    current = seen
                    marks.append((current, now, proc_cpu(server), os.getloadavg()))
                    if args.py_spy and current == "cold" and spy is None:
                        spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--rate", "250",
                                                "--nonblocking", "--threads", "--format", "raw",
                                                "--output", args.py_spy], stdout=subprocess.DEVNULL)
                    elif spy is not None and spy.poll() is None and current != "cold":
                        spy.send_signal(signal.SIGINT)
            if current in KEY_PHASES and now >= next_key:
                key = "j" if up else "k"
                os.write(master, key.encode())
                sends.append((key, time.perf_counter()))
                up = not up
                next_key = now + args.key_interval
            if now - started > args.max_wall:
                print(f"the console did not finish within {args.max_wall:g} s", file=sys.stderr)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        os.close(master)
        if spy is not None:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    marks.append(("end", time.perf_counter(), proc_cpu(server), os.getloadavg()))
    result_file = console_dir / "result.json"
    if not result_file.exists():
        print("the console child produced no result:", file=sys.stderr)
        error = console_dir / "error"
        print(error.read_text()[-3000:] if error.exists() else "(no traceback)", file=sys.stderr)
        return None
    return json.loads(result_file.read_text()), sends, reads, marks, drawn, time.perf_counter() - started


def report_real(args, result: dict, sends: list, reads: list[float], marks: list, drawn: int, wall: float) -> None:
    import bisect

    timeline = result["timeline"]
    starts = [t for _, t in timeline]

    def phase_at(t: float) -> str:
        i = bisect.bisect_right(starts, t) - 1
        return timeline[i][0] if i >= 0 else "startup"

    # Key i typed here is the i-th Key event the app saw (checked: j/k alternate)
    lat: dict[str, dict[str, list[float]]] = {}
    mismatched = unanswered = 0
    for (key, t_sent), (seen, t_app, t_display) in zip(sends, result["keys"]):
        if key != seen:
            mismatched += 1
            break
        phase = phase_at(t_sent)
        bucket = lat.setdefault(phase, {"app": [], "pty": [], "queued": []})
        if t_display is None:
            unanswered += 1
            continue
        i = bisect.bisect_left(reads, t_display)
        bucket["app"].append((t_display - t_sent) * 1000)
        bucket["queued"].append((t_app - t_sent) * 1000)
        if i < len(reads):
            bucket["pty"].append((reads[i] - t_sent) * 1000)

    # Phases: console CPU from the child's marks (summed over segments of the same name)
    seg: dict[str, dict[str, float]] = {}
    for s in result["segments"]:
        agg = seg.setdefault(s["phase"], {"wall": 0.0, "cpu": 0.0, "loop_cpu": 0.0, "flushes": 0, "draws": 0,
                                          "runq": 0.0, "gc": 0.0, "gc_max": 0.0})
        for k in agg:
            agg[k] = max(agg[k], s[k]) if k == "gc_max" else agg[k] + s[k]
    # node-server CPU and load average per phase, from the marks seen here
    node_cpu: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}
    for (name, t, cpu, load), (_, t_next, cpu_next, _) in zip(marks, marks[1:]):
        if cpu is not None and cpu_next is not None:
            acc = node_cpu.setdefault(name, [0.0, 0.0])
            acc[0] += cpu_next - cpu
            acc[1] += t_next - t
        loads.setdefault(name, []).append(load[0])

    print(f"pltui console (nice {args.console_nice}{', gc.freeze() at sweeps' if args.gc_freeze else ''}), "
          f"real sweeps: {result['nodes']} asyncssh nodes "
          f"(separate process), "
          f"terminal {args.width}x{args.height}, a key every {args.key_interval * 1000:.0f} ms")
    for s in result["sweeps"]:
        kind = "checksum" if s["checksums"] else "liveness"
        print(f"  {s['phase']:>4} sweep ({kind}): {s['wall']:.1f} s, {s['ok']}/{result['nodes']} nodes OK"
              + (f"; errors: {s['errors']}" if s["errors"] else ""))
    header = (f"  {'phase':<6} {'wall':>6} {'keys':>5} {'p50':>7} {'p95':>7} {'max':>7}  {'p95 app':>7} "
              f"{'p95 wait':>8}  {'console':>7} {'loop':>5} {'runq':>5} {'gc max':>6} {'nodes':>6}  load 1m")
    print(header)
    for name in ("cold", "warm", "idle", "settle", "quiet"):
        agg = seg.get(name)
        if not agg:
            continue
        b = lat.get(name, {"app": [], "pty": [], "queued": []})
        pty_ms = b["pty"]
        cols = (f"{percentile(pty_ms, 50):5.1f}ms {percentile(pty_ms, 95):5.1f}ms {max(pty_ms):5.1f}ms  "
                f"{percentile(b['app'], 95):5.1f}ms {percentile(b['queued'], 95):6.1f}ms" if pty_ms
                else f"{'-':>7} {'-':>7} {'-':>7}  {'-':>7} {'-':>8}")
        nc = node_cpu.get(name)
        ncpu = f"{100 * nc[0] / nc[1]:5.0f}%" if nc and nc[1] > 0 else f"{'-':>6}"
        load = loads.get(name, [])
        pct = lambda x: f"{100 * x / agg['wall']:4.0f}%"   # noqa: E731
        print(f"  {name:<6} {agg['wall']:5.1f}s {len(pty_ms):>5} {cols}  {pct(agg['cpu']):>7} {pct(agg['loop_cpu'])} "
              f"{pct(agg['runq'])} {agg['gc_max'] * 1000:4.0f}ms {ncpu}  {'/'.join(f'{x:.1f}' for x in load[:3])}")
    print("  p50/p95/max: key written to the pty -> first bytes read back after the app's next screen update;")
    print("  'p95 app': to that update (in the child); 'p95 wait': until the app's on_event saw the key;")
    print("  CPU in % of one core: console (all threads), its event-loop thread ('loop'), node server + its shells")
    print("  ('nodes'); 'runq': time the loop thread was runnable but had no CPU; 'gc max': longest collection")
    if result.get("stalls"):
        report_stalls(args, result["stalls"], phase_at)
    gcs: dict[str, list] = {}
    for t0, gen, took, cpu, _collected in result.get("gc", []):
        gcs.setdefault(phase_at(t0), []).append((gen, took, cpu))
    for phase in ("cold", "warm", "settle", "idle"):
        rows = gcs.get(phase)
        if rows:
            full = [r for r in rows if r[0] == 2]
            longest = max(rows, key=lambda r: r[1])
            print(f"  gc ({phase}): {len(full)} full collections, {sum(r[1] for r in full) * 1000:.0f} ms wall "
                  f"({sum(r[2] for r in full) * 1000:.0f} ms CPU); longest gen{longest[0]} {longest[1] * 1000:.0f} ms "
                  f"({longest[2] * 1000:.0f} ms CPU)")
    print("  objects tracked by gc at each phase start: "
          + ", ".join(f"{name} {count / 1000:.0f}k" for name, count in result.get("objects", [])))
    if mismatched or unanswered:
        print(f"  warning: {mismatched} key sequence mismatch, {unanswered} keys never followed by a screen update")
    print(f"  drawn: {drawn / 1024:.0f} KiB in {wall:.1f} s; {len(sends)} keys typed, {len(result['keys'])} seen")
    cold = lat.get("cold", {}).get("pty", [])
    if cold:
        p95 = percentile(cold, 95)
        print(f"  target: p95 < 100 ms during the cold sweep -> {p95:.0f} ms, {'met' if p95 < 100 else 'MISSED'}")


def report_stalls(args, stalls: list, phase_at) -> None:
    print(f"  event-loop callbacks longer than {args.stalls:g} ms (wall; cpu of the loop thread):")
    by_phase: dict[str, list] = {}
    for t0, took, cpu, what in stalls:
        by_phase.setdefault(phase_at(t0), []).append((took, cpu, what))
    for phase in ("cold", "warm", "settle", "idle"):
        rows = by_phase.get(phase)
        if not rows:
            continue
        wall = sum(r[0] for r in rows)
        print(f"    {phase}: {len(rows)} callbacks, {wall:.2f} s wall, {sum(r[1] for r in rows):.2f} s CPU; "
              f"longest {max(r[0] for r in rows) * 1000:.0f} ms")
        groups: dict[str, list[float]] = {}
        for took, cpu, what in rows:
            g = groups.setdefault(what, [0, 0.0, 0.0, 0.0])
            g[0] += 1
            g[1] += took
            g[2] += cpu
            g[3] = max(g[3], took)
        for what, (count, took, cpu, longest) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"      {count:5d} x  {took * 1000:7.0f} ms wall {cpu * 1000:7.0f} ms cpu  max {longest * 1000:5.0f} ms  "
                  f"{what[:90]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=400, help="NodeUpdated events per second while sweeping")
    parser.add_argument("--sweep", type=float, default=12.0, help="seconds of streaming sweeps")
    parser.add_argument("--idle", type=float, default=6.0, help="seconds without updates, keys still typed")
    parser.add_argument("--quiet", type=float, default=8.0, help="seconds without updates nor keys (idle CPU)")
    parser.add_argument("--startup", type=float, default=3.0, help="seconds for the console to start")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=50)
    parser.add_argument("--key-interval", type=float, default=0.2)
    real = parser.add_argument_group("real-sweep mode")
    real.add_argument("--real-sweep", type=int, metavar="N", help="the console's engine sweeps N real asyncssh nodes")
    real.add_argument("--warm-sweeps", type=int, default=2, help="warm sweeps after the cold one")
    real.add_argument("--settle", type=float, default=1.0, help="seconds after each sweep before the next phase")
    real.add_argument("--console-nice", type=int, default=0,
                      help="nice value of the console (negative needs root): keeps other load off its CPU")
    real.add_argument("--sweep-timeout", type=float, default=600.0)
    real.add_argument("--max-wall", type=float, default=1800.0, help="give up on the console after this long")
    real.add_argument("--stalls", type=float, default=0.0, metavar="MS",
                      help="diagnosis: time every event-loop callback, list those longer than MS")
    real.add_argument("--gc-freeze", action="store_true",
                      help="experiment: gc.freeze() in the console at each sweep's start and end")
    real.add_argument("--py-spy", metavar="FILE", help="diagnosis: py-spy record (raw) the console's cold sweep")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--fleet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (child_real if args.real_sweep else child)(args)
        return 0
    return parent_real(args) if args.real_sweep else parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
