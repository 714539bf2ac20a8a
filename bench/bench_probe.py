"""How long the probe takes and what it costs a node, next to a reference measured in the same run.

    python bench/bench_probe.py [--shell dash|bash|busybox|mksh] [--logs 100000] [--important 20000]
                                [--runs 30]

Three figures, each printed beside its reference:
- node CPU of one liveness probe (user+system of the probe's whole process tree, from the
  rusage of reaped children), beside `sh -s` running `true`;
- a liveness probe over N log files, beside `find DIR -type f | wc -l` over the same files;
- a checksum probe over N important files, beside `find DIR -type f -exec sha256sum {} +`.
The probe script is exactly what the engine sends (build_script), run locally with `SHELL -s`
(no SSH: sshd's share is the same for any command and is not the probe's to save).
Everything lives in a temporary directory, removed at the end; the processes started are
waited for (and the sleeps standing in for the service are killed by pid).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pltui import fleet as fleet_mod  # noqa: E402
from pltui.probe import build_script, parse  # noqa: E402

SHELLS = {"dash": ["dash", "-s"], "bash": ["bash", "-s"], "busybox": ["busybox", "sh", "-s"], "mksh": ["mksh", "-s"]}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], script: bytes | None = None, cwd: str | None = None) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds of the whole process tree, stdout."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    result = subprocess.run(argv, input=script, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd,
                            timeout=600, check=False)
    return time.perf_counter() - t0, children_cpu() - cpu0, result.stdout


def make_fleet(root: Path, logs: list[str], important: list[str]) -> fleet_mod.Fleet:
    def toml_list(items):
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"
    return fleet_mod.loads(
        f'[fleet]\nname = "b"\nnodes = ["n1"]\n[service]\nroot = "{root}"\nversion_file = "VERSION"\n'
        f"logs = {toml_list(logs)}\nimportant = {toml_list(important)}\n"
        '[[service.process]]\nname = "web"\nstart = "x"\npidfile = "run/web.pid"\n'
        '[[service.process]]\nname = "cache"\nstart = "x"\npidfile = "run/cache.pid"\n')


def many(directory: Path, count: int, size: int = 11) -> None:
    directory.mkdir(parents=True)
    for i in range(count):
        fd = os.open(directory / f"file-{i:08d}.log", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, (b"0123456789\n" * (size // 11 + 1))[:size] if size != 11 else b"0123456789\n")
        os.close(fd)


def plant(root: Path, sleepers: list[subprocess.Popen]) -> None:
    """A typical node: version, a few binaries and logs, two live processes, a heartbeat."""
    for d in ("bin", "etc", "logs", "run", ".pltui"):
        (root / d).mkdir(parents=True)
    (root / "VERSION").write_text("2.1.0\n")
    for name in ("app", "helper"):
        (root / "bin" / name).write_bytes(os.urandom(4096))
    (root / "etc" / "app.conf").write_text("port=80\n")
    (root / "logs" / "app.log").write_bytes(b"x" * 10000)
    for name in ("web", "cache"):
        sleepers.append(subprocess.Popen(["sleep", "600"]))
        (root / "run" / f"{name}.pid").write_text(f"{sleepers[-1].pid}\n")
    (root / ".pltui" / "monitor.pid").write_text(f"{sleepers[0].pid}\n")
    (root / ".pltui" / "state").write_text(
        f"heartbeat {int(time.time())}\nmonitor {sleepers[0].pid} 5\n"
        f"proc web running {sleepers[0].pid} 0 - -\nproc cache running {sleepers[1].pid} 0 - -\n")


def line(what: str, probe: tuple[float, float], ref: tuple[float, float], ref_name: str) -> None:
    print(f"{what:<34} probe {probe[0]:7.3f} s wall {probe[1] * 1000:9.1f} ms cpu   |   "
          f"{ref_name}: {ref[0]:7.3f} s wall {ref[1] * 1000:9.1f} ms cpu")


def bench_cpu(shell: list[str], root: Path, runs: int) -> None:
    fleet = make_fleet(root, ["logs/*.log"], ["bin/*", "etc/"])
    script = build_script(fleet, fleet.nodes["n1"], checksums=False)
    status = parse(run(shell, script)[2], fleet, fleet.nodes["n1"], checksums=False)
    assert status.procs_alive == 2 and status.monitor == "alive", status
    probe = [run(shell, script)[:2] for _ in range(runs)]
    ref = [run(shell, b"true\n")[:2] for _ in range(runs)]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    line(f"liveness probe, typical node (x{runs})", (med([p[0] for p in probe]), med([p[1] for p in probe])),
         (med([r[0] for r in ref]), med([r[1] for r in ref])), "sh -s true")


def bench_files(shell: list[str], base: Path, logs: int, important: int, size: int = 11) -> None:
    root = base / "files"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"app")
    if logs:
        many(root / "logs", logs)
        fleet = make_fleet(root, ["logs/*.log"], [])
        script = build_script(fleet, fleet.nodes["n1"], checksums=False)
        wall, cpu, out = run(shell, script)
        status = parse(out, fleet, fleet.nodes["n1"], checksums=False)
        assert status.log_bytes == 11 * logs, status.log_bytes
        ref = run(["sh", "-c", "find logs -type f | wc -l"], cwd=str(root))
        line(f"{logs} log files, liveness", (wall, cpu), ref[:2], "find | wc -l")
        shutil.rmtree(root / "logs")
    if important:
        many(root / "data", important, size)
        fleet = make_fleet(root, [], ["bin/*", "data/*"])
        script = build_script(fleet, fleet.nodes["n1"], checksums=True)
        full_after = f" 1 {int(fleet.sweep.full_checksum_interval)}\n".encode()
        assert script.count(full_after) == 1
        always_full = script.replace(full_after, b" 1 0\n")  # full_checksum_interval 0: no state kept
        ref = run(["sh", "-c", "find data -type f -exec sha256sum {} + | wc -l"], cwd=str(root))
        time.sleep(1.1)  # files changed in the probe's first second are not cached
        for what, text in (("checksums, no state (always full)", always_full),
                           ("checksums, full pass + state", script),
                           ("checksums, incremental", script)):
            wall, cpu, out = run(shell, text)
            status = parse(out, fleet, fleet.nodes["n1"], checksums=True)
            assert len(status.digests) == important + 1, len(status.digests)
            line(f"{important} x {size} B files, {what}", (wall, cpu), ref[:2], "find -exec sha256sum +")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shell", choices=sorted(SHELLS), default="dash")
    parser.add_argument("--logs", type=int, default=100000)
    parser.add_argument("--important", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=11, help="bytes per important file")
    args = parser.parse_args()
    shell = list(SHELLS[args.shell])
    shell[0] = shutil.which(shell[0]) or sys.exit(f"bench_probe: {shell[0]} not found")
    sleepers: list[subprocess.Popen] = []
    base = Path(tempfile.mkdtemp(prefix="pltui-bench-probe-"))
    try:
        print(f"shell: {args.shell}; {os.cpu_count()} cores; cpu = user+system of the process tree")
        plant(base / "node", sleepers)
        bench_cpu(shell, base / "node", args.runs)
        bench_files(shell, base, args.logs, args.important, args.size)
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
