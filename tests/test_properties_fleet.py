"""Property tests (hypothesis) for node sets, durations and the fleet loader.

Each test's examples are bounded so that the whole file runs in a few seconds."""

from __future__ import annotations

import math
import string

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pltui.durations import MAX_DURATION, parse_duration
from pltui.fleet import Fleet, FleetError, loads
from pltui import nodesets
from pltui.nodesets import NodeSetError, Selector, expand, fold

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Node names and node sets

PREFIXES = ["n", "pl", "node", "planetlab", "planetlab-", "pl-node", "web", "edge", "x", "a1b", "ple"]
SUFFIXES = ["", ".cs.princeton.edu", ".ee.ethz.ch", ".6test.edu.cn", "-r1", "-r2", ".lab.example.net",
            ".inf.ufpr.br", "a", ".net.t-labs.tu-berlin.de", "-10g"]


@st.composite
def numbered_names(draw):
    """prefix + number (maybe zero-padded) + suffix: planetlab-3.cs.princeton.edu, pl007-r2..."""
    number = draw(st.integers(0, 3000))
    width = draw(st.integers(0, 5))
    return f"{draw(st.sampled_from(PREFIXES))}{number:0{width}d}{draw(st.sampled_from(SUFFIXES))}"


# irregular FQDN-like names, digits anywhere: kupl1.7-test.edu, 0x.a9, alpha--beta.b
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,7}[a-z0-9])?"
irregular_names = st.from_regex(rf"{LABEL}(?:\.{LABEL}){{0,3}}", fullmatch=True)
node_names = st.one_of(numbered_names(), irregular_names)


@FAST
@given(st.sets(node_names, min_size=1, max_size=60))
def test_expanding_a_fold_gives_the_same_nodes(names):
    folded = fold(names)
    expanded = expand(folded)
    assert len(expanded) == len(names), folded
    assert set(expanded) == names, folded
    assert fold(expanded) == folded  # and folding again is stable (and cached)


NODESET_CHARS = "n0123456789[]-,!&^@/ .:_*%x"


@QUICK
@given(st.one_of(
    st.text(alphabet=NODESET_CHARS, max_size=30),
    st.text(max_size=20),
    st.lists(st.sampled_from(["n", "[", "]", "1", "-", "9", "0", ",", "!", "&", "^", "@", "/", "07", "99999",
                              "@all", "@g", " ", "\t", "\x00", "é", "٣", "[1-3]", "[0-9]", "x"]), max_size=15).map("".join),
))
def test_nodeset_parse_returns_or_raises_nodeseterror_only(expr):
    try:
        nodes = expand(expr)
    except NodeSetError as exc:
        assert repr(expr) in str(exc) or "empty node-set expression" in str(exc)
    else:
        assert isinstance(nodes, list) and all(isinstance(n, str) for n in nodes)
    selector = Selector(["n1", "n2", "n07", "x9"], {"g": ["n1"], "e": []})
    try:
        chosen = selector.parse(expr)
    except NodeSetError:
        pass
    else:
        assert set(chosen) <= {"n1", "n2", "n07", "x9"}


SEL_NODES = ["n1", "n2", "n3", "n10", "web01", "web02", "db.example.org", "x%1"]
SEL_GROUPS = {"a": ["n1", "n2"], "b": ["n2", "n3", "n10"], "w": ["web01", "web02"], "e": [], "a1": ["n3"],
              "a2": ["db.example.org"], "pct": ["x%1"]}
SEL_TERMS = ["@a", "@b", "@w", "@e", "@all", " @a ", "@a1", "@a[1-2]", "@fleet:b", "@zz", "@", "@@", "@*",
             "n[1-3]", "n10", "web0[1-2]", "db.example.org", "n*", "web*", "*.org", "x1", "n[", "n]", "",
             "x%1", "n[1-200000]", "n[3-1]", "web[01-02]"]


@FAST
@given(st.lists(st.tuples(st.sampled_from(",!&^"), st.sampled_from(SEL_TERMS)), min_size=1, max_size=6))
def test_group_fast_path_matches_clustershell(pairs):
    """Selector/resolve_groups take plain @group terms from member sets instead of letting
    ClusterShell re-parse member lists: same nodes, same errors as ClusterShell itself."""
    expr = "".join(op + term for op, term in pairs)[1:]
    sel = Selector(SEL_NODES, SEL_GROUPS)

    def outcome(fn):
        try:
            return sorted(fn())
        except NodeSetError as exc:
            return ["error", str(exc)]

    fast = outcome(lambda: nodesets._evaluate(expr, sel._sets, sel._resolver))
    slow = outcome(lambda: nodesets._parse(expr, sel._resolver))
    assert fast == slow, expr


# --------------------------------------------------------------------------------------------
# Durations

duration_texts = st.one_of(
    st.from_regex(r"\s*-?[0-9]{0,4}(\.[0-9]{0,3})?\s*(ms|s|m|h|d|x|)?([0-9]{1,3}(ms|s|m|h|d))*\s*", fullmatch=True),
    st.text(alphabet="0123456789.msdhe+-_ ٣inftyaN", max_size=14),
    st.text(max_size=10),
)


@QUICK
@given(st.one_of(duration_texts, st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
def test_parse_duration_is_a_finite_nonnegative_float_or_valueerror(value):
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        assert str(exc)
        assert len(str(exc)) < 200  # huge inputs are shortened in messages
    else:
        assert type(seconds) is float
        assert math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION
        assert math.copysign(1, seconds) == 1  # never -0.0


# --------------------------------------------------------------------------------------------
# The fleet loader never raises anything but FleetError

BODY_LINES = [
    'name = "p"', 'name = "bad name"', 'nodes = ["n[1-4]"]', 'nodes = ["n[1-4]", "n2"]', "nodes = 3",
    'nodes = ["n[1-4]", "m[01-03].example.org"]', "port = 22", 'port = "x"', "port = 0", 'host_key_policy = "yes"',
    'a = "@b"', 'b = "@a"', 'c = "n[1-2]"', 'd = "@all!@c"', 'e = "n1&n2"', "all = 'n1'", 'f = "@c,m01.example.org"',
    't = ["c"]', 'u = ["d", "c"]', "v = 1", "quorum = 0.5", "quorum = nan", 'interval = "5m"', "interval = inf",
    'heal = "monitor"', "process = 1", 'start = "bin/web"', "stop_timeout = -1", 'group = "c"', 'group = "zz"',
    'batch = [1, "50%"]', "batch = []", 'max_fail = "5%"', "pause = true", "stage = 1", "n1 = 3", 'user = ""',
    "x = {a = 1}", "ssh.port = 0", "fleet = 1", "a.b.c = 1", 'root = "/srv"', 'important = ["bin/*"]',
    "keep_releases = 0", 'health_timeout = "1s"', "fanout = 10", "handshakes = 100", 'connect_timeout = "0s"',
]
HEADERS = [
    "[fleet]", "[ssh]", "[groups]", "[tracks]", "[sweep]", "[service]", "[rollout]", "[[service.process]]",
    "[[rollout.stage]]", '[node."n1"]', '[node."m01.example.org"]', "[node.n9]", "[node]", "[[fleet]]",
    "[groups.x]", "[tracks.t]", "[ssh.extra]",
]
NOISE = st.text(alphabet=string.printable, max_size=12)


@st.composite
def toml_ish(draw):
    """Documents that mostly parse (unique headers, unique keys per table) and reach the
    validation, sometimes with noise spliced in to break the syntax."""
    parts = [draw(st.sampled_from(BODY_LINES))] if draw(st.booleans()) else []
    for header in draw(st.lists(st.sampled_from(HEADERS), unique=True, max_size=7)):
        parts.append(header)
        lines = draw(st.lists(st.sampled_from(BODY_LINES), max_size=6))
        parts.extend({line.split("=")[0].strip(): line for line in lines}.values())
    text = "\n".join(parts)
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(NOISE) + text[at + draw(st.integers(0, 5)):]
    return text


@QUICK
@given(toml_ish())
def test_loader_on_toml_ish_text(text):
    try:
        fleet = loads(text, "p.toml")
    except FleetError as exc:
        assert exc.problems and all(isinstance(p, str) and p.startswith("p.toml") for p in exc.problems)
    else:
        assert isinstance(fleet, Fleet)


KEYS = {
    "fleet": ["name", "nodes"],
    "ssh": ["user", "port", "identity_file", "known_hosts", "host_key_policy", "connect_timeout",
            "command_timeout", "fanout", "handshakes", "proxy_jump", "config", "keepalive"],
    "service": ["root", "version_file", "protocol_file", "protocol_command", "important", "logs", "state",
                "reboot_command", "monitor_interval", "process"],
    "sweep": ["interval", "checksum_interval", "quorum", "heal"],
    "rollout": ["health_timeout", "keep_releases", "stage"],
    "process": ["name", "start", "pidfile", "stop", "reload", "stop_timeout"],
    "stage": ["name", "group", "batch", "parallel", "max_fail", "pause"],
    "node": ["host", "port", "user", "root", "identity_file", "proxy_jump"],
}
PLAUSIBLE = ["n[1-4]", "n[1-4],m1", "@all", "@all!@g1", "@g1&n[1-2]", "@g2", "@nope", "n1", "m1", "5m", "10s",
             "1h30m", "-1s", "50%", "100%", "0%", "strict", "accept-new", "monitor", "off", "g1", "g2", "web",
             "bin/web", "", " ", "n[", "a b", "..", "~/svc"]

scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.text(max_size=8),
    st.integers(-3, 70000),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(max_size=5), inner, max_size=3),
), max_leaves=8)


def section(keys):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), values, max_size=5)


@st.composite
def fleet_docs(draw):
    doc = {}
    fleet = draw(section(KEYS["fleet"]))
    if draw(st.booleans()):
        fleet["name"] = "f"
        fleet["nodes"] = draw(st.lists(st.sampled_from(["n[1-4]", "m1", "n[1-2]", "x[", "@g1", "n[1-4]!n1"]),
                                       min_size=1, max_size=3))
    doc["fleet"] = fleet
    for name in ("ssh", "service", "sweep", "rollout"):
        if draw(st.booleans()):
            doc[name] = draw(section(KEYS[name]))
    if draw(st.booleans()):
        doc["groups"] = draw(st.dictionaries(st.sampled_from(["g1", "g2", "all", "bad name", "web"]),
                                             st.one_of(st.sampled_from(PLAUSIBLE), values), max_size=4))
    if draw(st.booleans()):
        doc["tracks"] = draw(st.dictionaries(st.sampled_from(["t1", "t2", "bad name"]),
                                             st.one_of(st.lists(st.sampled_from(["g1", "g2", "all", "zz"]), max_size=3),
                                                       values), max_size=3))
    if draw(st.booleans()):
        doc["node"] = draw(st.dictionaries(st.sampled_from(["n1", "m1", "zz", "n1.x"]),
                                           st.one_of(section(KEYS["node"]), values), max_size=3))
    if draw(st.booleans()):
        doc.setdefault("service", {})["process"] = draw(st.one_of(st.lists(section(KEYS["process"]), max_size=3), values))
    if draw(st.booleans()):
        doc.setdefault("rollout", {})["stage"] = draw(st.one_of(st.lists(section(KEYS["stage"]), max_size=3), values))
    if draw(st.booleans()):
        doc[draw(st.text(max_size=6))] = draw(values)
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet_docs())
def test_loader_on_arbitrary_dicts_dumped_with_tomli_w(doc):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):  # not representable in TOML (tomli-w refuses): nothing to load
        return
    try:
        fleet = loads(text, "d.toml")
    except FleetError as exc:
        assert exc.problems and all(p.startswith("d.toml") for p in exc.problems)
    else:
        assert isinstance(fleet, Fleet)
        assert set(fleet.group_members["all"]) == set(fleet.nodes)
        for stage in fleet.rollout.stages:
            assert stage.group in fleet.group_members
