"""Values that reach an ssh command line are validated when the fleet file loads: a `host`, `user`
or `proxy_jump` that ssh would read as an option (leading `-`) or that holds whitespace or
control characters is refused by `pltui check` with file:line, exit 2, nothing run."""

from __future__ import annotations

import pytest

from pltui.cli import main

BASE = """\
[fleet]
name = "t"
nodes = ["n[1-2]"]

"""

CASES = [
    ('[node."n1"]\nhost = "-oProxyCommand=touch /tmp/x"\n', 6, "node.n1.host"),
    ('[node."n1"]\nhost = "n1.example.org\\nProxyCommand x"\n', 6, "node.n1.host"),
    ('[node."n1"]\nuser = "-lroot"\n', 6, "node.n1.user"),
    ('[node."n1"]\nuser = "ro ot"\n', 6, "node.n1.user"),
    ('[node."n1"]\nproxy_jump = "-oProxyCommand=sh"\n', 6, "node.n1.proxy_jump"),
    ('[node."n1"]\nproxy_jump = "jump1,-oProxyCommand=sh"\n', 6, "node.n1.proxy_jump"),
    ('[ssh]\nuser = "\\u001b[31mred"\n', 6, "ssh.user"),
    ('[ssh]\nproxy_jump = "-J x"\n', 6, "ssh.proxy_jump"),
    ('[ssh]\nproxy_jump = "ops@bastion:notaport"\n', 6, "ssh.proxy_jump"),
    ('[ssh]\nproxy_jump = "ops@bastion:70000"\n', 6, "ssh.proxy_jump"),
    ('[node."n2"]\nproxy_jump = "ops@-bastion"\n', 6, "node.n2.proxy_jump"),
]


@pytest.mark.parametrize("extra,line,label", CASES)
def test_values_reaching_ssh_cannot_be_options(tmp_path, capsys, extra, line, label):
    path = tmp_path / "fleet.toml"
    path.write_text(BASE + extra)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: [{label}]" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "\x1b" not in err


def test_ordinary_values_still_load(tmp_path, capsys):
    path = tmp_path / "fleet.toml"
    path.write_text(BASE + '[ssh]\nuser = "svc-user_1"\nproxy_jump = "ops@bastion.example.org:2222"\n\n'
                    '[node."n1"]\nhost = "10.0.0.1"\n[node."n2"]\nhost = "fe80::1%eth0"\nuser = "root"\n')
    assert main(["check", str(path)]) == 0, capsys.readouterr().err


def test_interactive_ssh_line_ends_options_before_the_destination(tmp_path):
    """Defence in depth behind the loader: OpenSSH itself (`ssh -G`, which resolves the options
    and connects nowhere) must see a hostile host as a host name, never as `-oProxyCommand`."""
    import dataclasses
    import shutil
    import subprocess

    from pltui import fleet as fleetfile
    from pltui.ssh import ssh_command_line

    if not shutil.which("ssh"):
        pytest.skip("no ssh client")
    path = tmp_path / "fleet.toml"
    path.write_text(BASE)
    fleet = fleetfile.load(path)
    node = dataclasses.replace(fleet.nodes["n1"], host="-oProxyCommand=touch /tmp/pltui-pwned")
    argv = ssh_command_line(fleet, node)
    assert argv[argv.index("--") + 1] == node.host
    r = subprocess.run([argv[0], "-G", *argv[1:]], capture_output=True, text=True, timeout=30)
    assert "pltui-pwned" not in r.stdout
