"""Majorities per track, quorum, drift (including missing files) and protocol cohorts."""

from pltui.consensus import decide, summarise
from pltui.model import NodeStatus, SSHState

A, B, C = "a" * 64, "b" * 64, "c" * 64


def node(name, digests=None, protocol="7", ssh=SSHState.OK):
    return NodeStatus(node=name, ssh=ssh, digests=digests, protocol=protocol)


def test_majority_and_drift():
    statuses = [node("n1", {"f": A}), node("n2", {"f": A}), node("n3", {"f": B})]
    result = decide(statuses, {}, 0.5)
    verdict = result.files[("default", "f")]
    assert verdict.quorum and verdict.digest == A and verdict.holders == 2 and verdict.answering == 3
    assert result.drift == {"n3": ["f"]}
    assert result.checksum_state("n3") == "drift 1" and result.checksum_state("n1") == "ok"


def test_missing_file_is_drift():
    statuses = [node("n1", {"f": A, "g": C}), node("n2", {"f": A, "g": C}), node("n3", {"f": A})]
    result = decide(statuses, {}, 0.5)
    assert result.drift == {"n3": ["g"]}


def test_no_quorum_when_share_does_not_exceed_fraction():
    statuses = [node("n1", {"f": A}), node("n2", {"f": A}), node("n3", {"f": B}), node("n4", {"f": C})]
    result = decide(statuses, {}, 0.5)  # 2/4 is not more than half
    assert not result.files[("default", "f")].quorum
    assert result.no_quorum == {"default": ["f"]}
    assert result.drift == {}


def test_tie_is_no_quorum_even_with_low_fraction():
    statuses = [node("n1", {"f": A}), node("n2", {"f": B})]
    assert not decide(statuses, {}, 0.0).files[("default", "f")].quorum


def test_tracks_decide_separately():
    statuses = [node("a1", {"f": B}), node("p1", {"f": A}), node("p2", {"f": A}), node("p3", {"f": A})]
    track_of = {"a1": "alpha", "p1": "prod", "p2": "prod", "p3": "prod"}
    result = decide(statuses, track_of, 0.5)
    assert result.drift == {}
    assert result.files[("alpha", "f")].digest == B


def test_nodes_without_checksums_do_not_vote():
    statuses = [node("n1", {"f": A}), node("n2", {"f": A}), node("n3", None)]
    result = decide(statuses, {}, 0.5)
    assert result.files[("default", "f")].answering == 2
    assert result.checksum_state("n3") == "-"


def test_cohorts_and_isolated():
    statuses = [node("n1", protocol="7"), node("n2", protocol="7"), node("n3", protocol="8"),
                node("n4", protocol="8", ssh=SSHState.REFUSED), node("n5", protocol=None)]
    result = decide(statuses, {}, 0.5)
    assert result.cohorts == {"7": ["n1", "n2"], "8": ["n3"]}
    assert result.largest_cohort == "7"
    assert result.isolated == {"n3"}
    summary = summarise(statuses, result, 0.5)
    assert summary["cohorts"] == {"7": 2, "8": 1} and summary["isolated"] == ["n3"]
    assert summary["health"]["down"] == 1
