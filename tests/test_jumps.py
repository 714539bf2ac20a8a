"""Jump hosts (ProxyJump) as OpenSSH does them: spec parsing, ssh_config, shared bastion
connections, host keys of bastions, dead bastions. Integration tests run real OpenSSH bastions
on loopback in front of nodes that refuse direct connections (rigs.sshd_bastions)."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncssh
import pytest

from pltui.fleet import FleetError, load
from pltui.jumps import Hop, JumpSpecError, SshConfig, format_chain, parse_jump, resolve_chain
from pltui.demo.nodesim import fleet_document, write_toml
from pltui.ssh import ssh_command_line
from rigs.sshd_bastions import CLIENT_SOURCE, Bastions, GatedSshdFleet
from rigs.sshd_fleet import find_sshd
from pltui.sweep import Engine

GOOD = [
    ("bastion", (Hop("bastion"),)),
    ("b1.example", (Hop("b1.example"),)),
    ("u@b1.example:2222", (Hop("b1.example", 2222, "u"),)),
    ("a,b", (Hop("a"), Hop("b"))),
    ("u@a:22,v@b:2200", (Hop("a", 22, "u"), Hop("b", 2200, "v"))),
    ("[::1]:2222", (Hop("::1", 2222),)),
    ("user@[fe80::1]:22", (Hop("fe80::1", 22, "user"),)),
    ("[fe80::1%eth0]", (Hop("fe80::1%eth0"),)),
    ("::1", (Hop("::1"),)),
    ("127.0.0.1:65535", (Hop("127.0.0.1", 65535),)),
    ("ssh://u@h:1", (Hop("h", 1, "u"),)),
    ("none", ()),
    ("NONE", ()),
    ("me@corp@b1", (Hop("b1", None, "me@corp"),)),
    ("a,[2001:db8::2]:22,u@c", (Hop("a"), Hop("2001:db8::2", 22), Hop("c", None, "u"))),
]

BAD = [
    ("", "empty"),
    ("-oProxyCommand=x", "must not start with '-'"),
    ("a,-b", "must not start with '-'"),
    ("u@-host", "bad host name"),
    ("-u@host", "must not start with '-'"),
    ("u@h@", "no host name"),
    ("a b", "whitespace"),
    ("a\tb", "whitespace"),
    ("a\x1b[31m", "control"),
    ("a\x85", "control"),
    ("host:0", "1 to 65535"),
    ("host:65536", "1 to 65535"),
    ("host:x", "1 to 65535"),
    ("host:", "1 to 65535"),
    ("a,,b", "empty hop"),
    ("a,", "empty hop"),
    ("@host", "bad user name"),
    ("u@", "no host name"),
    ("[::1", "unclosed"),
    ("[::1]x", "after ']'"),
    ("[::1]:0", "1 to 65535"),
    ("[::g]:22", "not an IPv6 address"),
    ("1::2::3", "not an IPv6 address"),
    ("h;rm -rf", "whitespace"),
    ("h;rm", "bad host name"),
    ("$(id)", "bad host name"),
    ("u'x@h", "bad user name"),
    (",".join(f"h{i}" for i in range(11)), "at most 10"),
]


@pytest.mark.parametrize("spec,hops", GOOD)
def test_good_specs(spec, hops):
    assert parse_jump(spec) == hops


@pytest.mark.parametrize("spec,why", BAD)
def test_bad_specs_name_the_hop_and_why(spec, why):
    with pytest.raises(JumpSpecError) as info:
        parse_jump(spec)
    message = str(info.value)
    assert why in message
    assert "\n" not in message and "\x1b" not in message


def test_openssh_form_round_trips():
    for spec in ("a", "u@a:2222,[::1]:22", "user@[fe80::1]:22,b", "[::1]"):
        assert format_chain(parse_jump(spec)) == spec
    assert str(Hop("::1")) == "[::1]"


def test_chain_from_ssh_config_follows_the_first_hop(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host node*\n  ProxyJump b\n\nHost b\n  ProxyJump u@a:2222\n\nHost other\n  ProxyJump none\n")
    cfg = SshConfig([config])
    assert resolve_chain(None, "node1", None, None, cfg) == (Hop("a", 2222, "u"), Hop("b"))
    # the fleet file's spec wins over ssh_config's (as `ssh -J` does); its first hop still
    # follows ssh_config
    assert resolve_chain("b", "x", None, None, cfg) == (Hop("a", 2222, "u"), Hop("b"))
    assert resolve_chain("none", "node1", None, None, cfg) == ()
    assert resolve_chain(None, "other", None, None, cfg) == ()


def test_ssh_config_loops_are_refused(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\nHost *\n  ProxyJump a\n")
    with pytest.raises(JumpSpecError, match="loop"):
        resolve_chain(None, "node", None, None, SshConfig([config]))


# -- against real OpenSSH bastions ------------------------------------------------------------

N_NODES = 200
SERVICE = {"important": ["bin/*"]}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if find_sshd() is None:
        pytest.skip("OpenSSH sshd is not installed")
    base = tmp_path_factory.mktemp("jumps")
    nodes = GatedSshdFleet.start(N_NODES, base / "nodes")
    bastions = Bastions(nodes, base / "bastions")
    try:
        for index, name in enumerate(("b1", "b2", "b3", "b4", "b5"), start=1):
            bastions.add(name, f"127.0.9.{index}")
        if _has_ipv6_loopback():
            bastions.add("b6", "::1")
        bastions.write_known_hosts()
        for node in nodes.nodes.values():
            for sub in ("bin",):
                (Path(node.root) / sub).mkdir(exist_ok=True)
            (Path(node.root) / "VERSION").write_text("1.0\n")
            (Path(node.root) / "bin" / "app").write_text("app\n")
        yield bastions
    finally:
        bastions.stop()
        nodes.stop()


def write_fleet(rig, path: Path, names, *, jumps=None, **ssh) -> Path:
    """A fleet file for `names`, with per-node proxy_jump from `jumps` (name -> spec)."""
    nodes = rig.fleet.nodes
    doc = fleet_document([nodes[n] for n in names], name="jumps", user=rig.fleet.user,
                         identity_file=rig.fleet.client_key_path, known_hosts=rig.fleet.known_hosts_path,
                         service=SERVICE, ssh_overrides={"connect_timeout": "5s", **ssh})
    for name, spec in (jumps or {}).items():
        doc["node"][name]["proxy_jump"] = spec
    return write_toml(path, doc)


async def sweep(path: Path, state: Path):
    engine = Engine(load(path), state_dir=state)
    try:
        await engine.sweep()
        engine.jump_chains = sorted(engine.transport._jumps)  # close() forgets them
        return engine, {n: (s.ssh.value, s.error or "") for n, s in engine.statuses.items()}
    finally:
        await engine.close()


async def test_nodes_refuse_direct_connections(rig):
    """The rig's premise: a node accepts a connection forwarded by a bastion, not one straight
    from the client's address."""
    fleet = rig.fleet
    opts = fleet.connect_options("sshd001", local_addr=(CLIENT_SOURCE, 0))
    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncssh.connect(**opts):
            pass
    b1 = rig.bastions["b1"]
    async with asyncssh.connect(**fleet.connect_options("sshd001", host=b1.host, port=b1.port,
                                                        local_addr=(CLIENT_SOURCE, 0))) as jump:
        async with asyncssh.connect(**fleet.connect_options("sshd001"), tunnel=jump) as conn:
            assert (await conn.run("echo ok", check=True)).stdout == "ok\n"


async def test_200_nodes_behind_two_bastions_from_ssh_config(rig, tmp_path):
    """ProxyJump read from an ssh_config ([ssh].config): every node answers and each bastion
    sees exactly one client login (asyncssh left alone opens one per node, and checks the
    bastion's key outside the fleet's known_hosts)."""
    names = sorted(rig.fleet.nodes)
    half = len(names) // 2
    b1, b2 = rig.bastions["b1"], rig.bastions["b2"]
    jumps = {n: (b1.spec if i < half else b2.spec) for i, n in enumerate(names)}
    config = rig.write_ssh_config(tmp_path / "ssh_config", jumps)
    path = write_fleet(rig, tmp_path / "fleet.toml", names, config=str(config), fanout=100, handshakes=32)
    before = rig.accepted("b1"), rig.accepted("b2")
    engine, result = await sweep(path, tmp_path / "state")
    bad = {n: r for n, r in result.items() if r[0] != "ok"}
    assert not bad, list(bad.items())[:5]
    assert (rig.accepted("b1") - before[0], rig.accepted("b2") - before[1]) == (1, 1)
    assert engine.transport.jumps.opened == 2


async def test_chain_and_user_host_port_in_the_fleet_file(rig, tmp_path):
    """`u@b3:port,u@b4:port`: the chain's both hops are shared by the nodes behind it."""
    b3, b4 = rig.bastions["b3"], rig.bastions["b4"]
    user = rig.fleet.user
    chain = f"{user}@{b3.spec},{user}@{b4.spec}"
    names = ["sshd001", "sshd002", "sshd003"]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, jumps={n: chain for n in names})
    before = rig.accepted("b3"), rig.accepted("b4")
    engine, result = await sweep(path, tmp_path / "state")
    assert {r[0] for r in result.values()} == {"ok"}, result
    assert (rig.accepted("b3") - before[0], rig.accepted("b4") - before[1]) == (1, 1)
    assert engine.jump_chains == [f"{user}@{b3.spec}", chain]


async def test_ipv6_loopback_bastion(rig, tmp_path):
    if "b6" not in rig.bastions:
        pytest.skip("no IPv6 loopback here")
    b6 = rig.bastions["b6"]
    assert b6.spec.startswith("[::1]:")
    names = ["sshd004", "sshd005"]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=f"{rig.fleet.user}@{b6.spec}")
    _, result = await sweep(path, tmp_path / "state")
    assert {r[0] for r in result.values()} == {"ok"}, result


async def test_bastion_with_a_wrong_host_key(rig, tmp_path):
    """The bastion's key is checked against the fleet's known_hosts: its nodes fail `hostkey`
    with the bastion named (and the bastion's key is never recorded)."""
    b5 = rig.bastions["b5"]
    names = ["sshd006", "sshd007", "sshd008"]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=b5.spec)
    rig.set_host_key("b5")
    try:
        engine, result = await sweep(path, tmp_path / "state")
    finally:
        rig.set_host_key("b5", b5.trusted_key)
    for state, error in result.values():
        assert state == "hostkey"
        assert f"bastion {b5.spec}" in error and "CHANGED" in error
    assert engine.transport.jumps.opened == 0


async def test_dead_bastion_fails_its_nodes_at_once_naming_it(rig, tmp_path):
    """A stopped bastion: one refused attempt, every node behind it `unreachable` naming the
    bastion; when it is back, the next sweep reconnects through a new bastion connection."""
    b5 = rig.bastions["b5"]
    names = [f"sshd{i:03d}" for i in range(10, 40)]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=b5.spec, fanout=8)
    rig.down("b5")
    try:
        engine = Engine(load(path), state_dir=tmp_path / "state")
        try:
            await engine.sweep()
            for status in engine.statuses.values():
                assert status.ssh.value == "unreachable"
                assert status.error == f"bastion {b5.spec} unreachable: connection refused"
            assert engine.transport.jumps.attempts == 1
        finally:
            rig.up("b5")
        engine.transport.jumps.forget_failures()
        await engine.sweep()
        assert {s.ssh.value for s in engine.statuses.values()} == {"ok"}
        await engine.close()
    finally:
        if rig.bastions["b5"].proc is None:
            rig.up("b5")


async def test_frozen_bastion_costs_one_connect_timeout_not_one_per_node(rig, tmp_path):
    """A SIGSTOPped bastion keeps TCP open and never answers: the nodes behind it wait for one
    attempt (shared), not one connect timeout each, and name the bastion."""
    b5 = rig.bastions["b5"]
    names = [f"sshd{i:03d}" for i in range(40, 60)]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=b5.spec, connect_timeout="1s", fanout=4)
    rig.freeze("b5")
    try:
        engine = Engine(load(path), state_dir=tmp_path / "state")
        try:
            await engine.sweep()
            for status in engine.statuses.values():
                assert status.ssh.value == "unreachable"
                assert status.error.startswith(f"bastion {b5.spec} unreachable: no SSH handshake")
            assert engine.transport.jumps.attempts == 1
        finally:
            await engine.close()
    finally:
        rig.thaw("b5")


def test_interactive_shell_passes_the_chain_in_openssh_form(rig, tmp_path):
    chain = "u@a.example:2222,[::1]:22,user@[fe80::1]:22"
    path = write_fleet(rig, tmp_path / "fleet.toml", ["sshd001", "sshd002"],
                       jumps={"sshd001": chain, "sshd002": "none"})
    fleet = load(path)
    argv = ssh_command_line(fleet, fleet.nodes["sshd001"])
    assert argv[argv.index("-J") + 1] == chain
    argv = ssh_command_line(fleet, fleet.nodes["sshd002"])
    assert "-J" not in argv and "ProxyJump=none" in argv


def test_bad_proxy_jump_in_the_fleet_file_is_one_clear_line(rig, tmp_path):
    path = write_fleet(rig, tmp_path / "fleet.toml", ["sshd001"], jumps={"sshd001": "-oProxyCommand=id"})
    with pytest.raises(FleetError) as info:
        load(path)
    assert "node.sshd001" in str(info.value) and "proxy_jump" in str(info.value)
    assert "must not start with '-'" in str(info.value)


async def test_bastion_alias_from_ssh_config_under_accept_new(rig, tmp_path):
    """A hop named by an ssh_config alias (HostName/Port/User there) resolves like a node does;
    under accept-new its first-seen key is recorded for the address and port actually used, so
    the next run finds it (and a changed key would be refused)."""
    b3 = rig.bastions["b3"]
    names = ["sshd061", "sshd062"]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host jumpbox\n  HostName {b3.host}\n  Port {b3.port}\n  User {rig.fleet.user}\n\n"
                      + "".join(f"Host {rig.fleet.nodes[n].host}\n  ProxyJump jumpbox\n" for n in names))
    known = rig.fleet.write_known_hosts(tmp_path / "known_hosts")  # the nodes' keys, no bastion's
    path = write_fleet(rig, tmp_path / "fleet.toml", names, config=str(config), known_hosts=str(known),
                       host_key_policy="accept-new")
    for run in (1, 2):
        _, result = await sweep(path, tmp_path / f"state{run}")
        assert {r[0] for r in result.values()} == {"ok"}, (run, result)
    assert f"[{b3.host}]:{b3.port} " in known.read_text()


async def test_bad_proxy_jump_in_ssh_config_fails_its_node_with_one_line(rig, tmp_path):
    config = tmp_path / "ssh_config"
    host = rig.fleet.nodes["sshd063"].host
    config.write_text(f"Host {host}\n  ProxyJump -oProxyCommand=touch${{IFS}}/tmp/x\n")
    path = write_fleet(rig, tmp_path / "fleet.toml", ["sshd063"], config=str(config))
    _, result = await sweep(path, tmp_path / "state")
    state, error = result["sshd063"]
    assert state == "error"
    assert error.startswith(f"ssh config ProxyJump for {host}: bad jump host") and "'-'" in error


async def test_a_bastion_that_restarts_is_reconnected(rig, tmp_path):
    """Pooled connections through a bastion die with it: the nodes fail naming it; once it is
    back, one new bastion connection serves them all again."""
    b4 = rig.bastions["b4"]
    names = [f"sshd{i:03d}" for i in range(70, 80)]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=b4.spec)
    engine = Engine(load(path), state_dir=tmp_path / "state")
    try:
        await engine.sweep()
        assert {s.ssh.value for s in engine.statuses.values()} == {"ok"}
        rig.down("b4")
        try:
            await engine.sweep()
            assert {s.error for s in engine.statuses.values()} == {f"bastion {b4.spec} unreachable: connection refused"}
        finally:
            rig.up("b4")
        engine.transport.jumps.forget_failures()
        await engine.sweep()
        assert {s.ssh.value for s in engine.statuses.values()} == {"ok"}
        assert rig.accepted("b4") == 1 and engine.transport.jumps.opened == 2
    finally:
        await engine.close()


async def test_bastion_frozen_after_connecting_fails_the_rest_at_once(rig, tmp_path):
    """A bastion that hangs (SIGSTOP) after its connection was made: the first handshakes through
    it time out, the bastion is found not to answer, and every other node behind it fails at
    once naming it (not one connect timeout per node, in waves of `handshakes`)."""
    b5 = rig.bastions["b5"]
    names = [f"sshd{i:03d}" for i in range(80, 100)]
    path = write_fleet(rig, tmp_path / "fleet.toml", names, proxy_jump=b5.spec, connect_timeout="1s",
                       handshakes=2, fanout=20)
    engine = Engine(load(path), state_dir=tmp_path / "state")
    try:
        await engine.sweep(nodes=names[:1])
        assert engine.statuses[names[0]].ssh.value == "ok"
        rig.freeze("b5")
        try:
            await engine.sweep(nodes=names[1:])
        finally:
            rig.thaw("b5")
        errors = [engine.statuses[n].error or "" for n in names[1:]]
        assert all(engine.statuses[n].ssh.value == "unreachable" for n in names[1:]), errors
        own_timeouts = [e for e in errors if e.startswith("no SSH handshake")]
        named = [e for e in errors if e == f"bastion {b5.spec} unreachable: no answer within 1s"]
        assert len(own_timeouts) <= 2 and len(named) + len(own_timeouts) == len(errors), errors
    finally:
        await engine.close()
