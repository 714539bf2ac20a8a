"""Prometheus metrics for a fleet, fed from the engine's events (prometheus-client does the rest).

`Metrics(fleet_name)` keeps what the events said (per-node status, drift, counters) and exposes
it through its own `CollectorRegistry`:

- per node: `pltui_node_up` (reachable over SSH), `pltui_node_health{health}` and
  `pltui_node_monitor{state}` (state sets: one series per possible state, 1 for the current one),
  `pltui_node_info{version,protocol}` (info style, always 1), `pltui_node_processes_alive`,
  `pltui_node_drifted_files`, `pltui_node_observed_timestamp_seconds`;
- fleet: `pltui_nodes{health}`, `pltui_drifted_nodes`, `pltui_last_sweep_timestamp_seconds`,
  the `pltui_sweep_duration_seconds{checksums}` histogram, and the counters
  `pltui_heals_total{result}`, `pltui_actions_total{kind,result}` and
  `pltui_node_transitions_total{kind}`.

Every series carries `fleet`. Label values from nodes (version, protocol) have bounded
cardinality: at each scrape only the MAX_VALUES most common current values are kept, the rest are
reported as "other", so a node printing a fresh version string every minute cannot blow up a
Prometheus server. Gauges are computed at scrape time from the current state, so a node that
leaves the selection leaves no stale series behind.

Feeding: `attach(engine)` subscribes to the engine; `drain()` folds in whatever events are queued
(the cron path: sweep, drain, `write_textfile`), `run()` does so forever (the server path:
`start_http(engine, host, port)` serves `/metrics` on 127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter as Tally
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pltui.model import (ActionFinished, Event, HealDone, NodeStatus, NodeTransition, NodeUpdated, SweepFinished,
                         SweepStarted)

MAX_VALUES = 20          # distinct version/protocol label values kept per scrape
MAX_LABEL_CHARS = 64
HEALTH_STATES = ("up", "degraded", "down", "unknown")
MONITOR_STATES = ("alive", "dead", "absent", "unknown")
SWEEP_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
DEFAULT_HOST = "127.0.0.1"


class MetricsError(Exception):
    """The metrics could not be served or written (bad address, unwritable file)."""


def _bounded(values: dict[str, str | None], limit: int) -> dict[str, str]:
    """Node -> label value, keeping only the `limit` most common values (the rest: "other")."""
    clipped = {n: (v or "")[:MAX_LABEL_CHARS] for n, v in values.items()}
    keep = {v for v, _ in Tally(clipped.values()).most_common(limit)}
    return {n: (v if v in keep else "other") for n, v in clipped.items()}


class Metrics(Collector):
    def __init__(self, fleet_name: str, *, max_values: int = MAX_VALUES):
        self.fleet = fleet_name
        self.max_values = max_values
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()  # events arrive on the loop, scrapes on the HTTP thread
        self._nodes: dict[str, NodeStatus] = {}
        self._drift: dict[str, int] = {}
        self._last_sweep: float | None = None
        self._sweep_start: dict[int, float] = {}
        self._queue: asyncio.Queue | None = None
        self._engine = None
        labels = ["fleet"]
        self.sweep_seconds = Histogram("pltui_sweep_duration_seconds", "Duration of each sweep.",
                                       labels + ["checksums"], buckets=SWEEP_BUCKETS, registry=self.registry)
        self.heals = Counter("pltui_heals", "Node monitor heals attempted, by result.", labels + ["result"],
                             registry=self.registry)
        self.actions = Counter("pltui_actions", "Actions finished, by kind and result.",
                               labels + ["kind", "result"], registry=self.registry)
        self.transitions = Counter("pltui_node_transitions", "Node state transitions, by kind.",
                                   labels + ["kind"], registry=self.registry)
        self.registry.register(self)

    # -- feeding ----------------------------------------------------------------------------

    def seed(self, statuses: Iterable[NodeStatus]) -> None:
        with self._lock:
            for status in statuses:
                self._nodes[status.node] = status

    def observe(self, event: Event) -> None:
        """Fold one engine event into the metrics."""
        with self._lock:
            if isinstance(event, NodeUpdated):
                self._nodes[event.status.node] = event.status
            elif isinstance(event, SweepStarted):
                self._sweep_start[event.sweep_id] = event.time
                while len(self._sweep_start) > 16:  # a sweep that never finished
                    self._sweep_start.pop(next(iter(self._sweep_start)))
            elif isinstance(event, SweepFinished):
                started = self._sweep_start.pop(event.sweep_id, None)
                if started is not None:
                    self.sweep_seconds.labels(self.fleet, str(bool(event.checksums)).lower()).observe(
                        max(0.0, event.time - started))
                self._last_sweep = event.time
                drift = event.summary.get("drift") or {}
                self._drift = {n: len(p) if isinstance(p, (list, tuple)) else 1 for n, p in drift.items()}
            elif isinstance(event, HealDone):
                self.heals.labels(self.fleet, "ok" if event.ok else "failed").inc()
            elif isinstance(event, ActionFinished):
                self.actions.labels(self.fleet, event.kind[:MAX_LABEL_CHARS], "ok" if event.ok else "failed").inc()
            elif isinstance(event, NodeTransition):
                self.transitions.labels(self.fleet, event.kind[:MAX_LABEL_CHARS]).inc()

    def attach(self, engine, *, maxsize: int = 10000) -> None:
        """Subscribe to `engine` and start from what it already knows (restored statuses)."""
        self._engine = engine
        self.seed(engine.statuses.values())
        self._queue = engine.subscribe(maxsize)

    def detach(self) -> None:
        if self._engine is not None and self._queue is not None:
            self._engine.unsubscribe(self._queue)
        self._engine = self._queue = None

    def drain(self) -> None:
        """Fold in every queued event now (call after `await engine.sweep()`)."""
        while self._queue is not None:
            try:
                self.observe(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def run(self) -> None:
        """Fold in events as they come, until cancelled."""
        while self._queue is not None:
            self.observe(await self._queue.get())

    # -- exposition -------------------------------------------------------------------------

    def collect(self):
        with self._lock:
            nodes = dict(self._nodes)
            drift = dict(self._drift)
            last_sweep = self._last_sweep
        fleet = self.fleet
        up = GaugeMetricFamily("pltui_node_up", "1 when the node answered over SSH in its last sweep.",
                               labels=["fleet", "node"])
        health = GaugeMetricFamily("pltui_node_health", "The node's health: 1 for the current state.",
                                   labels=["fleet", "node", "health"])
        monitor = GaugeMetricFamily("pltui_node_monitor", "The node monitor's state: 1 for the current one.",
                                    labels=["fleet", "node", "state"])
        info = GaugeMetricFamily("pltui_node_info", "Version and protocol the node runs (always 1; values "
                                 f"beyond the {self.max_values} most common are 'other').",
                                 labels=["fleet", "node", "version", "protocol"])
        procs = GaugeMetricFamily("pltui_node_processes_alive", "Configured service processes alive.",
                                  labels=["fleet", "node"])
        drifted = GaugeMetricFamily("pltui_node_drifted_files", "Files differing from the track's majority.",
                                    labels=["fleet", "node"])
        observed = GaugeMetricFamily("pltui_node_observed_timestamp_seconds", "When the node was last observed.",
                                     labels=["fleet", "node"])
        versions = _bounded({n: s.version for n, s in nodes.items()}, self.max_values)
        protocols = _bounded({n: s.protocol for n, s in nodes.items()}, self.max_values)
        totals = Tally()
        for name, status in nodes.items():
            state = status.health.value
            totals[state] += 1
            up.add_metric([fleet, name], 1.0 if status.reachable else 0.0)
            for value in HEALTH_STATES:
                health.add_metric([fleet, name, value], 1.0 if value == state else 0.0)
            mstate = status.monitor if status.monitor in MONITOR_STATES else "unknown"
            for value in MONITOR_STATES:
                monitor.add_metric([fleet, name, value], 1.0 if value == mstate else 0.0)
            info.add_metric([fleet, name, versions[name], protocols[name]], 1.0)
            procs.add_metric([fleet, name], float(status.procs_alive))
            drifted.add_metric([fleet, name], float(drift.get(name, 0)))
            if status.observed:
                observed.add_metric([fleet, name], status.observed)
        counts = GaugeMetricFamily("pltui_nodes", "Nodes by health.", labels=["fleet", "health"])
        for value in HEALTH_STATES:
            counts.add_metric([fleet, value], float(totals[value]))
        yield from (up, health, monitor, info, procs, drifted, observed, counts)
        yield self._last_family(fleet, "pltui_drifted_nodes", float(sum(1 for v in drift.values() if v)),
                                "Nodes with at least one drifted file.")
        if last_sweep is not None:
            yield self._last_family(fleet, "pltui_last_sweep_timestamp_seconds", last_sweep,
                                    "When the last sweep finished.")

    @staticmethod
    def _last_family(fleet: str, name: str, value: float, doc: str) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=["fleet"])
        family.add_metric([fleet], value)
        return family

    def describe(self):
        return []  # computed at scrape time; nothing to pre-register

    # -- output -----------------------------------------------------------------------------

    def write_textfile(self, path: str | os.PathLike) -> None:
        """node_exporter's textfile format, atomically (prometheus-client writes a temporary
        file beside `path` and renames it over)."""
        try:
            write_to_textfile(str(path), self.registry)
        except OSError as exc:
            raise MetricsError(f"{path}: cannot write metrics: {exc.strerror or exc}") from None


class MetricsServer:
    """`/metrics` over HTTP for one engine; `close()` stops serving and unsubscribes."""

    def __init__(self, metrics: Metrics, server, thread, task: asyncio.Task):
        self.metrics = metrics
        self._server, self._thread, self._task = server, thread, task
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.metrics.detach()
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        await asyncio.to_thread(self._thread.join, 5)


def parse_address(text: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise MetricsError(f"bad metrics address {text!r} (use PORT or HOST:PORT)")
    return host, int(port)


def start_http(engine, host: str = DEFAULT_HOST, port: int = 9180, *, metrics: Metrics | None = None) -> MetricsServer:
    """Serve the engine's metrics at http://host:port/metrics (call from the engine's loop).

    Binds 127.0.0.1 unless told otherwise: the metrics name every node of the fleet."""
    metrics = metrics or Metrics(engine.fleet.name)
    metrics.attach(engine)
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        metrics.detach()
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    task = asyncio.get_running_loop().create_task(metrics.run(), name="pltui-metrics")
    return MetricsServer(metrics, server, thread, task)


def start_http_at(engine, address: str, **kwargs) -> MetricsServer:
    """`serve --metrics HOST:PORT` in one call: parse the operator's address, then serve."""
    host, port = parse_address(address)
    return start_http(engine, host, port, **kwargs)
