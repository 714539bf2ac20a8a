"""What a demo node holds and how the demo fleet is laid out: roles, releases, the fleet file.

The demo's process table (`service_spec`, with the proxy's reload) lives here, in one place.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pltui.nodesets import fold

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


def _program(name: str, version: str) -> bytes:
    text = resources.files("pltui.demo.service").joinpath(f"{name}.sh").read_text("utf-8")
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
            # no reload command: the monitor sends SIGHUP to the proxy itself (a simple start command
            # is exec'd, so the pidfile names the proxy) and checks that it survived the reload
            {"name": "proxy", "start": "bin/proxy --config etc/proxy.conf", "pidfile": "run/proxy.pid",
             "stop_timeout": "5s"},
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

