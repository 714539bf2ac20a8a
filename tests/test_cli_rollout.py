"""`pltui rollout --resume/--rollback` honour the node selection (-w/-g/-x/-X): only the selected
nodes of the rollout are resumed or rolled back, the others are left exactly as they are; and the
state saved per step never carries an earlier step's message (what `--status` shows after a crash).
"""

from __future__ import annotations

import json

from pltui import fleet as fleetfile
from pltui.actions.bundle import Bundle
from pltui.actions.rollout import Rollout, build_stages, describe, load_saved
from pltui.ssh import Transport
from pltui.store import Store
from tests.test_rollout import acli, make_bundle, pids_alive, sim_fleet_kwargs, version_on


async def test_rollback_with_a_selection_rolls_back_only_those_nodes(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet=sim_fleet_kwargs())
    state = tmp_path / "state"
    fleet = str(sim.fleet_path)
    code, out, err = await acli("rollout", fleet, str(make_bundle(tmp_path, "1.0")), "--yes", state=state)
    assert code == 0, out + err
    assert f"undo: pltui rollout {fleet} --rollback " in out  # the report ends with how to undo it
    code, out, err = await acli("rollout", fleet, str(make_bundle(tmp_path, "2.0")), "--yes", "--json", state=state)
    assert code == 0, out + err
    action_id = json.loads(out)["action_id"]

    code, out, err = await acli("rollout", fleet, "--rollback", action_id, "-w", "sim[001-002]", "--json",
                                state=state)
    assert code == 0, out + err
    doc = json.loads(out)
    assert set(doc["nodes"]) == {"sim001", "sim002"}
    assert {r["state"] for r in doc["nodes"].values()} == {"rolled-back"}
    assert {n: version_on(node) for n, node in sim.nodes.items()} == {
        "sim001": "1.0", "sim002": "1.0", "sim003": "2.0", "sim004": "2.0"}
    assert all(pids_alive(node) == {"svc": True, "aux": True} for node in sim.nodes.values())

    # a selection outside the rollout is refused, never widened to "all"
    code, out, err = await acli("rollout", fleet, "--rollback", action_id, "-w", "nosuch", state=state)
    assert code == 2 and "nosuch" in err, out + err
    assert version_on(sim.nodes["sim003"]) == "2.0"


async def test_resume_with_a_selection_resumes_only_those_nodes(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet=sim_fleet_kwargs())
    state = tmp_path / "state"
    fleet = str(sim.fleet_path)
    # no terminal and no --yes: stops paused before the second stage, resumable
    code, out, err = await acli("rollout", fleet, str(make_bundle(tmp_path, "3.0")), "--stage", "alpha",
                                "--stage", "all", state=state)
    assert code == 1 and "paused before stage all" in out, out + err
    action_id = out.split()[1].rstrip(":")
    code, out, err = await acli("rollout", fleet, "--resume", action_id, "-w", "sim003", "--yes", "--json",
                                state=state)
    assert code == 0, out + err
    assert set(json.loads(out)["nodes"]) == {"sim003"}
    assert {n: version_on(node) for n, node in sim.nodes.items()} == {
        "sim001": "3.0", "sim002": None, "sim003": "3.0", "sim004": None}
    # the rest is still resumable
    code, out, _ = await acli("rollout", fleet, "--status", action_id, "--json", state=state)
    status = json.loads(out)
    assert status["nodes"]["sim002"]["phase"] == "pending" and status["nodes"]["sim003"]["phase"] == "done"


async def test_each_step_saves_its_own_message(make_sim_fleet, tmp_path):
    """A node's saved message belongs to its saved phase: after a crash in `stopping`, `--status`
    must not show the upload step's "verifying sha256 and extracting"."""
    sim = await make_sim_fleet(3, fleet=sim_fleet_kwargs())
    fleet = fleetfile.load(sim.fleet_path)
    store = Store(tmp_path / "state.db")
    transport = Transport(fleet)
    try:
        bundle = Bundle.open(make_bundle(tmp_path, "1.0"), tmp_path / "bundles", version_file=fleet.service.version_file)
        action = Rollout.new(fleet, transport, store, bundle, build_stages(fleet, None), state_dir=tmp_path / "s")
        await action.set_phase("sim001", "uploading", "verifying sha256 and extracting")
        await action.set_phase("sim001", "uploaded")
        await action.set_phase("sim001", "stopping")
        rec = describe(load_saved(store, action.action_id))["nodes"]["sim001"]
        assert rec["phase"] == "stopping"
        assert "sha256" not in (rec.get("message") or "")
    finally:
        await transport.close()
        store.close()


def test_status_refuses_a_selection_it_would_ignore(tmp_path, capsys):
    from pltui.cli import main
    from pltui.demo.nodesim import write_toml

    path = write_toml(tmp_path / "fleet.toml", {"fleet": {"name": "r", "nodes": ["n[1-3]"]}})
    assert main(["rollout", str(path), "--status", "-w", "n1", "--state", str(tmp_path / "s")]) == 2
    assert "--status" in capsys.readouterr().err
