"""Majorities, quorums, drift and protocol cohorts, decided from node observations.

Pure functions over `NodeStatus` values; no I/O. Majorities are per *track* (nodes meant to run
the same bundle), so an alpha stage a version ahead never reads as drift of production.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pltui.model import Health, NodeStatus


@dataclass
class FileVerdict:
    track: str
    path: str
    digest: str | None          # the majority digest, None when there is no quorum
    top_digest: str | None      # the most common digest, majority or not
    holders: int                # answering nodes holding top_digest
    answering: int              # nodes of the track with a checksum report
    quorum: bool

    @property
    def share(self) -> float:
        return self.holders / self.answering if self.answering else 0.0


@dataclass
class Consensus:
    files: dict[tuple[str, str], FileVerdict] = field(default_factory=dict)  # (track, path)
    drift: dict[str, list[str]] = field(default_factory=dict)               # node -> drifted paths
    no_quorum: dict[str, list[str]] = field(default_factory=dict)           # track -> paths
    cohorts: dict[str, list[str]] = field(default_factory=dict)             # protocol -> nodes
    largest_cohort: str | None = None
    isolated: set[str] = field(default_factory=set)
    checked: set[str] = field(default_factory=set)                          # nodes with digests

    def checksum_state(self, node: str) -> str:
        """ok, drift N, no quorum, or '-' (no checksum report)."""
        if node not in self.checked:
            return "-"
        if self.drift.get(node):
            return f"drift {len(self.drift[node])}"
        return "ok"


def decide(statuses: Iterable[NodeStatus], track_of: Mapping[str, str], quorum: float) -> Consensus:
    """Decide per-track file majorities, drifted nodes and protocol cohorts."""
    statuses = list(statuses)
    result = Consensus()
    # per track: (node, its digests) of every node that answered a checksum sweep
    by_track: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for status in statuses:
        if status.digests is not None:
            by_track.setdefault(track_of.get(status.node, "default"), []).append((status.node, status.digests))
            result.checked.add(status.node)
    for track, members in by_track.items():
        paths = sorted({p for _, digests in members for p in digests})
        answering = len(members)
        for path in paths:
            counts = Counter(digests.get(path) for _, digests in members)
            # Missing is a state too: if most nodes lack the file, its presence is the drift.
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
            top, holders = ranked[0]
            tie = len(ranked) > 1 and ranked[1][1] == holders
            has_quorum = not tie and holders / answering > quorum
            verdict = FileVerdict(track, path, top if has_quorum else None, top, holders, answering, has_quorum)
            result.files[(track, path)] = verdict
            if not has_quorum:
                result.no_quorum.setdefault(track, []).append(path)
                continue
            for node, digests in members:
                if digests.get(path) != top:
                    result.drift.setdefault(node, []).append(path)
    cohorts: dict[str, list[str]] = {}
    for status in statuses:
        if status.protocol is not None and status.reachable:
            cohorts.setdefault(status.protocol, []).append(status.node)
    result.cohorts = dict(sorted(cohorts.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    if result.cohorts:
        result.largest_cohort = next(iter(result.cohorts))
        for protocol, nodes in result.cohorts.items():
            if protocol != result.largest_cohort:
                result.isolated.update(nodes)
    return result


def summarise(statuses: Iterable[NodeStatus], consensus: Consensus, quorum: float) -> dict:
    """The sweep summary document (JSON-ready): counts, cohorts, majorities, drift."""
    statuses = list(statuses)
    counts = Counter(s.health.value for s in statuses)
    ssh = Counter(s.ssh.value for s in statuses)
    versions = Counter(s.version for s in statuses if s.version)
    return {
        "nodes": len(statuses),
        "health": {h.value: counts.get(h.value, 0) for h in Health},
        "ssh": dict(sorted(ssh.items())),
        "versions": dict(versions.most_common()),
        "cohorts": {p: len(n) for p, n in consensus.cohorts.items()},
        "largest_cohort": consensus.largest_cohort,
        "isolated": sorted(consensus.isolated),
        "quorum": quorum,
        "files": [
            {
                "track": v.track,
                "path": v.path,
                "majority": v.digest,
                "top_digest": v.top_digest,
                "holders": v.holders,
                "answering": v.answering,
                "share": round(v.share, 4),
                "quorum": v.quorum,
            }
            for v in consensus.files.values()
        ],
        "drift": {node: paths for node, paths in sorted(consensus.drift.items())},
        "no_quorum": consensus.no_quorum,
    }
