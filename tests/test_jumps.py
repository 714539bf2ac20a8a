"""Jump hosts (ProxyJump) as OpenSSH does them: spec parsing, ssh_config, shared bastion
connections, host keys of bastions, dead bastions. Integration tests run real OpenSSH bastions
on loopback in front of nodes that refuse direct connections (pltui.sshd_bastions)."""

from __future__ import annotations

import pytest

from pltui.jumps import Hop, JumpSpecError, SshConfig, format_chain, parse_jump, resolve_chain

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
    ("a,[2001:db8::2]:22,u@c", (Hop("a"), Hop("2001:db8::2", 22), Hop("c", None, "u"))),
]

BAD = [
    ("", "empty"),
    ("-oProxyCommand=x", "must not start with '-'"),
    ("a,-b", "must not start with '-'"),
    ("u@-host", "bad host name"),
    ("-u@host", "must not start with '-'"),
    ("u@h@", "bad user name"),
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
