"""Transitions are events: per node went-down / came-back / new-drift / repaired / version and
protocol changed / monitor healed / crash-looping, with `since` times, from pure rules
(pltui.transitions) emitted by the engine, stored as events (kind "transition"), and shown by
`pltui sweep` (text and JSON) and `pltui history`. `pltui sweep` exits 1 while a node is isolated.
"""

from __future__ import annotations

import json
import subprocess

from pltui.model import NodeStatus, NodeTransition, ProcStatus, SSHState
from pltui.transitions import drift_transitions, node_transitions
from tests.test_exec import cli
from tests.test_sweep import plant

SERVICE = {"important": ["bin/*", "etc/"], "logs": ["logs/*.log"]}
SSH = {"connect_timeout": "2s", "command_timeout": "5s"}


def up(name: str, t: float, **kw) -> NodeStatus:
    return NodeStatus(node=name, ssh=SSHState.OK, observed=t, version=kw.pop("version", "1.0"),
                      protocol=kw.pop("protocol", "7"), monitor="alive", **kw)


def kinds(found: list[NodeTransition]) -> list[str]:
    return [t.kind for t in found]


# -- the rules (pure) ----------------------------------------------------------------------------


def test_down_and_back_with_since_times():
    down = NodeStatus(node="n1", ssh=SSHState.TIMEOUT, error="no answer in 5s", observed=200.0)
    went = node_transitions(up("n1", 100.0), down)
    assert [(t.kind, t.since) for t in went] == [("went-down", 200.0)] and "no answer in 5s" in went[0].detail
    assert node_transitions(down, NodeStatus(node="n1", ssh=SSHState.REFUSED, observed=300.0)) == []
    back = node_transitions(down, up("n1", 400.0))
    assert [(t.kind, t.since) for t in back] == [("came-back", 400.0)]
    # the first observation of a node is no change
    assert node_transitions(NodeStatus(node="n1"), down) == [] and node_transitions(None, up("n1", 1.0)) == []


def test_version_protocol_and_crash_looping():
    before = up("n1", 1.0, processes=[ProcStatus("web", True, 10, "running", restarts=0)])
    after = up("n1", 2.0, version="1.1", protocol="8",
               processes=[ProcStatus("web", False, None, "backoff", restarts=5, last_exit=3)])
    found = node_transitions(before, after)
    assert kinds(found) == ["version-changed", "protocol-changed", "crash-looping"]
    assert found[0].detail == "version 1.0 -> 1.1" and "web" in found[2].detail and "backoff" in found[2].detail
    # still in backoff next sweep: not a new transition
    assert node_transitions(after, up("n1", 3.0, version="1.1", protocol="8", processes=after.processes)) == []
    # restarting fast without backoff is crash-looping too
    fast = up("n1", 4.0, processes=[ProcStatus("web", True, 11, "running", restarts=4)])
    assert kinds(node_transitions(before, fast)) == ["crash-looping"]


def test_drift_and_repair_against_the_majority():
    statuses = {"a": up("a", 5.0), "b": up("b", 5.0)}
    found = drift_transitions({"b": ["bin/x"]}, {"a": ["bin/app"]}, statuses, ["a", "b"])
    assert [(t.node, t.kind) for t in found] == [("a", "new-drift"), ("b", "repaired")]
    assert "bin/app" in found[0].detail


# -- the engine and the CLI against real SSH nodes ----------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_sweep_reports_transitions_heals_and_isolation(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet={"service": SERVICE, "ssh_overrides": SSH})
    for node in sim.nodes.values():
        plant(node.root)
    fleet, state = str(sim.fleet_path), ["--state", str(tmp_path / "state")]
    rc, out, err = await cli("sweep", fleet, *state, "--checksums", "--json")
    assert rc == 0, err
    assert json.loads(out)["transitions"] == []

    # an isolated node (protocol outside the largest cohort) is not a healthy fleet
    plant(sim.nodes["sim003"].root, protocol="8")
    rc, out, err = await cli("sweep", fleet, *state)
    assert rc == 1, out + err
    assert "sim003 protocol-changed" in out.decode() and "isolated sim003" in out.decode()

    await sim.nodes["sim002"].set_mode("refuse")
    plant(sim.nodes["sim003"].root, protocol="7", version="2.0")
    plant(sim.nodes["sim004"].root, app=b"tampered")
    pltui_dir = sim.nodes["sim001"].root / ".pltui"
    pltui_dir.mkdir(exist_ok=True)
    (pltui_dir / "monitor.pid").write_text(f"{dead_pid()}\n")
    (pltui_dir / "monitor.sh").write_text("echo monitor started; exit 0\n")
    rc, out, err = await cli("sweep", fleet, *state, "--checksums", "--heal", "monitor", "--json")
    assert rc == 1, err
    doc = json.loads(out)
    got = {(t["node"], t["kind"]) for t in doc["transitions"]}
    assert {("sim002", "went-down"), ("sim003", "version-changed"), ("sim003", "protocol-changed"),
            ("sim004", "new-drift"), ("sim001", "monitor-healed")} <= got, doc["transitions"]
    assert all(t["since"] for t in doc["transitions"])
    assert doc["heals"] == [{"node": "sim001", "ok": True, "message": "restarted monitor: monitor started"}]

    # still down: no new transition, and its old checksums are not shown as current
    rc, out, err = await cli("sweep", fleet, *state)
    text = out.decode()
    assert "transitions" not in text, text
    sim002 = next(line for line in text.splitlines() if line.startswith("sim002"))
    assert sim002.split()[1:3] == ["down", "refused"] and " ok" not in sim002, sim002

    await sim.nodes["sim002"].set_mode("ok")
    plant(sim.nodes["sim004"].root)
    rc, out, err = await cli("sweep", fleet, *state, "--checksums")
    text = out.decode()
    assert "sim002 came-back" in text and "sim004 repaired" in text, text

    rc, out, err = await cli("history", fleet, *state, "-w", "sim002")
    text = out.decode()
    assert rc == 0 and "went-down" in text and "came-back" in text and "sim004" not in text, text
    rc, out, err = await cli("history", fleet, *state, "-w", "sim001", "--json")
    events = json.loads(out)["transitions"]
    assert [(e["node"], e["kind"]) for e in events] == [("sim001", "monitor-healed")]


async def test_a_following_process_sees_the_owners_transitions(make_sim_fleet, tmp_path):
    from pltui import fleet as fleet_mod
    from pltui.sweep import Engine

    sim = await make_sim_fleet(2, fleet={"service": SERVICE, "ssh_overrides": SSH})
    for node in sim.nodes.values():
        plant(node.root)
    owner = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
    follower = None
    try:
        await owner.sweep()
        follower = Engine(fleet_mod.load(sim.fleet_path), state_dir=tmp_path / "state")
        queue = follower.subscribe()
        await follower._follow_once()
        await sim.nodes["sim002"].set_mode("refuse")
        await owner.sweep()
        await follower._follow_once()
        seen = []
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, NodeTransition):
                seen.append((event.node, event.kind))
        assert seen == [("sim002", "went-down")]
        stored = [e for e in owner.store.events("sim002") if e["kind"] == "transition"]
        assert len(stored) == 1  # stored once, by the owner
    finally:
        await owner.close()
        if follower is not None:
            await follower.close()
