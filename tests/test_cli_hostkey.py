"""A known_hosts entry of another key type than the node offers (the node was reinstalled with
new key types, or someone is in the middle) is a host-key problem: `hostkey`, never `error` or
`unreachable`, and the message says what to check."""

from __future__ import annotations

import json

import asyncssh

from pltui.demo.nodesim import known_hosts_entry
from tests.test_exec import cli


async def test_known_hosts_with_another_key_type_is_hostkey(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(2, fleet={"ssh_overrides": {"connect_timeout": "3s", "command_timeout": "5s"}})
    node = sim.nodes["sim001"]
    other_type = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    lines = sim.known_hosts_path.read_text().splitlines(keepends=True)
    prefix = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    lines = [known_hosts_entry(node.host, node.port, other_type) if line.startswith(prefix + " ") else line
             for line in lines]
    sim.known_hosts_path.write_text("".join(lines))
    rc, out, err = await cli("sweep", str(sim.fleet_path), "--state", str(tmp_path / "s"), "--json")
    assert rc == 1, err
    nodes = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert nodes["sim002"]["ssh"] == "ok"
    assert nodes["sim001"]["ssh"] == "hostkey", nodes["sim001"]["error"]
    assert "known_hosts" in nodes["sim001"]["error"]


def swap_key_type(files, name: str) -> None:
    node = files.nodes[name]
    other_type = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    prefix = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    lines = [known_hosts_entry(node.host, node.port, other_type) if line.startswith(prefix + " ") else line
             for line in files.known_hosts_path.read_text().splitlines(keepends=True)]
    files.known_hosts_path.write_text("".join(lines))


async def test_known_hosts_with_another_key_type_on_real_sshd(make_sshd_fleet, tmp_path):
    import asyncio

    sshd = await asyncio.to_thread(make_sshd_fleet, 2)
    first = sorted(sshd.nodes)[0]
    swap_key_type(sshd, first)
    rc, out, err = await cli("sweep", str(sshd.fleet_path), "--state", str(tmp_path / "s"), "--json")
    nodes = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert nodes[first]["ssh"] == "hostkey", nodes[first]["error"]
    assert all(n["ssh"] == "ok" for name, n in nodes.items() if name != first)
