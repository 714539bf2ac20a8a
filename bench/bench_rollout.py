#!/usr/bin/env python3
"""Rollout benchmark: a small bundle (VERSION + two sleeper processes) onto N loopback nodes.

For each N: a first rollout (fresh nodes: nothing to stop) and an upgrade (stop, swap, start,
verify, prune) with the full per-node pipeline; prints wall time, effective seconds per node
(wall / N), the per-node pipeline time (its first step to verified; median, p95, max), where the
time goes per step (median), client CPU per node, and the comparison with the old tools' seed
figure (about 12 s per node, parallel across nodes).

Nodes are served by a *separate* process (in-process asyncssh nodes running real shell commands,
or real OpenSSH sshd with --kind sshd), so the client's CPU is measured alone. Verification
needs the same pids alive twice SETTLE (1 s) apart: about 1 s of every node's time is that wait.

    python3 bench/bench_rollout.py                    # sim nodes, N = 24 and 100, parallel 32
    python3 bench/bench_rollout.py --sizes 24 --kind sshd
    python3 bench/bench_rollout.py --sizes 100 --parallel 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
TESTS = str(Path(__file__).resolve().parent.parent / "tests")  # the test rigs: tests/rigs/

from pltui import fleet as fleetfile  # noqa: E402
from pltui.actions.base import Control  # noqa: E402
from pltui.actions.bundle import Bundle  # noqa: E402
from pltui.actions.rollout import Rollout, build_stages  # noqa: E402
from pltui.limits import raise_nofile_limit  # noqa: E402
from pltui.model import ActionProgress  # noqa: E402
from pltui.ssh import Transport  # noqa: E402
from pltui.store import Store  # noqa: E402

SEED_SECONDS_PER_NODE = 12.0
SERVICE = {"process": [{"name": "svc", "start": "bin/svc", "stop_timeout": "5s"},
                       {"name": "aux", "start": "bin/aux", "stop_timeout": "5s"}]}

SERVER = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])  # the test rigs: tests/rigs/
from pltui.limits import raise_nofile_limit
raise_nofile_limit()  # this server process is an entry point
kind, n, base, service = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), __import__("json").loads(sys.argv[4])
if kind == "sim":
    from pltui.demo.thread import SimFleetThread
    server = SimFleetThread(n, base / "nodes", shared_host_key=n > 200)
    fleet = server.start()
else:
    from rigs.sshd_fleet import SshdFleet
    server = fleet = SshdFleet.start(n, base / "nodes")
fleet.write_fleet(base / "fleet.toml", service=service,
                  ssh_overrides={"fanout": 256, "handshakes": 64, "command_timeout": "60s", "connect_timeout": "20s"},
                  rollout={"health_timeout": "60s"})
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""


def make_bundle(base: Path, version: str) -> Path:
    d = base / f"bundle-{version}"
    (d / "bin").mkdir(parents=True)
    (d / "VERSION").write_text(version + "\n")
    for name in ("svc", "aux"):
        (d / "bin" / name).write_text("#!/bin/sh\nexec sleep 100000\n")
        (d / "bin" / name).chmod(0o755)
    (d / "etc").mkdir()
    (d / "etc" / "service.conf").write_text("x" * 20000)
    return d


async def one_rollout(fleet_path: Path, bundle_dir: Path, work: Path, parallel: int) -> dict:
    fleet = fleetfile.load(fleet_path)
    store = Store(work / "state.db")
    transport = Transport(fleet)
    marks: dict[str, list[tuple[float, str]]] = {}

    def emit(event):
        if isinstance(event, ActionProgress) and event.node and event.bytes_done in (None, 0):
            marks.setdefault(event.node, []).append((time.monotonic(), event.state))

    try:
        bundle = Bundle.open(bundle_dir, work / "bundles")
        stages = build_stages(fleet, None, parallel=parallel)
        action = Rollout.new(fleet, transport, store, bundle, stages, state_dir=work / "state", emit=emit,
                             control=Control(auto_continue=True))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        report = await action.run()
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await transport.close()
        store.close()
    per_node = []
    steps: dict[str, list[float]] = {}
    for _node, seq in marks.items():
        if seq[-1][1] != "done":
            continue
        per_node.append(seq[-1][0] - seq[0][0])
        for (t_a, s_a), (t_b, _) in zip(seq, seq[1:]):
            key = {"checking": "check", "uploading": "upload+prepare", "uploaded": "-", "stopped": "-", "swapped": "-",
                   "started": "-"}.get(s_a, s_a)
            if key != "-":
                steps.setdefault(key, []).append(t_b - t_a)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"ok": report.ok, "counts": report.summary["counts"], "wall": wall, "per_node": per_node,
            "steps": {k: statistics.median(v) for k, v in steps.items()}, "cpu_ms_per_node": cpu * 1000 / max(1, len(marks))}


def show(label: str, n: int, r: dict) -> None:
    pn = sorted(r["per_node"])
    p95 = pn[min(len(pn) - 1, int(0.95 * len(pn)))] if pn else float("nan")
    print(f"  {label:<8} wall {r['wall']:6.2f}s  effective {r['wall'] / n:5.3f} s/node  "
          f"per-node pipeline median {statistics.median(pn) if pn else float('nan'):.2f}s p95 {p95:.2f}s "
          f"max {max(pn) if pn else float('nan'):.2f}s  client CPU {r['cpu_ms_per_node']:.0f} ms/node  {r['counts']}")
    order = ["check", "upload+prepare", "stopping", "swapping", "starting", "verifying"]
    print("           median step: " + ", ".join(f"{k} {r['steps'][k]:.2f}s" for k in order if k in r["steps"]))
    print(f"           vs seed 12 s/node: {SEED_SECONDS_PER_NODE / max(1e-9, r['wall'] / n):.0f}x faster effective, "
          f"{SEED_SECONDS_PER_NODE / max(1e-9, statistics.median(pn) if pn else 1):.1f}x faster per node")


async def bench(n: int, kind: str, parallel: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pltui-bench-rollout-") as tmp:
        base = Path(tmp)
        server = subprocess.Popen([sys.executable, "-c", SERVER, kind, str(n), str(base), json.dumps(SERVICE), TESTS],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=str(Path(__file__).resolve().parent.parent))
        try:
            line = server.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"node server failed to start ({kind}, {n} nodes)")
            print(f"N = {n} {kind} nodes, parallel {min(parallel, n)} (one stage, one batch)")
            fleet_path = base / "fleet.toml"
            first = await one_rollout(fleet_path, make_bundle(base, "1.0"), base, parallel)
            show("install", n, first)
            upgrade = await one_rollout(fleet_path, make_bundle(base, "2.0"), base, parallel)
            show("upgrade", n, upgrade)
        finally:
            server.stdin.close()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    raise_nofile_limit()  # an entry point: one fd per pooled connection (pltui.limits)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 100])
    parser.add_argument("--kind", choices=("sim", "sshd"), default="sim")
    parser.add_argument("--parallel", type=int, default=32)
    args = parser.parse_args()
    print(f"pltui rollout benchmark (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    for n in args.sizes:
        asyncio.run(bench(n, args.kind, args.parallel))


if __name__ == "__main__":
    main()
