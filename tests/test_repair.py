"""`pltui repair` against real SSH nodes (in-process asyncssh nodes running real shell commands
and serving real SFTP)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.repair import RepairAction, check_path, finalize_command, prepare_command
from pltui.demo.nodesim import fleet_document, write_toml
from pltui.ssh import Transport
from pltui.store import Store
from pltui.sweep import Engine

SERVICE = {"important": ["bin/*", "conf/*", "etc/"]}
SSH = {"connect_timeout": "2s", "command_timeout": "10s"}


def plant(root: Path) -> None:
    (root / "bin").mkdir(exist_ok=True)
    (root / "conf").mkdir(exist_ok=True)
    (root / "etc" / "sub").mkdir(parents=True, exist_ok=True)
    app = root / "bin" / "app"
    app.write_bytes(b"#!/bin/sh\necho app v1\n")
    app.chmod(0o750)
    (root / "conf" / "main.conf").write_bytes(b"port=80\n")
    (root / "etc" / "sub" / "app.conf").write_bytes(b"threads=4\n" * 1000)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def cli(*argv: str, timeout: float = 90) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out, err


async def repair(fleet_path, tmp_path, nodes=None, **kwargs):
    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    store = Store(tmp_path / "state.db")
    events = []
    try:
        action = RepairAction(fleet, transport, store, nodes or fleet.node_names, state_dir=tmp_path / "state",
                              emit=events.append, **kwargs)
        report = await action.run()
    finally:
        await transport.close()
        store.close()
    return action, report, events


@pytest.fixture
async def sim5(make_sim_fleet):
    sim = await make_sim_fleet(5, fleet={"service": SERVICE, "ssh_overrides": SSH})
    for node in sim.nodes.values():
        plant(node.root)
    return sim


async def test_drifted_and_missing_files_get_the_majority_version(sim5, tmp_path):
    roots = {n: node.root for n, node in sim5.nodes.items()}
    (roots["sim002"] / "bin" / "app").write_bytes(b"#!/bin/sh\necho TAMPERED\n")
    (roots["sim002"] / "bin" / "app").chmod(0o700)
    (roots["sim004"] / "etc" / "sub" / "app.conf").unlink()
    (roots["sim004"] / "etc" / "sub").rmdir()  # its directory is gone too
    good_app, good_conf = sha(roots["sim001"] / "bin" / "app"), sha(roots["sim001"] / "etc" / "sub" / "app.conf")

    action, report, events = await repair(sim5.fleet_path, tmp_path)

    assert report.ok, report.to_json()
    r2, r4 = report.results["sim002"], report.results["sim004"]
    assert (r2.state, r2.data["repaired"], r2.data["still_drifted"]) == ("done", ["bin/app"], [])
    assert (r4.state, r4.data["repaired"]) == ("done", ["etc/sub/app.conf"])
    assert r4.data["kept"] == {}  # nothing to keep: it was missing
    assert {report.results[n].state for n in ("sim001", "sim003", "sim005")} == {"skipped"}
    # contents and mode now match the majority
    assert sha(roots["sim002"] / "bin" / "app") == good_app
    assert (roots["sim002"] / "bin" / "app").stat().st_mode & 0o777 == 0o750
    assert sha(roots["sim004"] / "etc" / "sub" / "app.conf") == good_conf
    # the drifted copy is kept, outside the important globs
    old = roots["sim002"] / r2.data["kept"]["bin/app"]
    assert old.read_bytes() == b"#!/bin/sh\necho TAMPERED\n"
    assert old.parent.parent.parent.parent.name == ".pltui"
    assert not list(roots["sim002"].rglob(".pltui-repair-*"))  # no temp files left behind
    # re-checksummed: clean
    assert action.engine.consensus.drift == {}
    assert {e.node for e in events if getattr(e, "state", None) == "verifying"} == {"sim002", "sim004"}
    # one fetch per file, verified; then an audit record
    store = Store(tmp_path / "state.db")
    try:
        assert any(a["action"] == "repair" for a in store.audit_log(5))
    finally:
        store.close()
    # a second run finds nothing to do
    _, report, _ = await repair(sim5.fleet_path, tmp_path)
    assert report.ok and {r.state for r in report.results.values()} == {"skipped"}


async def test_cli_dry_run_selection_and_json(sim5, tmp_path):
    roots = {n: node.root for n, node in sim5.nodes.items()}
    (roots["sim002"] / "conf" / "main.conf").write_bytes(b"port=81\n")
    (roots["sim003"] / "conf" / "main.conf").write_bytes(b"port=82\n")
    state = str(tmp_path / "state")

    rc, out, err = await cli("repair", str(sim5.fleet_path), "--state", state, "--dry-run")
    text = out.decode()
    assert rc == 1, err
    assert "checksum sweep: 5 nodes (sim[001-005]), 5 answered" in text
    assert "sim002: planned: would repair 1 file(s)" in text
    assert "    would repair conf/main.conf (" in text and "3/5 nodes) from one of sim[001,004-005]" in text
    assert (roots["sim002"] / "conf" / "main.conf").read_bytes() == b"port=81\n"  # untouched

    # only the selected node is repaired, though the whole track was checksummed
    rc, out, err = await cli("repair", str(sim5.fleet_path), "--state", state, "--json", "-w", "sim002")
    doc = json.loads(out)
    assert rc == 0, err
    assert list(doc["nodes"]) == ["sim002"] and doc["nodes"]["sim002"]["repaired"] == ["conf/main.conf"]
    assert doc["summary"]["swept"] == "sim[001-005]"
    assert (roots["sim002"] / "conf" / "main.conf").read_bytes() == b"port=80\n"
    assert (roots["sim003"] / "conf" / "main.conf").read_bytes() == b"port=82\n"

    rc, out, err = await cli("repair", str(sim5.fleet_path), "--state", state)
    assert rc == 0, err
    assert "sim003: done: repaired 1 file(s)" in out.decode()
    assert "    repaired conf/main.conf (old copy: .pltui/drift/repair-" in out.decode()
    assert (roots["sim003"] / "conf" / "main.conf").read_bytes() == b"port=80\n"


async def test_no_quorum_and_extra_files_are_left_alone(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet={"service": SERVICE, "ssh_overrides": SSH})
    for i, node in enumerate(sim.nodes.values()):
        plant(node.root)
        (node.root / "conf" / "split.conf").write_text("A\n" if i < 2 else "B\n")
    (sim.nodes["sim001"].root / "conf" / "extra.conf").write_text("only here\n")

    action, report, _ = await repair(sim.fleet_path, tmp_path)

    assert action.no_quorum == {"default": [{"path": "conf/split.conf", "split": {
        sha(sim.nodes["sim001"].root / "conf" / "split.conf")[:12]: 2,
        sha(sim.nodes["sim003"].root / "conf" / "split.conf")[:12]: 2}}]}
    for i, node in enumerate(sim.nodes.values()):
        assert (node.root / "conf" / "split.conf").read_text() == ("A\n" if i < 2 else "B\n")
    r1 = report.results["sim001"]
    assert r1.state == "drifted" and r1.data["extra"] == ["conf/extra.conf"] and r1.data["repaired"] == []
    assert (sim.nodes["sim001"].root / "conf" / "extra.conf").read_text() == "only here\n"
    assert {report.results[n].state for n in ("sim002", "sim003", "sim004")} == {"skipped"}
    assert not report.ok

    rc, out, _ = await cli("repair", str(sim.fleet_path), "--state", str(tmp_path / "state"))
    text = out.decode()
    assert rc == 1
    assert "    left alone conf/extra.conf: the majority does not have this file" in text
    assert "no quorum in track default, not repaired: conf/split.conf (2 x " in text


async def test_hostile_file_names_are_repaired_without_running_anything(sim5, tmp_path):
    names = ["we ird 'q' \"dq\" $(touch PWNED) `touch PWNED2`; x.conf", "-rf", "a\\b\tc"]
    for node in sim5.nodes.values():
        for name in names:
            (node.root / "conf" / name).write_text("good\n")
    for name in names:
        (sim5.nodes["sim004"].root / "conf" / name).write_text("bad\n")
    fleet = fleet_mod.load(sim5.fleet_path)
    # hand in an engine with fresh checksums, as the console does
    engine = Engine(fleet, state_dir=tmp_path / "state", store=Store(tmp_path / "engine.db"))
    try:
        await engine.sweep(checksums=True)
        assert sorted(engine.consensus.drift["sim004"]) == sorted(f"conf/{n}" for n in names)
        action = RepairAction(fleet, engine.transport, None, ["sim004"], engine=engine, resweep=False)
        report = await action.run()
    finally:
        await engine.close()
    assert report.ok, report.to_json()
    assert sorted(report.results["sim004"].data["repaired"]) == sorted(f"conf/{n}" for n in names)
    root = sim5.nodes["sim004"].root
    for name in names:
        assert (root / "conf" / name).read_text() == "good\n"
        assert (root / report.results["sim004"].data["kept"][f"conf/{name}"]).read_text() == "bad\n"
    assert not list(sim5.base_dir.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))
    assert not list(Path.cwd().glob("PWNED*"))


async def test_symlinked_directory_is_not_followed_out_of_the_root(sim5, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "main.conf").write_bytes(b"precious\n")
    root = sim5.nodes["sim005"].root
    for f in (root / "conf").iterdir():
        f.unlink()
    (root / "conf").rmdir()
    (root / "conf").symlink_to(outside)

    action, report, _ = await repair(sim5.fleet_path, tmp_path)

    r5 = report.results["sim005"]
    assert r5.state == "failed" and "symbolic link" in r5.data["errors"]["conf/main.conf"]
    assert (outside / "main.conf").read_bytes() == b"precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["main.conf"]


async def test_a_majority_node_going_down_falls_back_to_another(sim5, tmp_path):
    (sim5.nodes["sim005"].root / "bin" / "app").write_bytes(b"drifted\n")
    fleet = fleet_mod.load(sim5.fleet_path)
    transport = Transport(fleet)
    try:
        action = RepairAction(fleet, transport, None, ["sim005"], state_dir=tmp_path / "state")
        plan = await action.make_plan()
        assert plan["plan"]["sim005"]["repair"][0]["sources"] == "sim[001-004]"
        await sim5.set_modes("refuse", ["sim001", "sim002", "sim003"])
        report = await action.run()
    finally:
        await transport.close()
    assert report.ok, report.to_json()
    assert (sim5.nodes["sim005"].root / "bin" / "app").read_bytes() == b"#!/bin/sh\necho app v1\n"


async def test_unreachable_selected_node_is_reported(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, modes={"sim004": "refuse"}, fleet={"service": SERVICE, "ssh_overrides": SSH})
    for node in sim.nodes.values():
        plant(node.root)
    _, report, _ = await repair(sim.fleet_path, tmp_path)
    assert report.results["sim004"].state == "unreachable"
    assert "refused" in report.results["sim004"].message
    assert not report.ok


def test_hostile_paths_are_rejected():
    assert check_path("/etc/passwd")[0] is None
    assert check_path("conf/../../x")[0] is None
    assert check_path("..")[0] is None
    assert check_path(".pltui/monitor.sh")[0] is None
    assert check_path("./")[0] is None
    assert check_path("a\x00b")[0] is None
    assert check_path("./conf//a.conf") == ("conf/a.conf", None)
    assert check_path("conf/..a") == ("conf/..a", None)


def test_node_commands_quote_every_path():
    evil = "conf/$(touch X) `y` 'z'.conf"
    prep = prepare_command("~/svc", evil)
    assert "'./conf/$(touch X) `y` '\"'\"'z'\"'\"'.conf'" in prep
    assert prep.startswith('cd "$HOME"/svc || exit 125')
    fin = finalize_command("/srv/x y", evil, "conf/.pltui-repair-1", ".pltui/drift/r/" + evil, "a" * 64, 0o755)
    assert "cd '/srv/x y' || exit 125" in fin and "chmod 755 --" in fin
    with pytest.raises(ValueError):
        finalize_command("/r", "a", "b", "c", "$(x)" + "a" * 60, 0o644)
    # both are valid POSIX sh
    for script in (prep, fin):
        assert subprocess.run(["/bin/sh", "-n", "-c", script]).returncode == 0


async def test_per_node_roots_with_hostile_names(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet={"service": SERVICE, "ssh_overrides": SSH})
    doc = fleet_document(sim.nodes.values(), name="simfleet", user=sim.user, identity_file=sim.client_key_path,
                         known_hosts=sim.known_hosts_path, ssh_overrides=SSH, service=SERVICE)
    roots = {}
    for name, node in sim.nodes.items():
        roots[name] = node.root / f"svc $(touch PWNED) '{name}'"
        roots[name].mkdir()
        plant(roots[name])
        doc["node"][name]["root"] = str(roots[name])
    fleet_path = write_toml(tmp_path / "fleet.toml", doc)
    (roots["sim003"] / "conf" / "main.conf").write_bytes(b"wrong\n")
    _, report, _ = await repair(fleet_path, tmp_path)
    assert report.ok, report.to_json()
    assert (roots["sim003"] / "conf" / "main.conf").read_bytes() == b"port=80\n"
    assert not list(sim.base_dir.rglob("PWNED"))
