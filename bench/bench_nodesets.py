#!/usr/bin/env python3
"""Node-set figures for a PlanetLab-sized fleet of irregular names.

Generates N (default 10,000) irregular PlanetLab-style FQDNs (planetlab-3.cs.princeton.edu,
node12.ee.ethz.ch, pl1.6test.edu.cn, ple2-1.mpi-sws.org, orbit.cs.uni37.de ...) and prints:
expanding their folded expression, folding them (cold, then cached), building a Selector,
Selector.select with a group (-g) and with a group expression (-w '@g!...'), loading a fleet
file of them, and peak memory (tracemalloc, measured in a separate pass so it does not
slow the timings; plus the process's max RSS).

    python3 bench/bench_nodesets.py [--nodes 10000] [--repeat 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pltui import nodesets  # noqa: E402
from pltui.fleet import dumps, loads  # noqa: E402
from pltui.nodesets import Selector, expand, fold  # noqa: E402

SITES = [
    "cs.princeton.edu", "ee.ethz.ch", "6test.edu.cn", "cs.washington.edu", "inf.ufpr.br", "planet-lab.org",
    "cse.ucsd.edu", "mpi-sws.org", "di.uminho.pt", "cs.uoregon.edu", "ece.gatech.edu", "net.t-labs.tu-berlin.de",
    "cs.cornell.edu", "csail.mit.edu", "eecs.berkeley.edu", "it.uu.se", "info.ucl.ac.be", "comp.nus.edu.sg",
    "ksu.edu.tw", "koganei.wide.ad.jp", "lip6.fr", "cs.huji.ac.il", "pl.sophia.inria.fr", "ntu.edu.tw",
]
TLDS = ["edu", "ac.uk", "de", "jp", "edu.cn", "fr", "br", "ac.kr", "it", "pl", "ch", "ca"]


def planetlab_names(count: int, seed: int = 1) -> list[str]:
    """`count` distinct irregular names, in a shuffled (fleet-file-like) order."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        if rng.random() < 0.5:
            site = rng.choice(SITES)
        else:  # many small sites, some with digits in the domain (pl1.6test.edu.cn style)
            site = (f"{rng.choice(['cs', 'ee', 'net', 'it', 'csail', 'inf', 'lab'])}."
                    f"{rng.choice(['uni', 'inst', 'poly', 'tech', 'u'])}{rng.randint(1, 400)}.{rng.choice(TLDS)}")
        style = rng.randrange(7)
        if style == 0:
            host = f"planetlab-{rng.randint(1, 20)}"
        elif style == 1:
            host = f"node{rng.randint(1, 99)}"
        elif style == 2:
            host = f"pl{rng.randint(1, 9)}"
        elif style == 3:
            host = f"planetlab{rng.randint(0, 99):02d}"
        elif style == 4:
            host = f"{rng.choice(['ple', 'plab', 'pl', 'host'])}{rng.randint(1, 5)}-{rng.randint(1, 3)}"
        elif style == 5:
            host = f"planet{rng.randint(1, 4)}.{rng.choice(['pop', 'dc', 'rack'])}{rng.randint(1, 12)}"
        else:
            host = rng.choice(["alpha", "beta", "orbit", "vn", "kupl", "pln", "saturn", "gamma"])
        names.add(f"{host}.{site}")
    out = sorted(names)
    rng.shuffle(out)
    return out


def timed(fn, repeat: int) -> tuple[float, float, float]:
    """(best CPU, median CPU, median wall) seconds over `repeat` runs. CPU time is the figure
    to compare: on a shared machine wall time also counts waiting for a core."""
    cpu, wall = [], []
    for _ in range(repeat):
        gc.collect()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), statistics.median(cpu), statistics.median(wall)


def clear_fold_cache() -> None:
    nodesets._FOLD_CACHE.clear()
    nodesets._fold_cache_names = 0


def peak(fn) -> int:
    """Peak bytes Python allocated while running fn (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    names = planetlab_names(args.nodes, args.seed)
    clear_fold_cache()
    folded = fold(names)
    assert sorted(expand(folded)) == sorted(names), "fold/expand round trip failed"
    patterns = folded.count(",") + 1
    group = names[: len(names) // 3]  # a third of the fleet, like an "alpha" or a site group
    rest = [n for n in names if n not in set(group)]
    groups = {"alpha": group, "rest": rest}
    selector = Selector(names, groups)
    doc = {"fleet": {"name": "bench", "nodes": [folded]},
           "groups": {"alpha": fold(group), "production": "@all!@alpha"}}
    fleet_text = dumps(doc)

    def cold_fold():
        clear_fold_cache()
        fold(names)

    def select_group():
        selector.select(groups=["alpha"])

    def select_expr():
        selector.select(include=["@all!@alpha"], exclude=[names[0]])

    rows = [
        ("expand folded expression", lambda: expand(folded)),
        ("fold, cold", cold_fold),
        ("fold, cached", lambda: fold(names)),
        ("Selector(...) for the fleet", lambda: Selector(names, groups)),
        ("select -g alpha", select_group),
        ("select -w '@all!@alpha' -x n", select_expr),
        ("select -w 'planet*' (wildcard)", lambda: selector.parse("planet*")),
        ("load fleet file (2 groups)", lambda: loads(fleet_text)),
    ]
    fold(names)  # warm the cache for the "cached" row
    print(f"pltui node sets: {len(names):,} irregular PlanetLab-style names, "
          f"{patterns:,} patterns once folded ({len(folded):,} chars), alpha group {len(group):,} nodes")
    print(f"examples: {', '.join(names[:4])}")
    print()
    print(f"{'operation':<32} {'CPU best':>10} {'CPU median':>11} {'wall median':>12} {'peak alloc':>11}")
    print("-" * 80)
    for label, fn in rows:
        best, median, wall = timed(fn, args.repeat)
        fold(names)  # "fold, cold" empties the cache: refill it for the rows after
        memory = peak(fn)
        print(f"{label:<32} {best * 1000:>8.1f}ms {median * 1000:>9.1f}ms {wall * 1000:>10.1f}ms "
              f"{memory / 2**20:>7.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("-" * 80)
    print(f"process max RSS: {rss:.0f} MiB (Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
