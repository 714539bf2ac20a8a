"""Node CPU per liveness probe, sshd's share included: N real OpenSSH sshd nodes on loopback,
warm connections, the sshd processes (and so every session, shell and tool they start) in a
cgroup-v1 cpuacct group this script creates (root only).

Prints, side by side from the same run, node CPU per probe for:
  stdin probe      the probe sent whole on stdin to `/bin/sh -s` under pltui.ssh.bounded (before)
  installed probe  the sweep's command (pltui.probe.probe_command) with the probe installed
  the steps to it  the installed probe as earlier versions ran it, from the same run (`STEPS`):
                   sha256 check + timeout(1) + `exec /bin/sh F` (before), then without the
                   sha256 check, then also without timeout(1); `now` sources it in the login shell
  fallback         the same command on a node without the installed probe (body sent on request)
  `true`           the cheapest exec there is (reference: sshd's session + the login shell)

    python bench/bench_node_cost.py [--nodes 20] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test rigs: tests/rigs/

from pltui import fleet as fleet_mod  # noqa: E402
from pltui import probe  # noqa: E402
from pltui.ssh import NODE_GRACE, OnRequest, Transport  # noqa: E402
from rigs.sshd_fleet import SshdFleet  # noqa: E402

SERVICE = {
    "important": ["bin/*", "etc/"],
    "logs": ["logs/*.log"],
    "version_file": "VERSION",
    "process": [{"name": "web", "start": "sleep 600", "pidfile": "run/web.pid"},
                {"name": "cache", "start": "sleep 600", "pidfile": "run/cache.pid"}],
}


def _steps(fleet, node, limit: int) -> dict[str, str]:
    """The liveness command of earlier versions, one cost removed per step (for side-by-side
    figures; the sweep's own command is probe.probe_command)."""
    head = f"set -- {probe.probe_args(fleet, node, checksums=False)};F=$1/{probe.installed_path()};"
    timeout = f"T=;command -v timeout>/dev/null&&T='timeout {limit}';"
    send = 'echo pltui-send;exec $T /bin/sh -s "$@"'
    return {
        "sha+timeout+sh": (head + timeout + f'case $(sha256sum 2>&- <"$F") in {probe.probe_digest()[:24]}*)'
                           f'exec $T /bin/sh "$F" "$@";;esac;' + send),
        "timeout+sh": head + timeout + 'if [ -s "$F" ];then exec $T /bin/sh "$F" "$@";fi;' + send,
        "sh": head + 'T=;if [ -s "$F" ];then exec /bin/sh "$F" "$@";fi;' + send,
    }


STEPS = ("sha+timeout+sh", "timeout+sh", "sh")


class CpuMeter:
    """CPU of the sshd processes and all their descendants, dead ones included (cpuacct group)."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self):
        if os.geteuid() != 0 or not (self.ROOT / "cpuacct.usage").exists():
            raise SystemExit("bench_node_cost: needs root and a cgroup-v1 cpuacct hierarchy")
        self.dir = self.ROOT / f"pltui-bench-node-{os.getpid()}"
        self.dir.mkdir()

    def add(self, pid: int) -> None:
        (self.dir / "tasks").write_text(f"{pid}\n")

    def seconds(self) -> float:
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        for pid in (self.dir / "tasks").read_text().split():
            try:
                (self.ROOT / "tasks").write_text(pid + "\n")
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


def plant(root: Path, uid: int, gid: int) -> None:
    """A typical node: version, a few binaries, a config, logs (the processes start over SSH)."""
    for d in ("bin", "etc", "logs"):
        (root / d).mkdir()
    (root / "VERSION").write_text("2.1.0\n")
    for name in ("app", "helper"):
        (root / "bin" / name).write_bytes(os.urandom(4096))
    (root / "etc" / "app.conf").write_text("port=80\n")
    (root / "logs" / "app.log").write_bytes(b"x" * 10000)
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid)


async def measure(transport: Transport, nodes: list, how: str, rounds: int, meter: CpuMeter) -> tuple[float, int]:
    """Node CPU per probe (ms) over `rounds` warm sweeps of every node, checking every answer;
    and the most bytes one probe sent (command line + stdin)."""
    fleet = transport.fleet
    sent = [0]
    limit = max(1, int(transport.command_timeout + NODE_GRACE + 0.999))

    async def one(node) -> None:
        if how == "true":
            result = await transport.run(node, "true", bound_on_node=False)
            assert result.exit_status == 0, result
            sent[0] = max(sent[0], result.sent)
            return
        if how == "stdin":
            result = await transport.run(node, probe.PROBE_COMMAND,
                                         input=probe.build_script(fleet, node, checksums=False))
        else:
            command = (_steps(fleet, node, limit)[how] if how in STEPS
                       else probe.probe_command(fleet, node, checksums=False, limit=limit))
            result = await transport.run(node, command,
                                         input=OnRequest(probe.SEND_BODY, probe.probe_body()), bound_on_node=False)
            assert (result.sent > len(probe.probe_body())) == (how == "fallback"), (how, result.sent)
        sent[0] = max(sent[0], result.sent)
        status = probe.parse(result.stdout, fleet, node, checksums=False)
        assert status.version == "2.1.0" and status.procs_alive == 2, (how, status)

    await asyncio.gather(*(one(n) for n in nodes))  # warm-up (connections open, caches hot)
    before = meter.seconds()
    for _ in range(rounds):
        await asyncio.gather(*(one(n) for n in nodes))
    return (meter.seconds() - before) / (rounds * len(nodes)) * 1000, sent[0]


async def run(fleet_path: Path, sshd: SshdFleet, rounds: int, meter: CpuMeter) -> dict[str, tuple[float, int]]:
    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    nodes = [fleet.nodes[n] for n in sshd.names]
    try:
        for node in nodes:
            started = await transport.run(node, f"cd {probe.shell_path(node.root)} && mkdir -p run && "
                                                "for p in web cache; do (nohup sleep 600 >/dev/null 2>&1 & "
                                                "echo $! > run/$p.pid); done")
            assert started.exit_status == 0, started.stderr
        figures = {"true": await measure(transport, nodes, "true", rounds, meter),
                   "stdin": await measure(transport, nodes, "stdin", rounds, meter),
                   "fallback": await measure(transport, nodes, "fallback", rounds, meter)}
        for node in nodes:
            await probe.install(transport, node)
        for step in STEPS:
            figures[f"installed, {step}"] = await measure(transport, nodes, step, rounds, meter)
        figures["installed (now)"] = await measure(transport, nodes, "installed", rounds, meter)
        figures["true (again)"] = await measure(transport, nodes, "true", rounds, meter)
        return figures
    finally:
        await transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    meter = CpuMeter()
    base = Path(tempfile.mkdtemp(prefix="pltui-bench-node-"))
    sshd = None
    try:
        sshd = SshdFleet.start(args.nodes, base, timeout=120)
        for pid in sshd.pids:
            meter.add(pid)
        for name in sshd.names:
            pw = sshd.node_pw(name)
            plant(Path(sshd.nodes[name].root), pw.pw_uid, pw.pw_gid)
        fleet_path = sshd.write_fleet(base / "fleet.toml", service=SERVICE,
                                      ssh_overrides={"connect_timeout": "30s", "command_timeout": "30s"})
        figures = asyncio.run(run(fleet_path, sshd, args.rounds, meter))
        print(f"{args.nodes} real sshd nodes, {args.rounds} warm sweeps each, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}; node CPU per probe (sshd + everything it starts):")
        for what, (ms, sent) in figures.items():
            print(f"  {what:<26} {ms:6.2f} ms   {sent:5d} bytes sent")
    finally:
        if sshd is not None:
            sshd.stop()
        meter.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
