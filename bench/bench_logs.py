"""Log collection benchmark: `pltui logs` against OpenSSH `scp -r` of the same files, on loopback.

A real-sshd fleet (rigs.sshd_fleet) of N nodes, each with SIZE MiB of access-log-like text
(a current log, rotated ones, an error log and one already-gzipped file). Then, alternating,
R times each:

- ``pltui logs FLEET --dest D --json`` as a separate process (wall time from exec to exit,
  so Python start-up, handshakes, listing + hashing on the nodes, transfer, verification and
  fsyncs all count), each run into a fresh DEST;
- ``scp -q -r`` of every node's logs/ directory, one scp process per node, all at once (as
  pltui does its nodes), same user, key and known_hosts, OpenSSH's default ciphers.

Printed: MB/s of log bytes (raw, before compression; 1 MB = 10^6 bytes) for each run and the
best of each tool, and the ratio pltui/scp (target >= 0.80); and the CPU each tool burnt per MB,
nodes' side included (sshd's reaped sessions) -- the figure that does not depend on what else
runs on this machine, and what bounds throughput when nodes and client share the cores. pltui's
copies are checked (its exit status and byte count). Generated files and copies are removed at
the end.

    python bench/bench_logs.py                      # 4 nodes x 300 MiB, 3 runs each
    python bench/bench_logs.py --nodes 4 --size 100 --runs 2 --compress auto gzip
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test rigs: tests/rigs/

from rigs.sshd_fleet import SshdFleet, find_sshd  # noqa: E402

BLOCK = 4 << 20


def text_block(seed: int, size: int = BLOCK) -> bytes:
    """Access-log lines (compress ~5x with zstd -1, ~4x with gzip -1, like real ones)."""
    rng = random.Random(seed)
    paths = ["/index.html", "/api/v1/items/", "/static/app.js?v=", "/img/logo.png?", "/cdn/obj/"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0", "curl/7.88.1", "Wget/1.21.3",
              "python-requests/2.31.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)"]
    out, n, t = [], 0, 1_764_000_000 + seed * 1000
    while n < size:
        t += rng.randint(0, 2)
        line = (f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - "
                f"[{time.strftime('%d/%b/%Y:%H:%M:%S', time.gmtime(t))} +0000] \"GET {rng.choice(paths)}"
                f"{rng.randint(0, 999999)} HTTP/1.1\" {rng.choice((200, 200, 200, 206, 304, 404, 500))} "
                f"{rng.randint(0, 2_000_000)} \"-\" \"{rng.choice(agents)}\" rt={rng.random():.4f}\n")
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def write_log(path: Path, size: int, blocks: list[bytes], start: int) -> None:
    with open(path, "wb") as f:
        written, i = 0, start
        while written < size:
            chunk = blocks[i % len(blocks)][: size - written]
            f.write(chunk)
            written += len(chunk)
            i += 1


def plant(fleet: SshdFleet, size: int) -> int:
    """Log files on every node; returns the total bytes."""
    blocks = [text_block(i) for i in range(8)]
    total = 0
    for index, node in enumerate(fleet.nodes.values()):
        logs = node.root / "logs"
        logs.mkdir(exist_ok=True)
        plan = {"access.log": 0.55, "access.log.1": 0.25, "error.log": 0.08, "access.log.2": 0.07}
        for k, (name, share) in enumerate(plan.items()):
            write_log(logs / name, int(size * share), blocks, index * 3 + k)
        with gzip.open(logs / "access.log.3.gz", "wb", compresslevel=1) as f:
            f.write(blocks[index % 8][: int(size * 0.05)])
        for path in [logs, *logs.iterdir()]:
            os.chown(path, fleet.pw.pw_uid, fleet.pw.pw_gid)
        total += sum(p.stat().st_size for p in logs.iterdir())
    return total


class CpuMeter:
    """CPU used by a set of process trees, dead descendants included: a cgroup-v1 cpuacct group
    (root only). The nodes' sshd processes and each measured client process are put in it, so
    every session shell, dd, zstd, sftp-server, scp, ssh and pltui is counted. None when the
    machine offers no such group (the benchmark then prints wall-clock figures only)."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self):
        self.dir = self.ROOT / f"pltui-bench-logs-{os.getpid()}"
        self.dir.mkdir()
        self.tasks = self.dir / "tasks"

    @classmethod
    def make(cls) -> "CpuMeter | None":
        try:
            return cls() if os.geteuid() == 0 and (cls.ROOT / "cpuacct.usage").exists() else None
        except OSError:
            return None

    def add(self, pid: int) -> None:
        self.tasks.write_text(f"{pid}\n")

    def join(self) -> None:
        """For preexec_fn: put the new process itself in the group before it execs."""
        self.add(os.getpid())

    def seconds(self) -> float:
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        root_tasks = self.ROOT / "tasks"
        for pid in self.tasks.read_text().split():
            try:
                root_tasks.write_text(pid + "\n")
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_pltui(fleet: SshdFleet, dest: Path, state: Path, compress: str, expect: int,
              meter: CpuMeter | None, nice: int) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "pltui", "logs", str(fleet.fleet_path), "--dest", str(dest), "--json",
            "--state", str(state), "--compress", compress, "--nice", str(nice)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, preexec_fn=meter.join if meter else None)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pltui logs failed ({done.returncode}): {done.stdout.decode()[-2000:]} {done.stderr.decode()}")
    doc = json.loads(done.stdout)
    if doc["summary"]["bytes_collected"] != expect:
        raise SystemExit(f"pltui collected {doc['summary']['bytes_collected']} bytes, expected {expect}")
    return wall, doc["summary"]


def run_scp(fleet: SshdFleet, dest: Path, expect: int, meter: CpuMeter | None) -> float:
    procs = []
    started = time.perf_counter()
    for name, node in fleet.nodes.items():
        target = dest / name
        target.mkdir(parents=True)
        argv = ["scp", "-q", "-r", "-P", str(node.port), "-i", str(fleet.client_key_path),
                "-o", f"UserKnownHostsFile={fleet.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", f"{fleet.user}@{node.host}:{node.root}/logs", str(target)]
        procs.append(subprocess.Popen(argv, stderr=subprocess.PIPE, preexec_fn=meter.join if meter else None))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"scp failed: {err.decode()}")
    wall = time.perf_counter() - started
    got = tree_bytes(dest)
    if got != expect:
        raise SystemExit(f"scp copied {got} bytes, expected {expect}")
    return wall


def run_scp_same_result(fleet: SshdFleet, dest: Path, expect: int, meter: CpuMeter | None) -> float:
    """What it takes to get pltui's result with OpenSSH: scp -r, sha256sum on the node and
    here (checked), then zstd -1 every plain file here; one shell per node, all at once."""
    procs = []
    started = time.perf_counter()
    for name, node in fleet.nodes.items():
        target = dest / name
        target.mkdir(parents=True)
        ssh_opts = (f"-i {fleet.client_key_path} -o UserKnownHostsFile={fleet.known_hosts_path} "
                    f"-o StrictHostKeyChecking=yes -o BatchMode=yes")
        where = f"{fleet.user}@{node.host}"
        script = (f"scp -q -r -P {node.port} {ssh_opts} {where}:{node.root}/logs {target} && "
                  f"ssh -p {node.port} {ssh_opts} {where} 'cd {node.root}/logs && sha256sum *' > {target}/sums && "
                  f"cd {target}/logs && sha256sum --quiet -c ../sums && "
                  f"for f in *; do case $f in *.gz) ;; *) zstd -1 -q --rm \"$f\" ;; esac; done")
        procs.append(subprocess.Popen(["sh", "-c", script], stderr=subprocess.PIPE,
                                      preexec_fn=meter.join if meter else None))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"scp+sha256sum+zstd failed: {err.decode()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--size", type=int, default=300, help="MiB of logs per node (default 300)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compress", nargs="+", default=["auto"], choices=("auto", "zstd", "gzip", "none"))
    parser.add_argument("--nice", type=int, default=10, help="pltui --nice (default 10, as pltui)")
    parser.add_argument("--same-result", action="store_true",
                        help="also time scp + sha256sum (node and here) + zstd -1: pltui's result by hand")
    parser.add_argument("--keep", action="store_true", help="keep the generated files (in the temp dir)")
    args = parser.parse_args()
    if find_sshd() is None or shutil.which("scp") is None:
        raise SystemExit("needs OpenSSH sshd and scp")
    base = Path(tempfile.mkdtemp(prefix="pltui-bench-logs-"))
    fleet = None
    meter = CpuMeter.make()
    try:
        fleet = SshdFleet.start(args.nodes, base / "sshd")
        if meter is not None:
            for pid in fleet.pids:
                meter.add(pid)
        fleet.write_fleet(base / "fleet.toml", service={"logs": ["logs/*"]},
                          ssh_overrides={"command_timeout": "60s"})
        t0 = time.perf_counter()
        total = plant(fleet, args.size << 20)
        print(f"{args.nodes} nodes x {args.size} MiB of log text ({total / 1e6:.0f} MB in all), "
              f"generated in {time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs shared by nodes and client")
        results: dict[str, list[float]] = {"scp": []}
        cpu: dict[str, list[float]] = {"scp": []}
        if args.same_result:
            results["scp+sha+zstd"] = []
            cpu["scp+sha+zstd"] = []
        for compress in args.compress:
            results[f"pltui ({compress})"] = []
            cpu[f"pltui ({compress})"] = []
        for run in range(args.runs):
            order = list(results)
            if run % 2:
                order.reverse()
            for label in order:
                dest = base / "dest"
                shutil.rmtree(dest, ignore_errors=True)
                subprocess.run(["sync"])
                time.sleep(0.3)  # let the previous run's sessions end
                cpu0 = meter.seconds() if meter else 0.0
                if label == "scp":
                    wall = run_scp(fleet, dest, total, meter)
                    extra = ""
                elif label == "scp+sha+zstd":
                    wall = run_scp_same_result(fleet, dest, total, meter)
                    extra = "  (scp, sha256sum on both ends, zstd -1 here: pltui's result by hand)"
                else:
                    compress = label[label.index("(") + 1:-1]
                    wall, summary = run_pltui(fleet, dest, base / "state", compress, total, meter, args.nice)
                    extra = (f"  (stored {summary['bytes_stored'] / 1e6:.0f} MB, {total / summary['bytes_stored']:.1f}x; "
                             f"in-process {summary['mb_per_s']} MB/s over {summary['elapsed']:.2f}s)")
                time.sleep(0.3)
                results[label].append(total / wall / 1e6)
                used = ""
                if meter is not None:
                    seconds = meter.seconds() - cpu0
                    cpu[label].append(seconds * 1000 / (total / 1e6))
                    used = f"  cpu {seconds:5.2f}s = {cpu[label][-1]:.2f} ms/MB"
                print(f"run {run + 1} {label:<14} {wall:6.2f}s {total / wall / 1e6:7.1f} MB/s{used}{extra}")
                shutil.rmtree(dest, ignore_errors=True)
        best_scp = max(results["scp"])
        print()
        for label, rates in results.items():
            best = max(rates)
            ratio = f"  ratio {best / best_scp:.2f}" if label != "scp" else ""
            line = f"{label:<14} best {best:7.1f} MB/s  median {sorted(rates)[len(rates) // 2]:7.1f} MB/s{ratio}"
            if cpu[label]:
                ms = min(cpu[label])
                line += f"  least CPU {ms:.2f} ms/MB (nodes + client)"
                if label != "scp":
                    line += f", {min(cpu['scp']) / ms:.2f}x scp's CPU efficiency"
            print(line)
        for label, rates in results.items():
            if label.startswith("pltui"):
                verdict = "meets" if max(rates) >= 0.8 * best_scp else "BELOW"
                print(f"{label}: {verdict} the target of 80% of scp's throughput")
    finally:
        if fleet is not None:
            fleet.stop()
        if meter is not None:
            meter.close()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
