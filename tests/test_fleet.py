"""The fleet file loader: the sample loads as documented; every kind of broken file gives a
clear problem naming its file, line and key; a file with many problems reports them all."""

from __future__ import annotations

import os
import shutil
import stat
import textwrap
import tomllib
from pathlib import Path

import pytest

from pltui.fleet import (
    DEFAULT_TRACK,
    Fleet,
    FleetError,
    load,
    loads,
    parse_batches,
    parse_budget,
    save_group,
)

SAMPLE = Path(__file__).resolve().parent.parent / "sample_fleet.toml"

BASE = """\
[fleet]
name = "t"
nodes = ["n[1-6]", "edge.example.org"]

[groups]
low = "n[1-3]"
high = "n[4-6]"
"""


def doc(extra: str = "", base: str = BASE) -> str:
    return base + textwrap.dedent(extra)


def problems_of(text: str, source: str = "f.toml") -> list[str]:
    with pytest.raises(FleetError) as info:
        loads(text, source)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def line(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the nth line of `text` containing `needle`."""
    hits = [i for i, l in enumerate(text.splitlines(), 1) if needle in l]
    assert len(hits) >= nth, f"{needle!r} not in the document"
    return hits[nth - 1]


def only(text: str) -> str:
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------------------------
# The sample fleet


@pytest.fixture(scope="module")
def sample() -> Fleet:
    return load(SAMPLE)


def test_sample_nodes(sample):
    assert sample.name == "cdn"
    assert sample.path == SAMPLE
    assert len(sample.nodes) == 32
    assert sample.node_names[:3] == ["planetlab1.cs.example.edu", "planetlab2.cs.example.edu", "planetlab3.cs.example.edu"]
    assert "pl-node01.net.example.org" in sample.nodes  # zero padding kept
    assert "pl-node1.net.example.org" not in sample.nodes
    assert sample.node_names[-2:] == ["edge.tokyo.example.jp", "edge2.tokyo.example.jp"]


def test_sample_groups_including_nested_difference(sample):
    assert set(sample.group_members) == {"all", "alpha", "edu", "asia", "production"}
    assert len(sample.members("all")) == 32
    assert sample.members("alpha") == (
        "planetlab1.cs.example.edu", "planetlab2.cs.example.edu", "pl-node01.net.example.org")
    assert len(sample.members("edu")) == 12
    assert sample.members("asia") == ("edge.tokyo.example.jp", "edge2.tokyo.example.jp")
    # production = "@all!@alpha": everything but alpha, in fleet order
    production = sample.members("production")
    assert len(production) == 29
    assert not set(production) & set(sample.members("alpha"))
    assert list(production) == [n for n in sample.node_names if n not in sample.members("alpha")]
    assert sample.groups["production"] == "@all!@alpha"  # as written
    assert "all" not in sample.groups


def test_sample_tracks(sample):
    assert sample.tracks == {"alpha": ("alpha",), "production": ("production",)}
    assert sample.nodes["planetlab2.cs.example.edu"].track == "alpha"
    assert sample.nodes["node3.lab.example.net"].track == "production"
    assert {n.track for n in sample.nodes.values()} == {"alpha", "production"}
    assert sample.nodes["planetlab1.cs.example.edu"].groups == ("alpha", "edu")


def test_sample_overrides_and_defaults(sample):
    edge = sample.nodes["edge.tokyo.example.jp"]
    assert (edge.host, edge.port, edge.user, edge.root) == ("edge.tokyo.example.jp", 2222, "cdn_slice", "~/cdn")
    edge2 = sample.nodes["edge2.tokyo.example.jp"]
    assert (edge2.host, edge2.port, edge2.user, edge2.root) == ("203.0.113.17", 22, "cdn", "/srv/cdn")
    plain = sample.nodes["node1.lab.example.net"]
    assert (plain.host, plain.port, plain.user, plain.root) == ("node1.lab.example.net", 22, "cdn_slice", "~/cdn")
    assert plain.identity_file == os.path.expanduser("~/.ssh/id_ed25519")


def test_sample_ssh(sample):
    ssh = sample.ssh
    assert ssh.user == "cdn_slice"
    assert ssh.host_key_policy == "strict"
    assert ssh.known_hosts == os.path.expanduser("~/.ssh/known_hosts")
    assert (ssh.connect_timeout, ssh.command_timeout, ssh.fanout, ssh.handshakes) == (10.0, 30.0, 64, 32)


def test_sample_service_and_processes(sample):
    svc = sample.service
    assert svc.root == "~/cdn"
    assert svc.important == ("bin/*", "etc/*.conf", "lib/")
    assert svc.logs == ("logs/*.log", "logs/*.log.gz")
    assert svc.monitor_interval == 5.0
    assert [p.name for p in svc.processes] == ["proxy", "cache"]
    proxy, cache = svc.processes
    assert proxy.pidfile == "run/proxy.pid" and proxy.reload.startswith("kill -HUP") and proxy.stop is None
    assert proxy.stop_timeout == 10.0
    assert cache.stop == "bin/cache --shutdown" and cache.stop_timeout == 20.0


def test_sample_sweep_and_rollout(sample):
    assert (sample.sweep.interval, sample.sweep.checksum_interval) == (300.0, 86400.0)
    assert sample.sweep.quorum == 0.5 and sample.sweep.heal == "monitor"
    rollout = sample.rollout
    assert (rollout.health_timeout, rollout.keep_releases) == (60.0, 2)
    alpha, production = rollout.stages
    assert (alpha.name, alpha.group, alpha.batch, alpha.parallel, alpha.max_fail, alpha.pause) == (
        "alpha", "alpha", (1,), 1, 0, False)
    assert production.batch == (1, "10%", "50%", "100%")
    assert production.max_fail == "5%" and production.pause is True and production.parallel == 16


def test_minimal_fleet_defaults():
    fleet = loads('[fleet]\nname = "m"\nnodes = ["a", "b"]\n')
    assert fleet.node_names == ["a", "b"]
    assert fleet.group_members == {"all": ("a", "b")}
    assert all(n.track == DEFAULT_TRACK for n in fleet.nodes.values())
    assert fleet.ssh.port is None and fleet.ssh.host_key_policy == "strict"  # None: ssh_config or 22
    assert fleet.sweep.heal == "off" and fleet.rollout.stages == ()
    assert fleet.path is None


def test_nodes_in_no_track_form_the_default_track():
    fleet = loads(doc("[tracks]\nalpha = \"low\"\n"))
    assert fleet.nodes["n1"].track == "alpha"
    assert fleet.nodes["n5"].track == DEFAULT_TRACK
    assert fleet.tracks == {"alpha": ("low",)}


def test_groups_with_intersection_xor_and_nesting():
    fleet = loads(doc('''
        mid = "@all&n[3-4]"
        odd = "@low^n[2-4]"
        nested = "@mid,@odd!n1"
    '''))
    assert fleet.members("mid") == ("n3", "n4")
    assert fleet.members("odd") == ("n1", "n4")
    assert set(fleet.members("nested")) == {"n3", "n4"}


@pytest.mark.parametrize("text, seconds", [
    ('interval = "500ms"', None),  # below the 1s minimum for sweeps
    ('interval = "1h30m"', 5400.0),
    ('interval = 90', 90.0),
    ('interval = 2.5', 2.5),
    ('interval = "1d"', 86400.0),
    ('interval = " 5 m "', 300.0),
])
def test_durations(text, seconds):
    source = doc("[sweep]\n" + text + "\n")
    if seconds is None:
        assert "must be at least 1s" in only(source)
    else:
        assert loads(source).sweep.interval == seconds


def test_relative_paths_resolve_against_the_fleet_file(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(doc('[ssh]\nidentity_file = "keys/id"\nconfig = "/etc/ssh/ssh_config"\n'))
    fleet = load(path)
    assert fleet.ssh.identity_file == str(tmp_path / "keys" / "id")
    assert fleet.ssh.config == "/etc/ssh/ssh_config"


def test_batches_and_budgets_parse():
    assert parse_batches("1, 5%, 25%, 100%") == (1, "5%", "25%", "100%")
    assert parse_batches(["3", 7, "12.5 %"]) == (3, 7, "12.5%")
    assert parse_budget(0) == ("count", 0.0)
    assert parse_budget("10%") == ("percent", 10.0)
    for bad in (0, "0", "0%", "101%", True, 1.5, [], "x", "²"):
        with pytest.raises(ValueError):
            parse_batches(bad)
    for bad in (-1, "101%", True, 1.5, "x", "²", None):
        with pytest.raises(ValueError):
            parse_budget(bad)


# --------------------------------------------------------------------------------------------
# Broken files: each problem with file, line and key


def test_toml_syntax_error_has_line_and_column():
    text = doc("[ssh\nport = 22\n")
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, '[ssh')}:5: TOML syntax error: ")
    assert "Expected ']'" in message
    text = doc('[sweep]\ninterval = "5m\n')
    assert only(text).startswith(f"f.toml:{line(text, 'interval')}:")


def test_unknown_key_with_did_you_mean():
    text = doc("[ssh]\nprot = 22\n")
    assert only(text) == f"f.toml:{line(text, 'prot')}: [ssh.prot] unknown key 'prot' (did you mean 'port'?)"


def test_unknown_key_without_close_match_lists_known_keys():
    text = doc("[sweep]\nzzz = 1\n")
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, 'zzz')}: [sweep.zzz] unknown key 'zzz' (known keys: interval,")


def test_unknown_top_level_table_points_at_its_header():
    text = doc("[sweeep]\ninterval = \"5m\"\n")
    assert only(text) == f"f.toml:{line(text, '[sweeep]')}: [sweeep] unknown key 'sweeep' (did you mean 'sweep'?)"


def test_unknown_sub_table_points_at_its_header():
    text = doc("[ssh]\nport = 22\n[ssh.extra]\nx = 1\n")
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, '[ssh.extra]')}: [ssh.extra] unknown key 'extra'")


def test_unknown_key_in_a_process_and_a_node_override():
    text = doc('''
        [node."edge.example.org"]
        portt = 2222
        [[service.process]]
        name = "web"
        start = "bin/web"
        pidfle = "run/web.pid"
    ''')
    found = problems_of(text)
    assert f"f.toml:{line(text, 'portt =')}: [node.edge.example.org.portt] unknown key 'portt' (did you mean 'port'?)" in found
    assert f"f.toml:{line(text, 'pidfle')}: [service.process.pidfle] unknown key 'pidfle' (did you mean 'pidfile'?)" in found


@pytest.mark.parametrize("extra, needle, expected", [
    ("[ssh]\nport = \"22\"\n", "port", "[ssh.port] expected an integer, got str '22'"),
    ("[ssh]\nfanout = true\n", "fanout", "[ssh.fanout] expected an integer, got a boolean"),
    ("[ssh]\nport = 70000\n", "port", "[ssh.port] must be between 1 and 65535, got 70000"),
    ("[ssh]\nuser = 7\n", "user", "[ssh.user] expected a string, got int 7"),
    ("[ssh]\nuser = \"  \"\n", "user", "[ssh.user] must not be empty"),
    ("[service]\nimportant = [\"bin/*\", 3]\n", "important", "[service.important] expected a list of non-empty strings"),
    ("[sweep]\nquorum = \"half\"\n", "quorum", "[sweep.quorum] expected a fraction between 0 and 1, got str 'half'"),
    ("[[rollout.stage]]\ngroup = \"low\"\npause = \"yes\"\n", "pause", "[rollout.stage.pause] expected true or false, got str 'yes'"),
    ("[[rollout.stage]]\ngroup = \"low\"\nparallel = 0\n", "parallel", "[rollout.stage.parallel] must be between 1 and 10000, got 0"),
    ("[tracks]\nt = 3\n", "t = 3", "[tracks.t] expected a list of group names"),
])
def test_wrong_types(extra, needle, expected):
    text = doc(extra)
    assert only(text) == f"f.toml:{line(text, needle)}: {expected}"


def test_table_of_the_wrong_type():
    text = 'fleet = 3\n'
    assert only(text) == "f.toml:1: [fleet] expected a table [fleet], got int"
    text = doc("[service]\nprocess = 3\n")
    assert only(text) == f"f.toml:{line(text, 'process =')}: [service.process] expected [[service.process]] entries"


@pytest.mark.parametrize("value, fragment", [
    ('"5x"', "bad duration '5x' (use e.g."),
    ('"5 minutes"', "bad duration '5 minutes'"),
    ('-1', "duration must not be negative, got -1"),
    ('"-5"', "duration must not be negative"),
    ('inf', "duration inf is longer than 365d"),
    ('nan', "bad duration nan"),
    ('"1e400"', "is longer than 365d"),
    ('"٣s"', "bad duration '٣s'"),
    ('[1]', 'expected a duration like "10s", got list'),
    ('true', 'expected a duration like "10s", got True'),
    ('""', "empty duration"),
    ('"0.5s"', "must be at least 1s, got '0.5s'"),
])
def test_bad_durations(value, fragment):
    text = doc(f"[sweep]\ninterval = {value}\n")
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, 'interval')}: [sweep.interval] ")
    assert fragment in message


def test_bad_duration_in_a_second_process_points_at_its_line():
    text = doc('''
        [[service.process]]
        name = "a"
        start = "bin/a"
        stop_timeout = "5s"

        [[service.process]]
        name = "b"
        start = "bin/b"
        stop_timeout = "soon"
    ''')
    assert only(text).startswith(f"f.toml:{line(text, 'soon')}: [service.process.stop_timeout] bad duration 'soon'")


def test_duplicate_node():
    text = '[fleet]\nname = "t"\nnodes = ["n[1-3]", "n2"]\n'
    assert only(text) == "f.toml:3: [fleet.nodes] duplicate node 'n2' (in 'n[1-3]' and 'n2')"


def test_many_duplicate_nodes_reported_once_folded():
    text = '[fleet]\nname = "t"\nnodes = ["n[1-500]", "n[401-900]"]\n'
    assert only(text) == "f.toml:3: [fleet.nodes] 100 duplicate nodes 'n[401-500]' (in 'n[1-500]' and 'n[401-900]')"


@pytest.mark.parametrize("expr, fragment", [
    ("n[1-", "bad node set 'n[1-': missing bracket"),
    ("n[3-1]", "bad node set 'n[3-1]'"),
    ("@low", "[fleet].nodes cannot use groups"),
    ("a b", "bad node name 'a b'"),
    ("-oProxyCommand=x", "bad node name '-oProxyCommand=x'"),
    ("n[1-200000]", "names more than 100000 nodes"),
])
def test_bad_node_expressions(expr, fragment):
    text = f'[fleet]\nname = "t"\nnodes = ["ok1", "{expr}"]\n'
    message = only(text)
    assert message.startswith("f.toml:3: [fleet.nodes] ")
    assert fragment in message


def test_missing_fleet_keys():
    found = problems_of('[fleet]\n')
    assert found == ["f.toml:1: [fleet] missing [fleet].name",
                     "f.toml:1: [fleet] missing [fleet].nodes (a list of node-set expressions)"]
    assert problems_of("") == ["f.toml: [fleet] missing [fleet].name",
                               "f.toml: [fleet] missing [fleet].nodes (a list of node-set expressions)"]


def test_group_refers_to_unknown_group():
    text = doc('prod = "@all!@alpah"\nalpha = "n1"\n')
    assert only(text) == f"f.toml:{line(text, 'prod')}: [groups.prod] refers to unknown group '@alpah' (did you mean '@alpha'?)"


def test_group_refers_to_itself_directly():
    text = doc('loop = "n1,@loop"\n')
    assert only(text) == f"f.toml:{line(text, 'loop')}: [groups.loop] refers to itself (@loop -> @loop)"


def test_groups_refer_to_themselves_indirectly():
    text = doc('a = "@b"\nb = "n1,@c"\nc = "@a!n2"\nfine = "@low"\n')
    found = problems_of(text)
    assert found == [
        f"f.toml:{line(text, 'a = ')}: [groups.a] refers to itself (@a -> @b -> @c -> @a)",
        f"f.toml:{line(text, 'b = ')}: [groups.b] refers to itself (@b -> @c -> @a -> @b)",
        f"f.toml:{line(text, 'c = ')}: [groups.c] refers to itself (@c -> @a -> @b -> @c)",
    ]


def test_group_using_a_broken_group_is_reported_as_such():
    text = doc('bad = "@nope"\nuser = "@bad,n1"\n[tracks]\nt = ["bad"]\n')
    found = problems_of(text)
    assert f"f.toml:{line(text, 'user =')}: [groups.user] refers to group '@bad', which has problems" in found
    assert f"f.toml:{line(text, 't = ')}: [tracks.t] group 'bad' cannot be used: its definition has problems" in found


@pytest.mark.parametrize("expr", ["n1&n2", "@all!@all", "@low&@high", "@low^@low"])
def test_group_selecting_no_nodes(expr):
    text = doc(f'empty = "{expr}"\n')
    assert only(text) == f"f.toml:{line(text, 'empty')}: [groups.empty] selects no nodes"


def test_group_naming_nodes_outside_the_fleet():
    text = doc('typo = "n[5-9]"\n')
    assert only(text) == f"f.toml:{line(text, 'typo')}: [groups.typo] names node(s) not in the fleet: n7, n8, n9"
    text = doc('typo = "edge.example.orgg"\n')
    assert only(text).endswith("names node(s) not in the fleet: edge.example.orgg (did you mean 'edge.example.org'?)")
    text = doc('typo = "x[1-8]"\n')
    assert only(text).endswith("not in the fleet: x1, x2, x3, x4, x5 and 3 more")


@pytest.mark.parametrize("name, fragment", [
    ("all", "'all' is built in"),
    ("\"my group\"", "group name 'my group' may hold only"),
])
def test_bad_group_names(name, fragment):
    text = doc(f'{name} = "n1"\n')
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, name)}: [groups.")
    assert fragment in message


def test_stage_naming_unknown_group():
    text = doc('''
        [[rollout.stage]]
        name = "one"
        group = "low"

        [[rollout.stage]]
        name = "two"
        group = "hihg"
    ''')
    assert only(text) == f"f.toml:{line(text, 'hihg')}: [rollout.stage.group] unknown group 'hihg' (did you mean 'high'?)"


def test_stage_without_group():
    text = doc("[[rollout.stage]]\nname = \"x\"\n")
    assert only(text) == f"f.toml:{line(text, '[[rollout.stage]]')}: [rollout.stage] stage 'x' has no group"


def test_override_for_node_not_in_fleet():
    text = doc('[node."n7"]\nport = 2200\n')
    assert only(text).startswith(f"f.toml:{line(text, '[node.')}: [node.n7] override for 'n7', which is not in [fleet].nodes")
    text = doc('[node."edge.example.orh"]\nport = 2200\n')
    assert only(text) == (f"f.toml:{line(text, '[node.')}: [node.edge.example.orh] override for 'edge.example.orh', "
                          "which is not in [fleet].nodes (did you mean 'edge.example.org'?)")


def test_override_with_unquoted_dotted_name_suggests_quoting():
    text = doc('[node.edge.example.org]\nport = 2200\n')
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, '[node.')}: [node.edge] override for 'edge'")
    assert '(quote names with dots: [node."edge.example.org"])' in message


def test_two_tracks_claiming_one_node():
    text = doc('mid = "n[3-4]"\n[tracks]\nalpha = ["low"]\nbeta = ["mid"]\n')
    assert only(text) == f"f.toml:{line(text, 'beta')}: [tracks.beta] node 'n3' is in two tracks: 'alpha' and 'beta'"


def test_two_tracks_claiming_many_nodes_is_one_problem():
    text = doc('[tracks]\nalpha = ["all"]\nbeta = ["high"]\n')
    assert only(text) == f"f.toml:{line(text, 'beta')}: [tracks.beta] 3 nodes (n[4-6]) are in two tracks: 'alpha' and 'beta'"


def test_track_naming_unknown_group():
    text = doc('[tracks]\nalpha = ["lwo"]\n')
    assert only(text) == f"f.toml:{line(text, 'alpha =')}: [tracks.alpha] unknown group 'lwo' (did you mean 'low'?)"


@pytest.mark.parametrize("value, fragment", [
    ("1", "must be a fraction from 0 up to (not including) 1, got 1"),
    ("1.5", "got 1.5"),
    ("-0.1", "got -0.1"),
    ("nan", "got nan"),
    ("true", "expected a fraction between 0 and 1, got a boolean"),
])
def test_bad_quorum(value, fragment):
    text = doc(f"[sweep]\nquorum = {value}\n")
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, 'quorum')}: [sweep.quorum] ")
    assert fragment in message


def test_quorum_zero_is_allowed():
    assert loads(doc("[sweep]\nquorum = 0\n")).sweep.quorum == 0.0


def test_bad_heal_policy():
    text = doc('[sweep]\nheal = "restart"\n')
    assert only(text) == f"f.toml:{line(text, 'heal')}: [sweep.heal] must be one of off, monitor, got 'restart'"


def test_bad_host_key_policy():
    text = doc('[ssh]\nhost_key_policy = "yes"\n')
    assert only(text) == f"f.toml:{line(text, 'host_key')}: [ssh.host_key_policy] must be one of strict, accept-new, got 'yes'"
    assert loads(doc('[ssh]\nhost_key_policy = "accept-new"\n')).ssh.host_key_policy == "accept-new"


@pytest.mark.parametrize("key, value, fragment", [
    ("batch", "0", "batch size must be at least 1, got 0"),
    ("batch", "[]", "batch list is empty"),
    ("batch", '"150%"', "batch percentage must be in (0, 100], got '150%'"),
    ("batch", '"some"', "bad batch size 'some'"),
    ("batch", "1.5", "bad batch size 1.5"),
    ("max_fail", "-1", "bad failure budget -1"),
    ("max_fail", '"101%"', "bad failure budget '101%'"),
    ("max_fail", '"²"', "bad failure budget '²'"),
    ("max_fail", "true", "bad failure budget True"),
])
def test_bad_batch_and_max_fail_in_second_stage(key, value, fragment):
    text = doc(f'''
        [[rollout.stage]]
        group = "low"
        batch = 1
        max_fail = 0

        [[rollout.stage]]
        group = "high"
        {key} = {value}
    ''')
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, f'{key} = {value}')}: [rollout.stage.{key}] ")
    assert fragment in message


def test_duplicate_stage_name():
    text = doc('[[rollout.stage]]\ngroup = "low"\n[[rollout.stage]]\ngroup = "low"\n')
    # the stage has no name line: the problem points at its header
    assert only(text) == f"f.toml:{line(text, '[[rollout.stage]]', 2)}: [rollout.stage.name] duplicate stage name 'low'"


@pytest.mark.parametrize("name", ["a b", "../x", ".hidden", "x/y", "", "é"])
def test_invalid_process_names(name):
    text = doc(f'[[service.process]]\nname = "{name}"\nstart = "bin/x"\n')
    message = only(text)
    assert message.startswith(f"f.toml:{line(text, 'name = ', 2)}: [service.process.name] ")
    assert (f"process name {name!r} may hold only letters" in message) or (not name and "must not be empty" in message)


def test_process_problems():
    text = doc('''
        [[service.process]]
        name = "web"
        start = "bin/web"

        [[service.process]]
        name = "web"
        start = "bin/web2"

        [[service.process]]
        name = "nostart"
    ''')
    found = problems_of(text)
    web = line(text, 'name = "web"', 2)
    assert found == [
        f"f.toml:{web}: [service.process.name] duplicate process name 'web'",
        f"f.toml:{line(text, '[[service.process]]', 3)}: [service.process] process 'nostart' has no start command",
    ]


def test_protocol_file_and_command_together():
    text = doc('[service]\nprotocol_file = "P"\nprotocol_command = "bin/p"\n')
    assert only(text) == f"f.toml:{line(text, 'protocol_command')}: [service.protocol_command] give protocol_file or protocol_command, not both"


def test_dotted_key_at_top_level_is_located():
    text = 'ssh.port = 0\n[fleet]\nname = "t"\nnodes = ["a"]\n'
    assert only(text) == "f.toml:1: [ssh.port] must be between 1 and 65535, got 0"


# --------------------------------------------------------------------------------------------
# Files that cannot be read


def test_missing_file(tmp_path):
    with pytest.raises(FleetError) as info:
        load(tmp_path / "nope.toml")
    assert info.value.problems == [f"{tmp_path / 'nope.toml'}: cannot read fleet file: No such file or directory"]


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(FleetError) as info:
        load(tmp_path)
    assert info.value.problems[0].startswith(f"{tmp_path}: cannot read fleet file: ")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "f.toml"
    path.write_text(BASE)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user
        def denied(self):
            raise PermissionError(13, "Permission denied", str(self))
        monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(FleetError) as info:
        load(path)
    assert info.value.problems == [f"{path}: cannot read fleet file: Permission denied"]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "f.toml"
    path.write_bytes(BASE.encode() + b'# caf\xe9\n')
    with pytest.raises(FleetError) as info:
        load(path)
    assert info.value.problems == [f"{path}: not UTF-8 text (byte {len(BASE) + 5})"]


def test_syntax_error_from_a_file_names_the_file(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(BASE + "x = = 1\n")
    with pytest.raises(FleetError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}:{BASE.count(chr(10)) + 1}:")


# --------------------------------------------------------------------------------------------
# Many problems at once

MANY = """\
[fleet]
name = "bad name!"
nodes = ["n[1-6]", "n2", "m[1-"]

[ssh]
prot = 22
host_key_policy = "yes"
connect_timeout = "soon"

[sweep]
quorum = 2
heal = "always"

[groups]
a = "@b"
c = "@c"
none = "n1&n2"

[tracks]
x = ["all"]
y = ["c"]

[node."zz"]
port = 1

[[service.process]]
name = "a b"
start = "x"

[[rollout.stage]]
group = "nope"

[[rollout.stage]]
group = "none"
batch = 0
max_fail = "lots"
"""


def test_many_problems_are_all_reported_with_lines():
    found = problems_of(MANY)
    expected = [
        (2, "[fleet.name] fleet name 'bad name!' may hold only"),
        (3, "[fleet.nodes] bad node set 'm[1-'"),
        (3, "[fleet.nodes] duplicate node 'n2' (in 'n[1-6]' and 'n2')"),
        (6, "[ssh.prot] unknown key 'prot' (did you mean 'port'?)"),
        (7, "[ssh.host_key_policy] must be one of strict, accept-new, got 'yes'"),
        (8, "[ssh.connect_timeout] bad duration 'soon'"),
        (11, "[sweep.quorum] must be a fraction from 0 up to (not including) 1, got 2"),
        (12, "[sweep.heal] must be one of off, monitor, got 'always'"),
        (15, "[groups.a] refers to unknown group '@b'"),
        (16, "[groups.c] refers to itself (@c -> @c)"),
        (17, "[groups.none] selects no nodes"),
        (21, "[tracks.y] group 'c' cannot be used: its definition has problems"),
        (23, "[node.zz] override for 'zz', which is not in [fleet].nodes"),
        (27, "[service.process.name] process name 'a b' may hold only"),
        (31, "[rollout.stage.group] unknown group 'nope'"),
        (35, "[rollout.stage.batch] batch size must be at least 1, got 0"),
        (36, "[rollout.stage.max_fail] bad failure budget 'lots'"),
    ]
    for number, fragment in expected:
        assert any(p.startswith(f"f.toml:{number}: {fragment}") for p in found), (number, fragment, found)
    assert len(found) == len(expected), found


# --------------------------------------------------------------------------------------------
# save_group


def test_save_group_edits_in_place_keeps_bak_and_loads(tmp_path):
    path = tmp_path / "fleet.toml"
    shutil.copy(SAMPLE, path)
    path.chmod(0o640)
    original = path.read_text()
    save_group(path, "lab", "node[1-4].lab.example.net")
    assert (tmp_path / "fleet.toml.bak").read_text() == original
    new_text = path.read_text()
    assert "# A sample pltui fleet" in new_text  # edited in place (tests/test_group_save.py)
    assert tomllib.loads(new_text)["groups"]["lab"] == "node[1-4].lab.example.net"
    fleet = load(path)
    assert fleet.members("lab") == tuple(f"node{i}.lab.example.net" for i in range(1, 5))
    assert fleet.members("production") == load(SAMPLE).members("production")
    assert len(fleet.nodes) == 32 and fleet.nodes["edge.tokyo.example.jp"].port == 2222
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.toml", "fleet.toml.bak"]
    save_group(path, "lab", "@edu")  # replacing a group
    assert load(path).members("lab") == load(SAMPLE).members("edu")


def test_save_group_refuses_a_group_that_would_not_load(tmp_path):
    path = tmp_path / "fleet.toml"
    shutil.copy(SAMPLE, path)
    before = path.read_text()
    with pytest.raises(FleetError) as info:
        save_group(path, "typo", "nodee[1-2].lab.example.net")
    assert "[groups.typo] names node(s) not in the fleet" in info.value.problems[0]
    assert info.value.problems[0].startswith(str(path) + ":")
    assert path.read_text() == before
    assert not (tmp_path / "fleet.toml.bak").exists()
    for bad in ("all", "a b", ""):
        with pytest.raises(FleetError, match="bad group name"):
            save_group(path, bad, "node1.lab.example.net")


def test_save_group_on_broken_or_missing_file_is_a_fleet_error(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text("[fleet\n")
    with pytest.raises(FleetError, match="TOML syntax error"):
        save_group(path, "g", "n1")
    with pytest.raises(FleetError, match="cannot read fleet file"):
        save_group(tmp_path / "missing.toml", "g", "n1")
    path.write_text("groups = 3\n" + BASE.split("[groups]")[0])
    with pytest.raises(FleetError, match=r"\[groups\] is not a table"):
        save_group(path, "g", "n1")


def test_save_group_through_a_symlink_updates_the_real_file(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text(BASE)
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    save_group(link, "pair", "n[1-2]")
    assert link.is_symlink()
    assert load(link).members("pair") == ("n1", "n2")
    assert (tmp_path / "real.toml.bak").read_text() == BASE
