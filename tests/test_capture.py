"""`pltui capture`: state snapshots streamed into DEST/<timestamp>/<node>.tar.gz, per-node status,
against in-process asyncssh nodes (real shell commands) and a real OpenSSH sshd fleet."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.base import ActionError
from pltui.actions.capture import CaptureState, check_archive
from pltui.ssh import Transport

SSH = {"connect_timeout": "3s", "command_timeout": "10s"}
STATE = ["state", "db/*.sqlite", "missing.conf"]


async def capture(fleet_path, dest, nodes=None, **kwargs):
    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    try:
        action = CaptureState(fleet, transport, None, nodes or fleet.node_names, dest=dest, **kwargs)
        return await action.run()
    finally:
        await transport.close()


async def cli(*argv: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out, err


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


def plant_state(root: Path, tag: str) -> None:
    (root / "state" / "cache").mkdir(parents=True, exist_ok=True)
    (root / "state" / "cache" / "index").write_text(f"index of {tag}\n")
    (root / "state" / "peers").write_text(f"peers of {tag}\n")
    (root / "db").mkdir(exist_ok=True)
    (root / "db" / "main.sqlite").write_bytes(b"SQLite format 3\0" + tag.encode())


async def test_capture_with_an_unreachable_node_completes_the_rest(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, modes={"sim003": "refuse"},
                               fleet={"ssh_overrides": SSH, "service": {"state": STATE}})
    for name, node in sim.nodes.items():
        plant_state(node.root, name)
    dest = tmp_path / "snap"
    code, out, err = await cli("capture", str(sim.fleet_path), "--dest", str(dest), "--json",
                               "--state", str(tmp_path / "state"))
    assert code == 1, err
    doc = json.loads(out)
    nodes = doc["nodes"]
    assert nodes["sim003"]["state"] == "unreachable" and "refused" in nodes["sim003"]["message"]
    (snap,) = [p for p in dest.iterdir() if p.is_dir()]
    assert doc["summary"]["dir"] == str(snap)
    for name in ("sim001", "sim002", "sim004"):
        assert nodes[name]["state"] == "done", nodes[name]
        assert nodes[name]["missing"] == ["missing.conf"] and "missing: missing.conf" in nodes[name]["message"]
        got = members(snap / f"{name}.tar.gz")
        assert got == {"./state/cache/index": f"index of {name}\n".encode(),
                       "./state/peers": f"peers of {name}\n".encode(),
                       "./db/main.sqlite": b"SQLite format 3\0" + name.encode()}
    assert not (snap / "sim003.tar.gz").exists()
    assert sorted(p.name for p in snap.iterdir()) == ["sim001.tar.gz", "sim002.tar.gz", "sim004.tar.gz", "status.json"]
    assert json.loads((snap / "status.json").read_text())["nodes"]["sim003"]["state"] == "unreachable"
    # a second capture goes to its own directory, never over the first
    code, out, _ = await cli("capture", str(sim.fleet_path), "--dest", str(dest), "-x", "sim003",
                             "--state", str(tmp_path / "state"))
    assert code == 0, out
    assert len([p for p in dest.iterdir() if p.is_dir()]) == 2
    assert b"3 done" in out


async def test_missing_paths_and_hostile_names(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": SSH,
                                         "service": {"state": ["st", "-rf", "$(touch pwned)", "a b;c"]}})
    node = sim.nodes["sim001"]
    (node.root / "st").mkdir()
    (node.root / "st" / "new\nline $(touch pwned) 'q'.db").write_bytes(b"x")
    (node.root / "-rf").write_bytes(b"dash")
    (node.root / "a b;c").write_bytes(b"semi")
    report = await capture(sim.fleet_path, tmp_path / "snap")
    assert report.results["sim001"].state == "done"
    assert report.results["sim002"].state == "skipped" and "none of the state paths" in report.results["sim002"].message
    assert report.ok
    archive = Path(report.results["sim001"].data["archive"])
    assert members(archive) == {"./st/new\nline $(touch pwned) 'q'.db": b"x", "./-rf": b"dash", "./a b;c": b"semi"}
    assert report.results["sim001"].data["missing"] == ["$(touch pwned)"]
    assert not list(sim.base_dir.rglob("pwned")) and not list(tmp_path.rglob("pwned"))
    assert not (archive.parent / "sim002.tar.gz").exists()


async def test_paths_override_and_no_paths(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(1, fleet={"ssh_overrides": SSH})
    (sim.nodes["sim001"].root / "only.txt").write_text("only\n")
    with pytest.raises(ActionError, match="no state paths"):
        await capture(sim.fleet_path, tmp_path / "snap")
    report = await capture(sim.fleet_path, tmp_path / "snap", paths=["only.txt"])
    assert report.ok
    assert members(Path(report.results["sim001"].data["archive"])) == {"./only.txt": b"only\n"}


async def test_large_state_is_streamed_not_staged_in_memory(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(1, fleet={"ssh_overrides": SSH, "service": {"state": ["big"]}})
    (sim.nodes["sim001"].root / "big").write_bytes(os.urandom(48 << 20))
    tracemalloc.start()
    try:
        report = await capture(sim.fleet_path, tmp_path / "snap")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.to_json()
    assert report.results["sim001"].data["bytes"] == 48 << 20
    # the simulated node's server runs in this process too; both stay far below the archive size
    assert peak < 24 << 20, f"peak {peak >> 20} MiB while capturing 48 MiB"


async def test_corrupt_stream_is_refused_and_leaves_nothing(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, modes={"sim002": "garbage"}, fleet={"ssh_overrides": SSH, "service": {"state": ["s"]}})
    for node in sim.nodes.values():
        (node.root / "s").write_text("state\n")
    report = await capture(sim.fleet_path, tmp_path / "snap")
    assert report.results["sim001"].state == "done"
    assert report.results["sim002"].state == "failed"
    snap = Path(report.summary["dir"])
    assert sorted(p.name for p in snap.iterdir()) == ["sim001.tar.gz", "status.json"]


def test_check_archive_refuses_truncated(tmp_path):
    good = tmp_path / "good.tar.gz"
    src = tmp_path / "f"
    src.write_bytes(os.urandom(300_000))
    with tarfile.open(good, "w:gz") as archive:
        archive.add(src, arcname="f")
    assert check_archive(good) == (1, 300_000)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises((tarfile.TarError, EOFError, OSError)):
        check_archive(bad)


async def test_capture_on_real_sshd_with_a_down_node(make_sshd_fleet, tmp_path):
    fleet = await asyncio.to_thread(make_sshd_fleet, 3, fleet={"ssh_overrides": SSH, "service": {"state": STATE}},
                                    solo=["sshd002"])
    for name, node in fleet.nodes.items():
        plant_state(node.root, name)
    await asyncio.to_thread(fleet.down, "sshd002")
    report = await capture(fleet.fleet_path, tmp_path / "snap")
    assert report.results["sshd002"].state == "unreachable"
    for name in ("sshd001", "sshd003"):
        assert report.results[name].state == "done", report.results[name]
        assert members(Path(report.results[name].data["archive"]))["./state/peers"] == f"peers of {name}\n".encode()
    assert not report.ok
