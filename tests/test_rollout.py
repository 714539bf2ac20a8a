"""Rollouts against real SSH nodes: simulated nodes (asyncssh, real shell commands) for most,
the real-sshd fleet for the two-stage rollout of the issue's "done means".

Every service process a test starts carries the test fleet's marker in its environment and is
killed when the fleet stops (SimFleet.stop / SshdFleet.stop); tests that finish with processes
running also stop them through release.sh, so nothing lingers."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pltui import fleet as fleetfile
from pltui.actions.base import Control
from pltui.actions.bundle import Bundle, BundleError
from pltui.actions.rollout import Rollout, batch_sizes, budget_allows, build_stages, describe, load_saved
from pltui.model import ActionProgress
from pltui.paths import fleet_dir
from pltui.ssh import Transport
from pltui.store import Store

PROCS = [{"name": "svc", "start": "bin/svc", "stop_timeout": "3s"},
         {"name": "aux", "start": "bin/aux", "stop_timeout": "3s"}]
SERVICE = {"process": PROCS}
GROUPS = {"alpha": "sim001", "beta": "sim[002-003]"}


def make_bundle(base: Path, version: str, *, body: str = "exec sleep 1000", extra: dict | None = None) -> Path:
    """A bundle directory: VERSION, bin/svc and bin/aux (long sleepers unless `body` says otherwise)."""
    d = base / f"bundle-{version}"
    (d / "bin").mkdir(parents=True)
    (d / "VERSION").write_text(f"{version}\n")
    for name in ("svc", "aux"):
        script = d / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    (d / "share").mkdir()
    (d / "share" / "data.txt").write_text(f"data of {version}\n")
    for rel, text in (extra or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


def version_on(node) -> str | None:
    try:
        return (Path(node.root) / "VERSION").read_text().splitlines()[0]
    except OSError:
        return None


def pids_alive(node) -> dict[str, bool]:
    out = {}
    for p in PROCS:
        pidfile = Path(node.root) / ".pltui" / "run" / f"{p['name']}.pid"
        try:
            pid = int(pidfile.read_text().strip())
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            out[p["name"]] = state not in ("Z", "X")
        except (OSError, ValueError):
            out[p["name"]] = False
    return out


async def run_rollout(fleet_path: Path, bundle_dir: Path, tmp: Path, *, selected=None, stage_args=(), batch=None,
                      max_fail=None, parallel=None, control=None, emit=None, **kwargs):
    fleet = fleetfile.load(fleet_path)
    store = Store(tmp / "state.db")
    transport = Transport(fleet)
    try:
        bundle = Bundle.open(bundle_dir, tmp / "bundles", version_file=fleet.service.version_file)
        stages = build_stages(fleet, selected, stage_args=stage_args, batch=batch, max_fail=max_fail, parallel=parallel)
        action = Rollout.new(fleet, transport, store, bundle, stages, state_dir=tmp / "state",
                             control=control or Control(auto_continue=True), emit=emit, **kwargs)
        report = await action.run()
        return action, report
    finally:
        await transport.close()
        store.close()


async def resume_or_rollback(fleet_path: Path, tmp: Path, action_id: str, mode: str, **kwargs):
    fleet = fleetfile.load(fleet_path)
    store = Store(tmp / "state.db")
    transport = Transport(fleet)
    try:
        action = Rollout.load(fleet, transport, store, action_id, mode=mode, state_dir=tmp / "state",
                              control=Control(auto_continue=True), **kwargs)
        return action, await action.run()
    finally:
        await transport.close()
        store.close()


def cli(*args: str, state: Path, timeout: float = 120) -> tuple[int, str, str]:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "pltui", *args, "--state", str(state)], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


async def acli(*args: str, state: Path, timeout: float = 120) -> tuple[int, str, str]:
    """The CLI in a subprocess without blocking the loop that serves the simulated nodes."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *args, "--state", str(state),
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def sim_fleet_kwargs(**rollout) -> dict:
    doc = {"health_timeout": "10s"}
    doc.update(rollout)
    return {"service": SERVICE, "groups": GROUPS, "rollout": doc}


# --------------------------------------------------------------------------------------------
# Planning (no nodes)


def test_batch_sizes_ansible_serial_style():
    assert batch_sizes(["100%"], 7) == [7]
    assert batch_sizes([1, "5%", "25%", "100%"], 40) == [1, 2, 10, 27]
    assert batch_sizes([2], 5) == [2, 2, 1]             # the last entry repeats
    assert batch_sizes(["30%"], 3) == [1, 1, 1]         # floor, but at least one node
    assert batch_sizes([1, 3], 10) == [1, 3, 3, 3]
    assert sum(batch_sizes([1, "5%", "25%"], 1000)) == 1000


def test_failure_budget_means_strictly_more_than():
    assert budget_allows(0, 5, 0) and not budget_allows(1, 5, 0)
    assert budget_allows(2, 5, 2) and not budget_allows(3, 5, 2)
    assert budget_allows(1, 10, "10%") and not budget_allows(2, 10, "10%")
    assert not budget_allows(1, 5, "10%")               # 20% > 10%
    assert budget_allows(5, 5, "100%")


def test_stages_from_fleet_file_and_command_line(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text("""
[fleet]
name = "plan"
nodes = ["n[01-10]"]
[groups]
alpha = "n01"
prod = "@all"
[[rollout.stage]]
name = "alpha"
group = "alpha"
[[rollout.stage]]
name = "production"
group = "prod"
batch = [1, "50%"]
max_fail = "10%"
pause = true
""")
    fleet = fleetfile.load(path)
    stages = build_stages(fleet, None)
    assert [s.name for s in stages] == ["alpha", "production"]
    assert stages[0].batches == [["n01"]]
    assert [len(b) for b in stages[1].batches] == [1, 4, 4]  # alpha's node is not taken twice
    assert stages[1].pause and stages[1].max_fail == "10%"
    # a selection leaves the other nodes alone
    stages = build_stages(fleet, ["n01", "n02", "n03"])
    assert [s.nodes for s in stages] == [["n01"], ["n02", "n03"]]
    # command-line stages: pause before each after the first; overrides for every stage
    stages = build_stages(fleet, None, stage_args=["alpha", "prod:2:1"], parallel=3)
    assert [(s.name, len(s.batches), s.max_fail, s.pause, s.parallel) for s in stages] == [
        ("alpha", 1, 0, False, 3), ("prod", 5, 1, True, 3)]
    stages = build_stages(fleet, None, batch="5", max_fail="20%")
    assert all(s.max_fail == "20%" for s in stages) and [len(b) for b in stages[1].batches] == [5, 4]


# --------------------------------------------------------------------------------------------
# Bundles


def _tarball(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return path


def test_bundle_is_deterministic_and_unwraps_one_top_directory(tmp_path):
    d = make_bundle(tmp_path, "1.2.3")
    a = Bundle.open(d, tmp_path / "w1")
    b = Bundle.open(d, tmp_path / "w2")
    assert a.sha256 == b.sha256 and a.version == "1.2.3"
    assert a.entries == ("VERSION", "bin", "share") and a.files == 4
    wrapped = _tarball(tmp_path / "svc-1.2.3.tar.gz", [("svc-1.2.3/VERSION", b"1.2.3\n", None),
                                                       ("svc-1.2.3/bin/run", b"#!/bin/sh\n", None),
                                                       ("svc-1.2.3/lib", None, "bin")])
    c = Bundle.open(wrapped, tmp_path / "w3")
    assert c.version == "1.2.3" and c.entries == ("VERSION", "bin", "lib")
    with tarfile.open(c.tarball) as tar:
        assert sorted(tar.getnames()) == ["VERSION", "bin/run", "lib"]
        assert all(m.uid == 0 and m.uname == "" for m in tar.getmembers())


@pytest.mark.parametrize("case, message", [
    ("no-version", "no VERSION file"),
    ("not-tarball", "not a directory or a .tar.gz"),
    ("traversal", "climbs out of the bundle"),
    ("absolute", "absolute path"),
    ("link-out", "points outside the bundle"),
    ("abs-link", "is absolute"),
    ("pltui-dir", "pltui's own directory"),
    ("empty-version", "empty first line"),
    ("missing", "no such bundle"),
])
def test_bad_bundles_are_refused_with_one_clear_line(tmp_path, case, message):
    if case == "no-version":
        bad = tmp_path / "b"
        (bad / "bin").mkdir(parents=True)
        (bad / "bin" / "x").write_text("x")
    elif case == "not-tarball":
        bad = tmp_path / "bundle.tar.gz"
        bad.write_text("this is not a tarball\n")
    elif case == "traversal":
        bad = _tarball(tmp_path / "t.tar.gz", [("VERSION", b"1\n", None), ("bin/../../evil", b"x", None)])
    elif case == "absolute":
        bad = _tarball(tmp_path / "t.tar.gz", [("VERSION", b"1\n", None), ("/etc/evil", b"x", None)])
    elif case == "link-out":
        bad = _tarball(tmp_path / "t.tar.gz", [("VERSION", b"1\n", None), ("bin/l", None, "../../etc")])
    elif case == "abs-link":
        bad = tmp_path / "b"
        bad.mkdir()
        (bad / "VERSION").write_text("1\n")
        os.symlink("/etc/passwd", bad / "pw")
    elif case == "pltui-dir":
        bad = _tarball(tmp_path / "t.tar.gz", [("VERSION", b"1\n", None), (".pltui/monitor.sh", b"x", None)])
    elif case == "empty-version":
        bad = tmp_path / "b"
        bad.mkdir()
        (bad / "VERSION").write_text("\n2\n")
    else:
        bad = tmp_path / "nothing-here"
    with pytest.raises(BundleError) as info:
        Bundle.open(bad, tmp_path / "work")
    text = str(info.value)
    assert message in text and str(bad) in text and "\n" not in text


def test_bad_bundle_on_the_command_line_exits_2(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[fleet]\nname = "f"\nnodes = ["n1"]\n')
    bad = _tarball(tmp_path / "evil.tar.gz", [("VERSION", b"1\n", None), ("../evil", b"x", None)])
    code, out, err = cli("rollout", str(fleet), str(bad), "--yes", state=tmp_path / "state")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and "climbs out" in err
    code, _, err = cli("rollout", str(fleet), str(tmp_path / "nope"), state=tmp_path / "state")
    assert code == 2 and "no such bundle" in err
    code, _, err = cli("rollout", str(fleet), state=tmp_path / "state")
    assert code == 2 and "give a BUNDLE" in err
    code, _, err = cli("rollout", str(fleet), "--status", state=tmp_path / "state")
    assert code == 2 and "no rollout recorded" in err


# --------------------------------------------------------------------------------------------
# Rollouts on simulated nodes


async def test_two_stage_rollout_pause_answered_then_reload(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet=sim_fleet_kwargs(stage=[
        {"name": "alpha", "group": "alpha"},
        {"name": "production", "group": "all", "batch": [1, "50%"], "pause": True, "parallel": 4},
    ]))
    control = Control()
    events: list[ActionProgress] = []
    gate_seen = []

    def emit(event):
        if isinstance(event, ActionProgress):
            events.append(event)
            if event.node is None and event.state == "paused":
                # the operator (here: the test, as the TUI would) answers the pause
                done_then = sorted(e.node for e in events if e.state == "done")
                gate_seen.append(done_then)
                asyncio.get_running_loop().call_later(0.1, control.answer_gate, True)

    action, report = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path, control=control, emit=emit)
    assert report.ok, report.to_json()
    assert gate_seen == [["sim001"]]  # alpha was done, nothing else, when production waited
    assert report.summary["versions"] == {"1.0": 5} and report.summary["status"] == "done"
    for node in sim.nodes.values():
        assert version_on(node) == "1.0" and pids_alive(node) == {"svc": True, "aux": True}
    batches = [e.state for e in events if e.node is None and e.state.startswith("stage")]
    assert batches == ["stage alpha batch 1/1", "stage production batch 1/3", "stage production batch 2/3",
                       "stage production batch 3/3"]
    steps = [e.state for e in events if e.node == "sim003"]
    for step in ("uploading", "uploaded", "stopping", "stopped", "swapping", "swapped", "starting", "verifying", "done"):
        assert step in steps
    assert any(e.bytes_total and e.bytes_done == e.bytes_total for e in events if e.node == "sim003")

    # --reload: swap, then reload (no reload command configured: restarted), same checks
    old = {n: (Path(node.root) / ".pltui/run/svc.pid").read_text() for n, node in sim.nodes.items()}
    action2, report2 = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.1"), tmp_path, reload=True)
    assert report2.ok, report2.to_json()
    assert all(e == "1.1" for e in (version_on(n) for n in sim.nodes.values()))
    assert all(pids_alive(n) == {"svc": True, "aux": True} for n in sim.nodes.values())
    assert {n: (Path(node.root) / ".pltui/run/svc.pid").read_text() for n, node in sim.nodes.items()} != old
    phases = {rec["phase"] for rec in action2.state["nodes"].values()}
    assert phases == {"done"} and not any(rec.get("touched") is None for rec in action2.state["nodes"].values())

    # the previous release is kept on the node, and logs/state not in the bundle are never touched
    node = sim.nodes["sim002"]
    (Path(node.root) / "logs").mkdir(exist_ok=True)
    (Path(node.root) / "logs" / "service.log").write_text("keep me\n")
    _, report3 = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.2"), tmp_path, selected=["sim002"])
    assert report3.ok
    rel = Path(node.root) / ".pltui" / "releases"
    assert (rel / f"prev-{report3.action_id}" / "VERSION").read_text() == "1.1\n"
    assert (Path(node.root) / "logs" / "service.log").read_text() == "keep me\n"
    history = (rel / "history").read_text().split()
    assert history[-1] == report3.action_id and len(history) == 2  # keep_releases = 2 (default)
    assert not (rel / f"prev-{action.action_id}").exists()       # pruned


async def test_bad_bundle_rolled_back_on_first_batch_and_halts(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet=sim_fleet_kwargs())
    _, first = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path)
    assert first.ok
    before = {n: pids_alive(node) for n, node in sim.nodes.items()}
    bad = make_bundle(tmp_path, "2.0-broken", body="echo cannot start >&2; exit 1")
    action, report = await run_rollout(sim.fleet_path, bad, tmp_path, batch="1,2", max_fail="0")
    assert not report.ok and report.summary["status"] == "halted"
    assert report.results["sim001"].state == "rolled-back"
    assert "not running" in report.results["sim001"].message and "back on 1.0" in report.results["sim001"].message
    assert report.stopped_because.startswith("stage all batch 1/3: 1 of 1 nodes failed, more than max_fail 0")
    for name in ("sim002", "sim003", "sim004", "sim005"):
        assert report.results[name].state == "untouched"
        root = Path(sim.nodes[name].root)
        assert not (root / ".pltui" / "staging" / f"{action.action_id}.tar.gz").exists()
        assert not (root / ".pltui" / "releases" / action.action_id).exists()
    for name, node in sim.nodes.items():
        assert version_on(node) == "1.0"
        assert pids_alive(node) == before[name] == {"svc": True, "aux": True}
    out = (Path(sim.nodes["sim001"].root) / ".pltui" / "run" / "svc.out").read_text()
    assert "cannot start" not in out  # the old release's output: it was restarted after the rollback
    saved = describe(load_saved(Store(tmp_path / "state.db"), action.action_id))
    assert saved["status"] == "halted" and saved["phases"]["pending"]["count"] == 4


async def test_node_dropping_out_counts_as_unreachable_then_resume(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet=sim_fleet_kwargs())
    _, first = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path)
    assert first.ok
    tasks = []

    def emit(event):
        if isinstance(event, ActionProgress) and event.node == "sim003" and event.state == "stopped" and not tasks:
            tasks.append(asyncio.get_running_loop().create_task(sim.nodes["sim003"].set_mode("refuse")))

    action, report = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "2.0"), tmp_path, max_fail="1",
                                       emit=emit)
    await asyncio.gather(*tasks)
    assert report.results["sim003"].state == "unreachable", report.to_json()
    assert report.summary["counts"] == {"done": 4, "unreachable": 1}
    assert report.stopped_because is None and not report.ok  # within the budget, but not every node done
    assert action.state["nodes"]["sim003"]["at"] in ("stopped", "swapping")
    # with max_fail 0, the same drop-out halts, and the report says it was unreachable, not failed
    await sim.nodes["sim003"].set_mode("ok")
    tasks.clear()
    action_b, report_b = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "2.1"), tmp_path, batch="2",
                                           emit=emit)
    await asyncio.gather(*tasks)
    assert report_b.summary["status"] == "halted"
    assert "unreachable, more than max_fail 0" in report_b.stopped_because and "sim003" in report_b.stopped_because
    assert report_b.results["sim003"].state == "unreachable"
    assert report_b.results["sim005"].state == "untouched"
    # back up: resume takes sim003 up from where it was left and completes the rollout
    await sim.nodes["sim003"].set_mode("ok")
    _, resumed = await resume_or_rollback(sim.fleet_path, tmp_path, action_b.action_id, "resume")
    assert resumed.ok, resumed.to_json()
    assert resumed.summary["versions"] == {"2.1": 5}
    for node in sim.nodes.values():
        assert version_on(node) == "2.1" and pids_alive(node) == {"svc": True, "aux": True}


async def test_operator_rollback_returns_touched_nodes(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet=sim_fleet_kwargs())
    _, first = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path)
    action, second = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "2.0", extra={"new/file": "x"}),
                                       tmp_path, selected=["sim001", "sim002", "sim003"])
    assert first.ok and second.ok
    code, out, err = await acli("rollout", str(sim.fleet_path), "--rollback", action.action_id, "--json",
                                state=tmp_path / "cli-state-unused")
    assert code == 2 and "no rollout" in err  # another state directory knows nothing of it
    _, back = await resume_or_rollback(sim.fleet_path, tmp_path, action.action_id, "rollback")
    assert back.ok, back.to_json()
    assert {r.state for r in back.results.values()} == {"rolled-back"}
    for _name, node in sim.nodes.items():
        assert version_on(node) == "1.0"
        assert not (Path(node.root) / "new").exists()
        assert pids_alive(node) == {"svc": True, "aux": True}
    saved = load_saved(Store(tmp_path / "state.db"), action.action_id)
    assert saved["status"] == "rolled-back"


KILLABLE = [dict(p, stop="kill $(cat .pltui/run/%s.pid); sleep 0.5" % p["name"]) for p in PROCS]


async def test_rollout_killed_mid_batch_is_resumed(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(6, fleet={"service": {"process": KILLABLE}, "groups": GROUPS,
                                         "rollout": {"health_timeout": "10s"}})
    await kill_and_resume(sim.fleet_path, sim.nodes, tmp_path)


async def test_rollout_killed_mid_batch_is_resumed_on_real_sshd(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 4, fleet={"service": {"process": KILLABLE},
                                                               "rollout": {"health_timeout": "15s"}})
    await kill_and_resume(sshd.fleet_path, sshd.nodes, tmp_path)


async def kill_and_resume(fleet_path: Path, nodes: dict, tmp_path: Path) -> None:
    """Install 1.0; start 2.0 in a CLI process, SIGKILL it once a node is stopped/swapped; then
    --status shows where every node stands and --resume completes the rollout."""
    state = tmp_path / "state"
    code, out, err = await acli("rollout", str(fleet_path), str(make_bundle(tmp_path, "1.0")), "--yes",
                                state=state)
    assert code == 0, out + err
    fleet = fleetfile.load(fleet_path)
    db = fleet_dir(state, fleet.name, fleet.path) / "pltui.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "rollout", str(fleet_path), str(make_bundle(tmp_path, "2.0")), "--yes",
        "--parallel", "2", "--state", str(state), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    store = Store(db)
    killed_at = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.returncode is None:
            latest = store.actions(kind="rollout", limit=1)
            if latest and latest[0]["state"]["bundle"]["version"] == "2.0":
                phases = {n: r["phase"] for n, r in latest[0]["state"]["nodes"].items()}
                caught = [n for n, p in phases.items() if p in ("stopped", "swapping", "swapped")]
                if caught:
                    proc.send_signal(signal.SIGKILL)
                    killed_at = (latest[0]["id"], caught, phases)
                    break
            await asyncio.sleep(0.01)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert killed_at is not None, "the rollout finished before a node was caught stopped/swapped"
    action_id, caught, phases = killed_at
    assert "pending" in phases.values()

    code, out, _ = await acli("rollout", str(fleet_path), "--status", action_id, "--json", state=state)
    status = json.loads(out)
    assert code == 1 and status["status"] == "interrupted" and status["running"] is None
    assert any(status["nodes"][n]["phase"] in ("stopped", "swapping", "swapped", "starting", "verifying")
               for n in caught)
    code, out, _ = await acli("rollout", str(fleet_path), "--status", state=state)
    assert f"rollout {action_id}: interrupted" in out and "pending" in out

    code, out, err = await acli("rollout", str(fleet_path), "--resume", action_id, "--yes", state=state)
    assert code == 0, out + err
    assert f"versions: 2.0 on {len(nodes)}" in out
    for node in nodes.values():
        assert version_on(node) == "2.0" and pids_alive(node) == {"svc": True, "aux": True}
    code, out, _ = await acli("rollout", str(fleet_path), "--status", action_id, "--json", state=state)
    status = json.loads(out)
    assert code == 0 and status["status"] == "done" and set(status["phases"]) == {"done"}
    assert len(store.load_action(action_id)["state"]["runs"]) == 2
    store.close()


async def test_cli_pause_without_terminal_stops_resumably_and_failhard(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(4, fleet=sim_fleet_kwargs())
    state = tmp_path / "state"
    bundle = make_bundle(tmp_path, "3.0")
    code, out, err = await acli("rollout", str(sim.fleet_path), str(bundle), "--stage", "alpha",
                                "--stage", "all:1,100%", state=state)
    assert code == 1, out + err
    assert "paused before stage all" in out and "no terminal to ask" in out
    action_id = out.split()[1].rstrip(":")
    assert version_on(sim.nodes["sim001"]) == "3.0" and version_on(sim.nodes["sim002"]) is None
    code, out, _ = await acli("rollout", str(sim.fleet_path), "--status", action_id, state=state)
    assert "paused" in out
    code, out, err = await acli("rollout", str(sim.fleet_path), "--resume", action_id, "--yes", "--json", state=state)
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["summary"]["versions"] == {"3.0": 4}, err
    assert [s["name"] for s in doc["plan"]["stages"]] == ["alpha", "all"]

    # --failhard: the first failure stops the rollout even with a generous budget
    bad = make_bundle(tmp_path, "4.0", body="exit 3")
    code, out, err = await acli("rollout", str(sim.fleet_path), str(bad), "--yes", "--failhard", "--max-fail", "50%",
                                "--parallel", "1", "--health-timeout", "5s", state=state)
    assert code == 1 and "--failhard: sim001 rolled-back" in out, out + err
    assert all(version_on(n) == "3.0" for n in sim.nodes.values())


async def test_rollout_through_the_node_monitor(make_sim_fleet, tmp_path):
    control_mod = pytest.importorskip("pltui.actions.control")
    pytest.importorskip("pltui.monitorspec")
    sim = await make_sim_fleet(3, fleet={"service": {"process": PROCS, "monitor_interval": "1s"},
                                         "rollout": {"health_timeout": "20s"}})
    fleet = fleetfile.load(sim.fleet_path)
    transport = Transport(fleet)
    try:
        boot = await control_mod.Bootstrap(fleet, transport, None, fleet.node_names).run()
    finally:
        await transport.close()
    if not boot.ok:
        pytest.skip(f"node monitor not usable yet: {boot.to_json()}")
    _, report = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "5.0"), tmp_path)
    assert report.ok, report.to_json()
    _, report = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "5.1"), tmp_path)
    assert report.ok, report.to_json()
    for node in sim.nodes.values():
        assert version_on(node) == "5.1" and pids_alive(node) == {"svc": True, "aux": True}
        assert not list((Path(node.root) / ".pltui" / "stopped").glob("*"))  # no process left marked stopped
    bad = make_bundle(tmp_path, "6.0", body="exit 1")
    _, report = await run_rollout(sim.fleet_path, bad, tmp_path, batch="1")
    assert report.results["sim001"].state == "rolled-back" and report.summary["status"] == "halted"
    assert all(version_on(n) == "5.1" for n in sim.nodes.values())


# --------------------------------------------------------------------------------------------
# The real-sshd fleet: the two-stage rollout


def test_two_stage_rollout_on_real_sshd(make_sshd_fleet, tmp_path):
    sshd = make_sshd_fleet(4, fleet={"service": SERVICE, "groups": {"alpha": "sshd001"},
                                     "rollout": {"health_timeout": "15s", "stage": [
                                         {"name": "alpha", "group": "alpha"},
                                         {"name": "production", "group": "all", "batch": [1, "100%"],
                                          "pause": True}]}})
    for node in sshd.nodes.values():
        assert Path(node.root).exists()
    state = tmp_path / "state"
    bundle = make_bundle(tmp_path, "7.0")
    code, out, err = cli("rollout", str(sshd.fleet_path), str(bundle), "--yes", state=state)
    assert code == 0, out + err
    assert "stage alpha: 1 nodes" in out and "stage production: 3 nodes" in out and "pause before" in out
    assert "-- paused before stage production" in out
    assert "versions: 7.0 on 4" in out
    for node in sshd.nodes.values():
        assert version_on(node) == "7.0"
    # a second release over the first, then a bad one halts on alpha with the rest untouched
    code, out, err = cli("rollout", str(sshd.fleet_path), str(make_bundle(tmp_path, "7.1")), "--yes", "--json",
                         state=state)
    doc = json.loads(out)
    assert code == 0 and doc["summary"]["versions"] == {"7.1": 4}, err
    code, out, err = cli("rollout", str(sshd.fleet_path), str(make_bundle(tmp_path, "8.0", body="exit 1")), "--yes",
                         "--json", state=state)
    doc = json.loads(out)
    assert code == 1 and doc["nodes"]["sshd001"]["state"] == "rolled-back"
    assert [doc["nodes"][n]["state"] for n in ("sshd002", "sshd003", "sshd004")] == ["untouched"] * 3
    assert all(version_on(n) == "7.1" for n in sshd.nodes.values())


async def test_ctrl_c_finishes_nodes_in_flight_and_starts_no_more(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(5, fleet=sim_fleet_kwargs())
    state = tmp_path / "state"
    fleet = fleetfile.load(sim.fleet_path)
    db = fleet_dir(state, fleet.name, fleet.path) / "pltui.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pltui", "rollout", str(sim.fleet_path), str(make_bundle(tmp_path, "1.0")), "--yes",
        "--parallel", "1", "--state", str(state), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    deadline = time.monotonic() + 60
    interrupted = None
    while time.monotonic() < deadline and proc.returncode is None and interrupted is None:
        if db.exists():
            store = Store(db)
            latest = store.actions(kind="rollout", limit=1)
            store.close()
            if latest and any(r["phase"] == "verifying" for r in latest[0]["state"]["nodes"].values()):
                proc.send_signal(signal.SIGINT)
                interrupted = latest[0]["id"]
        await asyncio.sleep(0.02)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert interrupted, "no node reached verification"
    assert proc.returncode == 130, out.decode() + err.decode()
    assert "starting no new node" in err.decode() and "interrupted by the operator (SIGINT)" in out.decode()
    code, out, _ = await acli("rollout", str(sim.fleet_path), "--status", interrupted, "--json", state=state)
    doc = json.loads(out)
    assert doc["status"] == "interrupted"
    assert set(doc["phases"]) == {"done", "pending"} and doc["phases"]["done"]["count"] >= 1  # in flight: finished
    code, out, err = await acli("rollout", str(sim.fleet_path), "--resume", interrupted, state=state)
    assert code == 0 and "versions: 1.0 on 5" in out, out + err


async def test_drop_during_upload_is_unreachable_and_untouched(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet=sim_fleet_kwargs())
    _, first = await run_rollout(sim.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path)
    assert first.ok
    big = make_bundle(tmp_path, "2.0")
    (big / "share" / "blob").write_bytes(os.urandom(8 * 1024 * 1024))  # incompressible: a long upload
    tasks = []

    def emit(event):
        if isinstance(event, ActionProgress) and event.node == "sim002" and event.bytes_done and not tasks:
            tasks.append(asyncio.get_running_loop().create_task(sim.nodes["sim002"].set_mode("refuse")))

    action, report = await run_rollout(sim.fleet_path, big, tmp_path, max_fail="1", emit=emit)
    await asyncio.gather(*tasks)
    assert report.results["sim002"].state == "unreachable", report.to_json()
    assert action.state["nodes"]["sim002"]["at"] == "uploading"
    assert not action.state["nodes"]["sim002"].get("touched")
    assert version_on(sim.nodes["sim002"]) == "1.0" and pids_alive(sim.nodes["sim002"]) == {"svc": True, "aux": True}
    assert {report.results[n].state for n in ("sim001", "sim003")} == {"done"}
    await sim.nodes["sim002"].set_mode("ok")
    _, resumed = await resume_or_rollback(sim.fleet_path, tmp_path, action.action_id, "resume")
    assert resumed.ok and version_on(sim.nodes["sim002"]) == "2.0"
    with pytest.raises(Exception, match="was rolled back"):
        await resume_or_rollback(sim.fleet_path, tmp_path, action.action_id, "rollback")
        await resume_or_rollback(sim.fleet_path, tmp_path, action.action_id, "resume")
    assert all(version_on(n) == "1.0" for n in sim.nodes.values())


async def test_node_dropping_out_on_real_sshd_is_unreachable(make_sshd_fleet, tmp_path):
    sshd = await asyncio.to_thread(make_sshd_fleet, 4, solo=["sshd003"],
                                   fleet={"service": SERVICE, "rollout": {"health_timeout": "15s"}})
    _, first = await run_rollout(sshd.fleet_path, make_bundle(tmp_path, "1.0"), tmp_path)
    assert first.ok, first.to_json()
    tasks = []

    def emit(event):
        if isinstance(event, ActionProgress) and event.node == "sshd003" and event.state == "stopped" and not tasks:
            tasks.append(asyncio.ensure_future(asyncio.to_thread(sshd.down, "sshd003")))

    action, report = await run_rollout(sshd.fleet_path, make_bundle(tmp_path, "2.0"), tmp_path, emit=emit)
    await asyncio.gather(*tasks)
    assert report.results["sshd003"].state == "unreachable", report.to_json()
    assert "unreachable, more than max_fail 0" in report.stopped_because
    assert report.summary["counts"].get("failed", 0) == 0 and report.summary["counts"].get("rolled-back", 0) == 0
    await asyncio.to_thread(sshd.up, "sshd003")
    _, resumed = await resume_or_rollback(sshd.fleet_path, tmp_path, action.action_id, "resume")
    assert resumed.ok, resumed.to_json()
    assert all(version_on(n) == "2.0" for n in sshd.nodes.values())
    assert all(pids_alive(n) == {"svc": True, "aux": True} for n in sshd.nodes.values())
