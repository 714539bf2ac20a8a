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
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
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
            if isinstance(event, events.Key):
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
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    return parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
