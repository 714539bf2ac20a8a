"""Deterministic fleets and statuses for console tests, snapshots and the benchmark.

`static_fleet` writes a fleet file whose nodes are never connected to (snapshots feed statuses
through the real engine instead); `feed` sets a real `Engine`'s statuses and emits the same
events a sweep would, through the engine's own emit path.
"""

from __future__ import annotations

from pathlib import Path

from pltui import consensus as consensus_mod
from pltui.fleet import load
from pltui.model import NodeStatus, NodeUpdated, ProcStatus, SSHState, SweepFinished, SweepStarted
from pltui.sweep import Engine

FROZEN_NOW = 1_800_000_000.0   # 2027-01-15 08:00:00 UTC: the clock of every snapshot
DIGEST_A = "a" * 64
DIGEST_B = "b" * 64
DIGEST_C = "c" * 64


def static_fleet(path: Path, n: int = 24, *, prefix: str = "node") -> Path:
    """A fleet file of n nodes on unroutable ports (never contacted), with groups and tracks."""
    width = max(2, len(str(n)))
    names = [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]
    alpha = ",".join(names[:3])
    lines = [
        "[fleet]", 'name = "testfleet"', f'nodes = ["{prefix}[{1:0{width}d}-{n:0{width}d}]"]', "",
        "[ssh]", 'user = "svc"', 'known_hosts = "/dev/null"', 'connect_timeout = "1s"', "",
        "[groups]", f'alpha = "{alpha}"', 'production = "@all!@alpha"', "",
        "[tracks]", 'alpha = ["alpha"]', 'production = ["production"]', "",
        "[service]", 'root = "~/svc"', 'important = ["bin/*"]', "",
        "[[service.process]]", 'name = "proxy"', 'start = "bin/proxy"', 'pidfile = "run/proxy.pid"', "",
        "[[service.process]]", 'name = "cache"', 'start = "bin/cache"', 'pidfile = "run/cache.pid"', "",
        "[sweep]", 'interval = "5m"', "",
    ]
    for name in names:
        lines += [f'[node."{name}"]', 'host = "127.0.0.1"', "port = 9", ""]
    path.write_text("\n".join(lines))
    return path


def make_engine(fleet_path: Path, state_dir: Path) -> Engine:
    return Engine(load(fleet_path), state_dir=state_dir)


def _procs(alive: int, state: str = "running") -> list[ProcStatus]:
    out = [ProcStatus("proxy", True, 4100, "running", 0, None, None),
           ProcStatus("cache", True, 4101, "running", 1, 0, None)]
    for p in out[alive:]:
        p.alive, p.pid, p.state, p.restarts, p.last_exit, p.next_try = False, None, state, 7, 137, FROZEN_NOW + 30
    return out


def status_for(name: str, i: int, now: float = FROZEN_NOW) -> NodeStatus:
    """A varied but fixed status: mostly up; some degraded, down, isolated, drifted, unknown."""
    base = dict(node=name, observed=now - 5 - i * 29, latency_ms=10.0 + i, monitor="alive", monitor_pid=4000 + i,
                heartbeat_age=2.0, version="2.4.1", protocol="7", load=0.25 * (i % 8), uptime=86400.0 * (1 + i),
                disk_free=(40 - i) << 30, log_bytes=(i + 1) << 20, clock=now - 5 - i, digest_tool="sha256sum",
                digests={"bin/proxy": DIGEST_A, "bin/cache": DIGEST_B}, digests_time=now - 3600)
    kind = i % 12
    if kind == 3:
        base.update(processes=_procs(1, "backoff"))
    elif kind == 5:
        return NodeStatus(node=name, ssh=SSHState.TIMEOUT, error="command did not finish within 30s",
                          observed=now - 40)
    elif kind == 7:
        base.update(protocol="6", version="2.3.9", processes=_procs(2))
    elif kind == 8:
        base.update(digests={"bin/proxy": DIGEST_C, "bin/cache": DIGEST_B}, processes=_procs(2))
    elif kind == 10:
        return NodeStatus(node=name, ssh=SSHState.REFUSED, error="connection refused", observed=now - 50)
    elif kind == 11:
        return NodeStatus(node=name)
    else:
        base.update(processes=_procs(2))
    if kind == 9:
        base.update(monitor="dead", disk_free=300 << 20)
    return NodeStatus(ssh=SSHState.OK, **base)


def feed(engine: Engine, statuses: dict[str, NodeStatus] | None = None, *, now: float = FROZEN_NOW,
         sweep_id: int = 1) -> None:
    """Make `engine` hold `statuses` as if a checksum sweep found them; emit the sweep's events."""
    if statuses is None:
        statuses = {n: status_for(n, i, now) for i, n in enumerate(engine.nodes)}
    engine.emit(SweepStarted(sweep_id=sweep_id, checksums=True, total=len(statuses), time=now - 60))
    for status in statuses.values():
        engine.statuses[status.node] = status
        engine.emit(NodeUpdated(status=status, time=now - 30))
    tracks = {n: nd.track for n, nd in engine.fleet.nodes.items()}
    engine.consensus = consensus_mod.decide(engine.statuses.values(), tracks, engine.fleet.sweep.quorum)
    summary = consensus_mod.summarise([engine.statuses[n] for n in engine.nodes], engine.consensus,
                                      engine.fleet.sweep.quorum)
    engine.summary = summary
    engine.last_sweep_end = now - 12
    engine.next_sweep_at = now + 288
    engine.emit(SweepFinished(sweep_id=sweep_id, checksums=True, summary=summary, time=now - 12))
