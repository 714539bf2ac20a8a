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
    bin/proxy, bin/cache        the demo service (pltui/demo/service/*.sh), long-running sh loops
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

The package, one job per module: `layout` (roles, releases, the fleet file and the service's
process table), `dirs` (the demo directory), `procs` (pids, killing, the reaper), `running`
(`Demo`), `build` (`build_demo`), `chaos` (`Chaos`), `thread` (`DemoThread`), `nodesim` (the
simulated SSH nodes, used by tests too).
"""

from pltui.demo.build import bootstrap_nodes, build_demo, legend_text, plant_trouble, preseed_monitor, wait_for_service
from pltui.demo.chaos import Chaos
from pltui.demo.dirs import claim_dir, default_dir, prune_old
from pltui.demo.layout import (
    ALPHA, ALPHA_PROTOCOL, ALPHA_VERSION, BASE_PROTOCOL, BASE_VERSION, BUNDLE_PROTOCOL, BUNDLE_VERSION, CRASHLOOP,
    DESCRIPTION, DRIFT, DRIFTED_FILE, FLEET_NAME, GARBAGE, HEALTHY, KEEP_OLD, MARKER, MAX_NODES, MIN_NODES,
    MONITOR_DEAD, PREFIX, PRESEED_FROM, REFUSE, ROLE_OF_INDEX, SHARED_KEY_FROM, SILENT, TROUBLE, DemoError, Pace,
    assign_roles, fleet_tables, lay_out_node, release_files, service_spec, write_bundle,
)
from pltui.demo.running import Demo
from pltui.demo.thread import DemoThread

__all__ = [
    "ALPHA", "ALPHA_PROTOCOL", "ALPHA_VERSION", "BASE_PROTOCOL", "BASE_VERSION", "BUNDLE_PROTOCOL", "BUNDLE_VERSION",
    "CRASHLOOP", "DESCRIPTION", "DRIFT", "DRIFTED_FILE", "FLEET_NAME", "GARBAGE", "HEALTHY", "KEEP_OLD", "MARKER",
    "MAX_NODES", "MIN_NODES", "MONITOR_DEAD", "PREFIX", "PRESEED_FROM", "REFUSE", "ROLE_OF_INDEX", "SHARED_KEY_FROM",
    "SILENT", "TROUBLE", "Chaos", "Demo", "DemoError", "DemoThread", "Pace", "assign_roles", "bootstrap_nodes",
    "build_demo", "claim_dir", "default_dir", "fleet_tables", "lay_out_node", "legend_text", "plant_trouble",
    "preseed_monitor", "prune_old", "release_files", "service_spec", "wait_for_service", "write_bundle",
]
