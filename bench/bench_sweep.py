"""Sweep benchmark: pltui's engine against a minimal asyncssh script, on loopback nodes.

For each N: cold sweep (handshakes included) and warm sweep (pooled connections), wall time,
client CPU ms per node (this process only: the nodes run in other processes), peak RSS, and
nodes answered correctly; the same for a minimal asyncssh script (semaphore, connect, run the
same probe, gather output) as the floor.

Nodes: real OpenSSH sshd (spread over several sshd processes and 127.0.0.x addresses) up to
--sshd-max nodes; above that, in-process asyncssh nodes served by a *separate* process so the
client's CPU is measured alone.

    python bench/bench_sweep.py                 # N = 50, 200, 500, 1000
    python bench/bench_sweep.py --sizes 50 200  # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test rigs: tests/rigs/

import asyncssh  # noqa: E402

from pltui import fleet as fleet_mod  # noqa: E402
from pltui import probe  # noqa: E402
from pltui.limits import raise_nofile_limit  # noqa: E402
from pltui.model import SSHState  # noqa: E402
from pltui.ssh import bounded  # noqa: E402
from pltui.sweep import Engine  # noqa: E402

SERVICE = {
    "important": ["bin/*"],
    "logs": ["logs/*.log"],
    "process": [{"name": "web", "start": "sleep 1000", "pidfile": "run/web.pid"}],
}


def plant(root: Path) -> None:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "VERSION").write_text("1.0\n")
    (root / "PROTOCOL").write_text("7\n")
    (root / "bin" / "app").write_text("app\n")
    (root / "logs" / "a.log").write_text("x" * 100)
    for path in [root, root / "bin", root / "logs"]:
        os.chmod(path, 0o777)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(coro):
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = await coro
    return result, time.perf_counter() - wall0, time.process_time() - cpu0


async def pltui_run(fleet_path: Path, state: Path) -> dict:
    fleet = fleet_mod.load(fleet_path)
    engine = Engine(fleet, state_dir=state)
    n = len(fleet.nodes)
    try:
        _, cold_wall, cold_cpu = await timed(engine.sweep())
        cold_ok = sum(s.ssh == SSHState.OK and s.version == "1.0" for s in engine.statuses.values())
        _, warm_wall, warm_cpu = await timed(engine.sweep())
        warm_ok = sum(s.ssh == SSHState.OK and s.version == "1.0" for s in engine.statuses.values())
        errors = sorted({s.error for s in engine.statuses.values() if s.error})[:3]
    finally:
        await engine.close()
    return {"cold_wall": cold_wall, "cold_cpu_ms": cold_cpu * 1000 / n, "cold_ok": cold_ok,
            "warm_wall": warm_wall, "warm_cpu_ms": warm_cpu * 1000 / n, "warm_ok": warm_ok, "errors": errors}


async def minimal_run(fleet_path: Path) -> dict:
    """The floor: what a bare asyncssh script needs for the same work."""
    fleet = fleet_mod.load(fleet_path)
    known = asyncssh.read_known_hosts(fleet.ssh.known_hosts)
    keys = asyncssh.load_keypairs([fleet.ssh.identity_file])
    sem = asyncio.Semaphore(fleet.ssh.fanout)
    conns: dict[str, asyncssh.SSHClientConnection] = {}
    scripts = {n: probe.build_script(fleet, node, checksums=False) for n, node in fleet.nodes.items()}
    command = bounded(probe.PROBE_COMMAND, fleet.ssh.command_timeout)

    async def one(name: str) -> bool:
        node = fleet.nodes[name]
        async with sem:
            try:
                conn = conns.get(name)
                if conn is None:
                    conn = await asyncssh.connect(node.host, node.port, username=node.user, client_keys=keys,
                                                  known_hosts=known, agent_path=None, config=None,
                                                  connect_timeout=fleet.ssh.connect_timeout)
                    conns[name] = conn
                result = await conn.run(command, input=scripts[name], encoding=None,
                                        timeout=fleet.ssh.command_timeout)
                return b"version 1.0" in result.stdout
            except (OSError, asyncssh.Error, asyncio.TimeoutError):
                return False

    async def sweep() -> int:
        return sum(await asyncio.gather(*(one(n) for n in fleet.nodes)))

    n = len(fleet.nodes)
    try:
        cold_ok, cold_wall, cold_cpu = await timed(sweep())
        warm_ok, warm_wall, warm_cpu = await timed(sweep())
    finally:
        for conn in conns.values():
            conn.close()
    return {"cold_wall": cold_wall, "cold_cpu_ms": cold_cpu * 1000 / n, "cold_ok": cold_ok,
            "warm_wall": warm_wall, "warm_cpu_ms": warm_cpu * 1000 / n, "warm_ok": warm_ok}


def serve_sim(n: int, base: Path) -> None:
    """Child process: run n in-process asyncssh nodes until stdin closes."""
    from pltui.demo.nodesim import SimFleet

    async def main():
        sim = await SimFleet.start(n, base, shared_host_key=True)
        for node in sim.nodes.values():
            plant(node.root)
        sim.write_fleet(base / "fleet.toml", service=SERVICE,
                        ssh_overrides={"fanout": 64, "handshakes": 32, "connect_timeout": "30s",
                                       "command_timeout": "60s"})
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await sim.stop()

    asyncio.run(main())


class Nodes:
    """Start N nodes of the right kind; yields the fleet file path."""

    def __init__(self, n: int, base: Path, sshd_max: int):
        self.n, self.base, self.sshd_max = n, base, sshd_max
        self.kind = "sshd" if n <= sshd_max else "asyncssh (separate process)"
        self.sshd = None
        self.child = None

    def __enter__(self) -> Path:
        if self.n <= self.sshd_max:
            from rigs.sshd_fleet import SshdFleet

            self.sshd = SshdFleet.start(self.n, self.base, timeout=120)
            for node in self.sshd.nodes.values():
                plant(Path(node.root))
            return self.sshd.write_fleet(self.base / "fleet.toml", service=SERVICE,
                                         ssh_overrides={"fanout": 64, "handshakes": 32,
                                                        "connect_timeout": "30s", "command_timeout": "60s"})
        self.child = subprocess.Popen([sys.executable, __file__, "--serve-sim", str(self.n), str(self.base)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.child.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"sim node server failed to start: {line!r}")
        return self.base / "fleet.toml"

    def __exit__(self, *exc) -> None:
        if self.sshd is not None:
            self.sshd.stop()
        if self.child is not None:
            self.child.stdin.close()
            try:
                self.child.wait(60)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()


def main() -> None:
    raise_nofile_limit()  # an entry point: one fd per pooled connection (pltui.limits)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--sshd-max", type=int, default=500, help="largest N served by real sshd")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-sim", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sim:
        serve_sim(int(args.serve_sim[0]), Path(args.serve_sim[1]))
        return
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"pltui-bench-{n}-") as tmp:
            base = Path(tmp)
            nodes = Nodes(n, base, args.sshd_max)
            with nodes as fleet_path:
                floor = asyncio.run(minimal_run(fleet_path))
                ours = asyncio.run(pltui_run(fleet_path, base / "state"))
            rows.append({"n": n, "nodes": nodes.kind, "pltui": ours, "minimal": floor, "peak_rss_mib": rss_mib()})
            if not args.json:
                report(rows[-1])
    if args.json:
        print(json.dumps(rows, indent=2))


def report(row: dict) -> None:
    p, m = row["pltui"], row["minimal"]
    print(f"N={row['n']} ({row['nodes']}), peak RSS so far {row['peak_rss_mib']:.0f} MiB")
    print(f"  {'':8} {'cold wall':>10} {'cold cpu/node':>14} {'ok':>5} {'warm wall':>10} {'warm cpu/node':>14} {'ok':>5}")
    for label, r in (("pltui", p), ("minimal", m)):
        print(f"  {label:8} {r['cold_wall']:>9.2f}s {r['cold_cpu_ms']:>12.2f}ms {r['cold_ok']:>5} "
              f"{r['warm_wall']:>9.2f}s {r['warm_cpu_ms']:>12.2f}ms {r['warm_ok']:>5}")
    print(f"  ratio wall cold {p['cold_wall'] / m['cold_wall']:.2f}x, warm {p['warm_wall'] / m['warm_wall']:.2f}x")
    if p.get("errors"):
        print(f"  errors: {p['errors']}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
