"""Serve a SimFleet from a child process (its own CPU, its own fd table), for big-fleet tests.

    python -m tests.faults.simserve N BASE_DIR [JSON_FLEET_KWARGS]

Starts N simulated nodes (one shared host key: faster), writes BASE_DIR/fleet.toml, prints
`READY <fleet path>` on stdout, and serves until stdin reaches EOF (the parent closed it or
died), then stops every node and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from pltui.demo.nodesim import SimFleet
from pltui.limits import raise_nofile_limit


async def main(n: int, base: Path, fleet_kwargs: dict) -> None:
    sim = await SimFleet.start(n, base, shared_host_key=True)
    try:
        path = sim.write_fleet(base / "fleet.toml", **fleet_kwargs)
        sys.stdout.write(f"READY {path}\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until EOF
    finally:
        await sim.stop()


if __name__ == "__main__":
    raise_nofile_limit()  # this process is an entry point: one fd per node connection
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
