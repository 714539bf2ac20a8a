"""Jump-host benchmark: N real sshd nodes swept directly (the reference) and through two real
OpenSSH bastions (rigs.sshd_bastions), side by side in one run.

Per mode: cold sweep (handshakes included) and warm sweep (pooled connections), wall time,
client CPU ms per node, nodes answering, and the client logins each bastion accepted (one
per bastion is the goal: every node behind it shares that connection).

    python bench/bench_jumps.py              # N = 200
    python bench/bench_jumps.py --nodes 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test rigs: tests/rigs/

from pltui.fleet import load  # noqa: E402
from pltui.limits import raise_nofile_limit  # noqa: E402
from pltui.demo.nodesim import fleet_document, write_toml  # noqa: E402
from rigs.sshd_bastions import Bastions, GatedSshdFleet  # noqa: E402
from pltui.sweep import Engine  # noqa: E402


async def measure(path: Path, state: Path) -> dict:
    engine = Engine(load(path), state_dir=state)
    out = {}
    try:
        for phase in ("cold", "warm"):
            cpu, wall = time.process_time(), time.monotonic()
            await engine.sweep()
            out[phase] = (time.monotonic() - wall, (time.process_time() - cpu) * 1000)
        out["ok"] = sum(1 for s in engine.statuses.values() if s.ssh.value == "ok")
    finally:
        await engine.close()
    return out


def fleet_file(nodes, path: Path, jumps: dict[str, str] | None) -> Path:
    doc = fleet_document(nodes.nodes.values(), name="bench", user=nodes.user, identity_file=nodes.client_key_path,
                         known_hosts=nodes.known_hosts_path, service={"important": ["bin/*"]},
                         ssh_overrides={"fanout": 100, "handshakes": 32})
    for name, spec in (jumps or {}).items():
        doc["node"][name]["proxy_jump"] = spec
    return write_toml(path, doc)


def main() -> int:
    raise_nofile_limit()  # an entry point: one fd per pooled connection (pltui.limits)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pltui-bench-jumps-") as tmp:
        base = Path(tmp)
        nodes = GatedSshdFleet.start(args.nodes, base / "nodes")
        rig = Bastions(nodes, base / "bastions")
        try:
            b1, b2 = rig.add("b1", "127.0.9.1"), rig.add("b2", "127.0.9.2")
            rig.write_known_hosts()
            for node in nodes.nodes.values():
                (Path(node.root) / "bin").mkdir(exist_ok=True)
                (Path(node.root) / "VERSION").write_text("1.0\n")
            names = sorted(nodes.nodes)
            half = len(names) // 2
            jumps = {n: (b1.spec if i < half else b2.spec) for i, n in enumerate(names)}
            # direct: the client's default source is 127.0.0.1, which the nodes accept
            direct = asyncio.run(measure(fleet_file(nodes, base / "direct.toml", None), base / "s1"))
            via = asyncio.run(measure(fleet_file(nodes, base / "jumps.toml", jumps), base / "s2"))
            logins = (rig.accepted("b1"), rig.accepted("b2"))
        finally:
            rig.stop()
            nodes.stop()
    n = args.nodes
    print(f"{n} real sshd nodes, {os.cpu_count()} CPUs; two bastions for the jump run")
    print(f"{'':26}{'direct (reference)':>22}{'via 2 bastions':>22}")
    for phase in ("cold", "warm"):
        cells = [f"{m[phase][0]:6.2f} s {m[phase][1] / n:6.2f} ms/n" for m in (direct, via)]
        print(f"{phase + ' sweep wall, CPU/node':26}{cells[0]:>22}{cells[1]:>22}")
    print(f"{'nodes ok':26}{direct['ok']:>22}{via['ok']:>22}")
    print(f"{'bastion logins (b1, b2)':26}{'-':>22}{str(logins):>22}")
    return 0 if direct["ok"] == via["ok"] == n else 1


if __name__ == "__main__":
    sys.exit(main())
