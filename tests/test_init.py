"""`pltui init`: fleet files from ssh_config, ClusterShell, Ansible (INI, YAML) and host lists.

Every written file must pass `pltui check`; inputs' errors name file and line; re-running never
clobbers an edited file; `--probe` sweeps real SSH nodes (in-process asyncssh nodes)."""

from __future__ import annotations

import json
import textwrap

import pytest
import tomllib

from pltui import cli
from pltui import fleet as fleet_mod
from pltui.demo.nodesim import write_private_key
from pltui.demo.thread import SimFleetThread


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def init_ok(capsys, path, *inputs) -> fleet_mod.Fleet:
    code, out, err = run(capsys, "init", str(path), *inputs)
    assert code == 0, err
    assert "Traceback" not in err
    code, out, err = run(capsys, "check", str(path))
    assert code == 0 and out.rstrip().endswith("ok"), err
    return fleet_mod.load(path)


def write(path, text: str):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_ssh_config_concrete_hosts_wildcards_skipped_include_followed(tmp_path, capsys):
    write(tmp_path / "extra.conf", """
        Host extra1 extra2
          User ops
    """)
    cfg = write(tmp_path / "config", f"""
        Host *
          ServerAliveInterval 30
        Include {tmp_path}/extra.conf
        Host=web1 web2 "db-?" !bad
          User deploy
        Host bastion   # the way in
          HostName 10.0.0.1
        Match host foo
          User x
    """)
    code, out, err = run(capsys, "init", str(tmp_path / "f.toml"), "--ssh-config", str(cfg))
    assert code == 0
    assert "config:1: pattern '*' skipped" in err and "config:4: pattern 'db-?' skipped" in err
    assert "config:8: Match block skipped" in err
    fleet = init_ok(capsys, tmp_path / "g.toml", "--ssh-config", str(cfg))
    assert sorted(fleet.nodes) == ["bastion", "extra1", "extra2", "web1", "web2"]
    # ssh_config keeps HostName/User/Port: the fleet points the transport at it
    assert fleet.ssh.config == str(cfg)
    assert "# " in (tmp_path / "g.toml").read_text()  # commented for the operator


def test_ansible_ini_groups_ranges_and_overrides(tmp_path, capsys):
    inv = write(tmp_path / "hosts.ini", """
        # inventory
        mail.example.com
        [web]
        web[01:03].example.com ansible_user=www
        web10.example.com ansible_host=10.1.1.10 ansible_port=2222
        [db]
        db-[a:b].example.com
        [prod:children]
        web
        db
        [prod:vars]
        ansible_user=ops
        [all:vars]
        ansible_port=2022
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--ansible", str(inv))
    assert len(fleet.nodes) == 7
    assert fleet.members("web") == ("web01.example.com", "web02.example.com", "web03.example.com",
                                    "web10.example.com")
    assert set(fleet.members("prod")) == set(fleet.members("web")) | {"db-a.example.com", "db-b.example.com"}
    assert "ungrouped" not in fleet.groups and "all" not in fleet.groups
    web10 = fleet.nodes["web10.example.com"]
    assert (web10.host, web10.port, web10.user) == ("10.1.1.10", 2222, "ops")  # host vars, then group
    assert fleet.nodes["web01.example.com"].user == "www"  # host var beats the parent group's
    assert fleet.nodes["db-a.example.com"].user == "ops"
    assert (fleet.nodes["mail.example.com"].port, fleet.nodes["mail.example.com"].user) == (2022, None)
    assert "web[01-03,10].example.com" in (tmp_path / "f.toml").read_text()  # folded into a node set


def test_ansible_yaml(tmp_path, capsys):
    inv = write(tmp_path / "inv.yml", """
        all:
          hosts:
            mail.example.com:
          children:
            web:
              hosts:
                web[01:02].example.com:
                  ansible_port: 2200
              vars:
                ansible_user: www
            edge:
              children:
                web:
              hosts:
                cdn1.example.com: {ansible_host: 192.0.2.1}
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--ansible", str(inv))
    assert sorted(fleet.nodes) == ["cdn1.example.com", "mail.example.com", "web01.example.com",
                                   "web02.example.com"]
    assert set(fleet.members("edge")) == {"cdn1.example.com", "web01.example.com", "web02.example.com"}
    web = fleet.nodes["web02.example.com"]
    assert (web.port, web.user) == (2200, "www")
    assert fleet.nodes["cdn1.example.com"].host == "192.0.2.1"


def test_clustershell_group_sources(tmp_path, capsys):
    (tmp_path / "groups.d").mkdir()
    write(tmp_path / "groups.d" / "site.yaml", """
        site:
          web: 'web[1-3].x'
          db: 'db[1-2].x'
        rack:
          r1: 'web1.x,db1.x'
    """)
    conf = write(tmp_path / "groups.conf", f"""
        [Main]
        default: site
        autodir: {tmp_path}/groups.d
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--clustershell", str(conf))
    assert fleet.members("web") == ("web1.x", "web2.x", "web3.x")
    assert fleet.members("rack_r1") == ("db1.x", "web1.x")  # another source's group, prefixed
    assert len(fleet.nodes) == 5


def test_clustershell_default_config_paths(tmp_path, capsys, monkeypatch):
    """Without a path, the groups.conf ClusterShell itself would read ($CLUSTERSHELL_CFGDIR wins)."""
    monkeypatch.setenv("CLUSTERSHELL_CFGDIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "cfg").mkdir()
    write(tmp_path / "cfg" / "groups.conf", """
        [Main]
        default: local
        [local]
        map: echo 'n[1-4]'
        list: echo compute
        all: echo 'n[1-4]'
        reverse: echo compute
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--clustershell")
    assert fleet.members("compute") == ("n1", "n2", "n3", "n4")


def test_host_list_with_user_and_port(tmp_path, capsys):
    hosts = write(tmp_path / "hosts.txt", """
        # our nodes
        node[1-3].lab
        ops@gw.lab:2222   other.lab
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--hosts", str(hosts))
    assert sorted(fleet.nodes) == ["gw.lab", "node1.lab", "node2.lab", "node3.lab", "other.lab"]
    assert (fleet.nodes["gw.lab"].user, fleet.nodes["gw.lab"].port) == ("ops", 2222)


def test_input_errors_name_file_and_line(tmp_path, capsys):
    bad_ini = write(tmp_path / "bad.ini", """
        [web
        ok1
        [db]
        db1 ansible_port=notaport
        web[3:1]
    """)
    bad_yml = write(tmp_path / "bad.yml", """
        all:
          children:
            web:
              hostz: {}
    """)
    broken_yml = write(tmp_path / "broken.yml", "all:\n  hosts: [\n")
    bad_list = write(tmp_path / "bad.txt", "fine\nweb[1-\n")
    code, out, err = run(capsys, "init", str(tmp_path / "f.toml"), "--ansible", str(bad_ini), "--ansible",
                         str(bad_yml), "--ansible", str(broken_yml), "--hosts", str(bad_list))
    assert code == 2 and out == ""
    assert f"{bad_ini}:1: bad section header" in err
    assert f"{bad_ini}:4: ansible_port='notaport' is not a port number" in err
    assert f"{bad_ini}:5: empty range" in err
    assert f"{bad_yml}:4: unknown key 'hostz'" in err
    assert f"{broken_yml}:3: YAML" in err
    assert f"{bad_list}:2: bad node set" in err
    assert "Traceback" not in err
    assert not (tmp_path / "f.toml").exists()
    code, _, err = run(capsys, "init", str(tmp_path / "f.toml"))
    assert code == 2 and "at least one input" in err


def test_rerun_never_clobbers_and_merge_keeps_comments(tmp_path, capsys):
    hosts = write(tmp_path / "hosts.txt", "a[1-2].lab\n")
    path = tmp_path / "f.toml"
    init_ok(capsys, path, "--hosts", str(hosts))
    edited = path.read_text().replace('root = "~/service"', 'root = "/srv/app" # ours') + "# keep me\n"
    path.write_text(edited)
    write(tmp_path / "hosts.txt", "a[1-3].lab\n")
    inv = write(tmp_path / "inv.ini", "[new]\na3.lab ansible_port=2200\n")
    code, out, _ = run(capsys, "init", str(path), "--hosts", str(hosts), "--ansible", str(inv))
    assert code == 0 and "left alone" in out and "f.toml.new" in out
    assert path.read_text() == edited
    assert fleet_mod.load(tmp_path / "f.toml.new").members("new") == ("a3.lab",)
    code, out, _ = run(capsys, "init", str(path), "--hosts", str(hosts), "--ansible", str(inv), "--merge")
    assert code == 0 and "merged" in out and "1 new nodes, 1 new groups" in out
    text = path.read_text()
    assert "# keep me" in text and 'root = "/srv/app" # ours' in text and "# pltui fleet file" in text
    assert (tmp_path / "f.toml.bak").read_text() == edited
    fleet = fleet_mod.load(path)
    assert sorted(fleet.nodes) == ["a1.lab", "a2.lab", "a3.lab"] and fleet.nodes["a3.lab"].port == 2200
    assert fleet.service.root == "/srv/app"
    code, out, _ = run(capsys, "init", str(path), "--hosts", str(hosts), "--ansible", str(inv), "--merge")
    assert code == 0 and "up to date" in out
    assert run(capsys, "check", str(path))[0] == 0


def test_probe_reports_reachable_root_and_version(tmp_path, capsys, monkeypatch):
    """The operator's ~/.ssh holds the key and known_hosts, as it would on a management host."""
    with SimFleetThread(3, tmp_path / "sim", modes={"sim003": "refuse"}) as sim:
        fleet = sim.fleet
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        write_private_key(fleet.client_key, home / ".ssh" / "id_ed25519")
        fleet.write_known_hosts(home / ".ssh" / "known_hosts")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        service = fleet.nodes["sim001"].root / "service"  # ~/service on that node
        service.mkdir()
        (service / "VERSION").write_text("2.5\n")
        lines = "".join(f"{n} ansible_host={node.host} ansible_port={node.port} ansible_user={fleet.user}\n"
                        for n, node in fleet.nodes.items())
        inv = write(tmp_path / "inv.ini", "[sims]\n" + lines)
        path = tmp_path / "f.toml"
        code, out, err = run(capsys, "init", str(path), "--ansible", str(inv), "--probe", "--json",
                             "--state", str(tmp_path / "state"))
        # re-run by hand later: nothing to merge, and the report in words
        code2, out2, _ = run(capsys, "init", str(path), "--ansible", str(inv), "--merge", "--probe",
                             "--state", str(tmp_path / "state"))
    assert code == 1, err  # one node unreachable
    doc = json.loads(out)
    found = {f["node"]: f for f in doc["probe"]}
    assert found["sim001"]["reachable"] and found["sim001"]["root"] is True and found["sim001"]["version"] == "2.5"
    assert found["sim002"]["reachable"] and found["sim002"]["root"] is False
    assert not found["sim003"]["reachable"] and found["sim003"]["ssh"] == "refused"
    assert tomllib.loads(path.read_text())["groups"]["sims"] == "sim[001-003]"
    assert code2 == 1 and "already up to date" in out2
    assert "3 nodes: 2 reachable, 1 with the service root, versions 2.5" in out2
    assert [ln.split()[:3] for ln in out2.splitlines() if ln.startswith("sim00")] == [
        ["sim001", "ok", "present"], ["sim002", "ok", "missing"], ["sim003", "refused", "-"]]


@pytest.mark.parametrize("name", ["web:prod", "-x"])
def test_odd_group_names_are_made_legal(tmp_path, capsys, name):
    inv = write(tmp_path / "inv.yml", f"""
        all:
          children:
            "{name}":
              hosts:
                h1:
    """)
    fleet = init_ok(capsys, tmp_path / "f.toml", "--ansible", str(inv))
    assert list(fleet.groups) == [name.replace(":", "_").lstrip("-")]
