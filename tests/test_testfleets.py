"""The test fleets (pltui.demo.nodesim, rigs.sshd_fleet) seen through a plain asyncssh client."""

from __future__ import annotations

import asyncio
import os
import time

import asyncssh
import pytest

from pltui import fleet as fleetfile
from pltui.demo.nodesim import GARBAGE, marked_pids


async def _run(fleet, name, command, **kwargs):
    async with asyncssh.connect(**fleet.connect_options(name)) as conn:
        return await conn.run(command, **kwargs)


# --------------------------------------------------------------------------------------------
# Simulated nodes


async def test_sim_exec_runs_in_node_root(sim_fleet):
    node = sim_fleet.nodes["sim002"]
    result = await _run(sim_fleet, "sim002", 'pwd; echo "$HOME"; echo made > made.txt')
    assert result.exit_status == 0
    assert result.stdout.splitlines() == [str(node.root), str(node.root)]
    assert (node.root / "made.txt").read_text() == "made\n"
    assert not (sim_fleet.nodes["sim001"].root / "made.txt").exists()


async def test_sim_stdin_stderr_and_exit_status(sim_fleet):
    async with asyncssh.connect(**sim_fleet.connect_options("sim001")) as conn:
        echoed = await conn.run("cat", input="hello\nworld\n")
        assert echoed.stdout == "hello\nworld\n" and echoed.exit_status == 0
        failed = await conn.run("echo oops >&2; exit 7")
        assert failed.exit_status == 7 and failed.stderr == "oops\n"
        killed = await conn.run("kill -TERM $$")
        assert killed.exit_signal[0] == "TERM"
        counted = await conn.run("wc -c", input="x" * 300_000)  # more than one window
        assert counted.stdout.strip() == "300000"


async def test_sim_sftp_put(sim_fleet, tmp_path):
    node = sim_fleet.nodes["sim003"]
    local = tmp_path / "bundle.txt"
    local.write_bytes(b"release 1\n" * 1000)
    async with asyncssh.connect(**sim_fleet.connect_options("sim003")) as conn:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), "bundle.txt")  # relative: the node root
            await sftp.makedirs(str(node.root / "releases" / "r1"))
            await sftp.put(str(local), str(node.root / "releases" / "r1" / "b.txt"))
            assert await sftp.realpath(".") == str(node.root)
    assert (node.root / "bundle.txt").read_bytes() == local.read_bytes()
    assert (node.root / "releases" / "r1" / "b.txt").read_bytes() == local.read_bytes()


async def test_sim_refuse_then_back_on_same_port(sim_fleet):
    node = sim_fleet.nodes["sim004"]
    port = node.port
    await node.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        await asyncssh.connect(**sim_fleet.connect_options("sim004"))
    await node.set_mode("ok")
    assert node.port == port
    assert (await _run(sim_fleet, "sim004", "echo back")).stdout == "back\n"


@pytest.mark.parametrize("mode", ["silent", "banner-silence"])
async def test_sim_silent_modes_time_out(make_sim_fleet, mode):
    sim = await make_sim_fleet(1, modes={"sim001": mode})
    started = time.monotonic()
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        await asyncssh.connect(**sim.connect_options("sim001", connect_timeout=0.5))
    assert time.monotonic() - started < 3


async def test_sim_wrong_host_key_is_rejected(sim_fleet, tmp_path):
    node = sim_fleet.nodes["sim001"]
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    bad = tmp_path / "known_hosts"
    bad.write_text(f"[{node.host}]:{node.port} {other[0]} {other[1]}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**sim_fleet.connect_options("sim001", known_hosts=asyncssh.read_known_hosts(str(bad))))
    # and a node presenting a key known_hosts does not list
    old = sim_fleet.nodes["sim002"].host_key
    sim_fleet.nodes["sim002"].set_host_key()
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**sim_fleet.connect_options("sim002"))
    sim_fleet.nodes["sim002"].set_host_key(old)
    assert (await _run(sim_fleet, "sim002", "true")).exit_status == 0


async def test_sim_exec_faults(make_sim_fleet):
    sim = await make_sim_fleet(3, modes={"sim001": "garbage", "sim002": "hang", "sim003": "slow"}, delay=0.3)
    garbage = await _run(sim, "sim001", "echo hi", encoding=None)
    assert garbage.exit_status == 0 and garbage.stdout.startswith(GARBAGE)
    async with asyncssh.connect(**sim.connect_options("sim002")) as conn:
        with pytest.raises(asyncssh.TimeoutError):
            await conn.run("echo hi", timeout=0.3)
    started = time.monotonic()
    slow = await _run(sim, "sim003", "echo late")
    assert slow.stdout == "late\n" and time.monotonic() - started >= 0.3


async def test_sim_closed_channel_kills_command(sim_fleet):
    async with asyncssh.connect(**sim_fleet.connect_options("sim005")) as conn:
        async with conn.create_process("sleep 60") as process:
            for _ in range(100):
                if marked_pids(sim_fleet.token):
                    break
                await asyncio.sleep(0.02)
            assert marked_pids(sim_fleet.token)
            process.close()
    for _ in range(100):
        if not marked_pids(sim_fleet.token):
            break
        await asyncio.sleep(0.02)
    assert marked_pids(sim_fleet.token) == []


async def test_sim_stop_kills_detached_processes(make_sim_fleet):
    sim = await make_sim_fleet(1)
    await _run(sim, "sim001", "(setsid sleep 60 >/dev/null 2>&1 &)")
    assert marked_pids(sim.token)
    await sim.stop()
    assert marked_pids(sim.token) == []


async def test_sim_fleet_file_loads(make_sim_fleet):
    sim = await make_sim_fleet(
        4,
        fleet=dict(
            name="t",
            groups={"alpha": "sim[001-002]", "prod": "sim[003-004]"},
            tracks={"a": ["alpha"], "p": ["prod"]},
            service={"process": [{"name": "app", "start": "sleep 1000"}]},
        ),
    )
    loaded = fleetfile.load(sim.fleet_path)
    assert loaded.name == "t" and loaded.node_names == sim.names
    assert loaded.ssh.host_key_policy == "strict"
    assert loaded.ssh.known_hosts == str(sim.known_hosts_path)
    assert loaded.ssh.identity_file == str(sim.client_key_path)
    for name, node in loaded.nodes.items():
        assert (node.host, node.port, node.root) == ("127.0.0.1", sim.nodes[name].port, str(sim.nodes[name].root))
        assert node.user == sim.user
    assert loaded.nodes["sim003"].track == "p"
    assert loaded.service.processes[0].name == "app"
    assert len({n.port for n in loaded.nodes.values()}) == 4


# --------------------------------------------------------------------------------------------
# Real sshd


async def test_sshd_exec_as_login_user_in_root(sshd_fleet):
    name = sshd_fleet.names[1]
    node = sshd_fleet.nodes[name]
    loaded = fleetfile.load(sshd_fleet.fleet_path)
    assert (loaded.nodes[name].host, loaded.nodes[name].port) == (node.host, node.port)
    async with asyncssh.connect(**sshd_fleet.connect_options(name)) as conn:  # strict known_hosts
        result = await conn.run(f"cd {node.root} && id -un && echo hi > f && cat", input="in\n")
        assert result.exit_status == 0
        assert result.stdout == f"{sshd_fleet.user}\nin\n"
        async with conn.start_sftp_client() as sftp:
            await sftp.put(__file__, str(node.root / "up.py"))
    assert (node.root / "f").read_text() == "hi\n"
    assert (node.root / "up.py").stat().st_uid == os.stat(node.root).st_uid


async def test_sshd_faults_and_stop(make_sshd_fleet):
    sshd = await asyncio.to_thread(make_sshd_fleet, 3, solo=["sshd003"])
    await asyncio.to_thread(sshd.down, "sshd002")
    with pytest.raises(ConnectionRefusedError):
        await asyncssh.connect(**sshd.connect_options("sshd002"))
    assert (await _run(sshd, "sshd001", "echo ok")).stdout == "ok\n"  # its neighbour is still up
    await asyncio.to_thread(sshd.up, "sshd002")
    assert (await _run(sshd, "sshd002", "echo up")).stdout == "up\n"
    await asyncio.to_thread(sshd.set_host_key, "sshd003")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**sshd.connect_options("sshd003"))
    await asyncio.to_thread(sshd.restore_host_key, "sshd003")
    async with asyncssh.connect(**sshd.connect_options("sshd003")) as conn:
        await conn.run("(setsid sleep 60 >/dev/null 2>&1 &)")
        async with conn.create_process("sleep 60"):
            started = sshd.all_pids
            assert len(started) >= 4 and sshd.pids
            await asyncio.to_thread(sshd.stop)
    assert [pid for pid in started if os.path.exists(f"/proc/{pid}")] == []
    assert marked_pids(sshd.token) == []
