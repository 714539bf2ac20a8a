"""pltui reboot-node and control-command input checks, on real SSH nodes."""

import asyncio
import json
import sys

SERVICE = {"reboot_command": "touch rebooted-by-pltui",
           "process": [{"name": "web", "start": "exec sleep 1000"}]}


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_reboot_node_needs_the_explicit_flag(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet={"service": SERVICE})
    fleet = str(sim.fleet_path)
    rc, out, err = await cli("reboot-node", fleet, "-w", "sim002", "--state", str(tmp_path))
    assert rc == 2 and "--yes-reboot" in err
    assert not (sim.nodes["sim002"].root / "rebooted-by-pltui").exists()
    rc, out, err = await cli("reboot-node", fleet, "-w", "sim002", "--yes-reboot", "--json", "--state", str(tmp_path))
    assert rc == 0, err
    assert json.loads(out)["nodes"]["sim002"]["state"] == "done"
    assert (sim.nodes["sim002"].root / "rebooted-by-pltui").exists()
    assert not (sim.nodes["sim001"].root / "rebooted-by-pltui").exists()
    rc, out, err = await cli("history", fleet, "--state", str(tmp_path))
    assert rc == 0


async def test_control_refuses_unknown_process_and_missing_monitor(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"service": SERVICE})
    fleet = str(sim.fleet_path)
    rc, _, err = await cli("stop", fleet, "--process", "nosuch", "--state", str(tmp_path))
    assert rc == 2 and "unknown process 'nosuch'" in err
    rc, out, _ = await cli("start", fleet, "--json", "--state", str(tmp_path))
    assert rc == 1
    report = json.loads(out)
    assert all(n["state"] == "failed" and "bootstrap" in n["message"] for n in report["nodes"].values())


async def test_audit_log_records_actions(make_sim_fleet, tmp_path):
    from pltui.fleet import load
    from pltui.paths import fleet_dir
    from pltui.store import Store

    sim = await make_sim_fleet(2, fleet={"service": SERVICE})
    rc, _, err = await cli("reboot-node", str(sim.fleet_path), "--yes-reboot", "--state", str(tmp_path))
    assert rc == 0, err
    fleet = load(sim.fleet_path)
    store = Store(fleet_dir(tmp_path, fleet.name, fleet.path) / "pltui.db")
    (entry,) = [e for e in store.audit_log() if e["action"] == "reboot-node"]
    assert json.loads(entry["nodes"]) == ["sim001", "sim002"] and entry["result"] == "ok"
