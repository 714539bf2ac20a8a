"""Property-based tests (hypothesis): any input to the fleet-file loader, the node-set layer or the
probe parser gives a result or a clear error, never an unhandled exception; and what they give
keeps its invariants (a probe report only ever describes its own node, with clean strings).

Complements (not repeats) tests/test_properties_fleet.py (TOML-ish text and tomli-w documents to
the loader, node-set expressions to expand/parse, fold round trips, the group fast path) and
tests/test_probe_parser.py (arbitrary bytes and arbitrary record lines to the parser).
"""

from __future__ import annotations

import math
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pltui import fleet as fleet_mod
from pltui.fleet import Fleet, FleetError
from pltui.model import NodeStatus
from pltui.nodesets import NodeSetError, Selector, expand, fold
from pltui.probe import ProbeError, parse
from pltui.sanitize import is_clean

from .helpers import json_strings

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# The probe parser: structured but wrong record sequences

FLEET = fleet_mod.loads("""
[fleet]
name = "p"
nodes = ["n[1-3]"]
[service]
important = ["bin/*"]
monitor_interval = "0.5s"
[[service.process]]
name = "web"
start = "sleep 100"
[[service.process]]
name = "db.main"
start = "sleep 100"
""")
NODE = FLEET.nodes["n2"]
CONFIGURED = ["web", "db.main"]

ints = st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(["-", "", " 1", "1 ", "+3", "0x10", "1e3", "1.5",
                                                                     "9" * 18, "9" * 19, "-0", "١٢", "NaN"]),
                 st.integers(-(10**30), 10**30).map(str))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), ints,
                   st.sampled_from(["0.25", "1.", ".5", "1,5", "-0.0", "1e-3"]))
names = st.one_of(st.sampled_from(CONFIGURED + ["other", "n1", "all", "", "-", "web web", "wéb", "x" * 200,
                                                "web\x1b[2J", "[/]"]), st.text(st.characters(codec="utf-8"), max_size=12))
free_text = st.one_of(st.text(st.characters(codec="utf-8"), max_size=60), st.sampled_from(["\x1b]0;pwned\x07", "[bold]x[/]", "\x9b2J", "a\rb",
                                                            "end", "pltui-probe 1", "proc web alive 1"]))
digests = st.one_of(st.just("a" * 64), st.just("\\" + "b" * 64), st.text(alphabet="0123456789abcdefABCDEF\\", max_size=70))


def joined(*parts):
    return st.tuples(*parts).map(lambda t: " ".join(t))


record = st.one_of(
    joined(st.just("clock"), ints), joined(st.just("uptime"), ints), joined(st.just("load"), floats),
    joined(st.just("disk_free"), ints), joined(st.just("log_bytes"), ints),
    joined(st.just("version"), free_text), joined(st.just("protocol"), free_text), st.just("noroot"),
    joined(st.just("monitor_pid"), st.one_of(st.just("-"), joined(ints, st.sampled_from(["alive", "dead", "zombie", ""])))),
    joined(st.just("hb_time"), ints),
    joined(st.just("hb_proc"), names, st.sampled_from(["starting", "running", "backoff", "stopped", "dead", ""]),
           ints, ints, ints, ints),
    joined(st.just("hb_proc"), names, st.sampled_from(["running"]), ints),  # wrong arity
    joined(st.just("proc"), names, st.sampled_from(["alive", "dead", "maybe"]), ints),
    joined(st.just("proc"), names, st.sampled_from(["alive"]), ints, ints),  # wrong arity
    joined(st.just("digest_tool"), st.sampled_from(["sha256sum", "shasum", "openssl", "none", "md5sum", ""])),
    st.tuples(digests, st.sampled_from(["  ", " ", " *", "   "]), st.one_of(st.just("bin/app"), free_text))
    .map(lambda t: f"file {t[0]}{t[1]}{t[2]}"),
    st.sampled_from(["end", "pltui-probe 1", "pltui-probe 2", "", " ", "clock", "proc", "file"]),
    st.text(st.characters(codec="utf-8"), max_size=30),
)


small = st.integers(0, 10**6).map(str)
hostile_text = st.one_of(
    free_text, st.text(st.sampled_from(list("ab1.[]/ \x1b\x07\x9b\x9d\x9c\r\t\x00\x7f\x08;$()")), max_size=24))
SINGLE = {  # one record of each kind at most, as a node would send it
    "uptime": joined(st.just("uptime"), small),
    "load": joined(st.just("load"), st.sampled_from(["0.00", "1.5", "12.25"])),
    "disk_free": joined(st.just("disk_free"), small),
    "log_bytes": joined(st.just("log_bytes"), small),
    "version": joined(st.just("version"), hostile_text),
    "protocol": joined(st.just("protocol"), hostile_text),
    "monitor_pid": st.one_of(joined(st.just("monitor_pid"), small, st.sampled_from(["alive", "dead"])),
                             st.just("monitor_pid -")),
    "hb_time": st.integers(0, 2_000_000_000).map(lambda t: f"hb_time {t}"),
    "digest_tool": st.sampled_from(["digest_tool sha256sum", "digest_tool none"]),
}
hb_proc = joined(st.just("hb_proc"), st.sampled_from(CONFIGURED + ["other"]),
                 st.sampled_from(["starting", "running", "backoff", "stopped"]), st.sampled_from(["-", "42"]),
                 st.sampled_from(["-", "0", "3"]), st.sampled_from(["-", "0", "137"]),
                 st.sampled_from(["-", "1700000000"]))
file_record = st.tuples(st.sampled_from(["a" * 64, "\\" + "b" * 64]),
                        st.one_of(st.just("bin/app"), hostile_text.filter(lambda t: bool(t) and "\n" not in t))
                        ).map(lambda t: f"file {t[0]}  {t[1]}")


@st.composite
def reports(draw) -> bytes:
    """Mostly well-formed reports (each kind of record at most once, processes once each) with
    hostile text where text goes, sometimes with a wrong record spliced in, reordered."""
    def rarely() -> bool:  # about one in sixteen (hypothesis draws small integers far more often)
        return all(draw(st.booleans()) for _ in range(4))

    body = [f"clock {draw(st.integers(0, 2_000_000_000))}"] if not rarely() else []
    body += [draw(strategy) for kind, strategy in SINGLE.items() if draw(st.booleans())]
    body += [f"proc {name} {draw(st.sampled_from(['alive', 'dead']))} {draw(st.sampled_from(['-', '42']))}"
             for name in draw(st.lists(st.sampled_from(CONFIGURED), unique=True))]
    body += draw(st.lists(st.one_of(hb_proc, file_record), max_size=6))
    while rarely() or (not body and draw(st.booleans())):
        body.insert(draw(st.integers(0, len(body))), draw(record))  # structured but wrong
    body = draw(st.permutations(body))
    lines = ([] if rarely() else ["pltui-probe 1"]) + list(body) + ([] if rarely() else ["end"])
    newline = "\r\n" if rarely() else "\n"
    data = newline.join(lines) + (newline if draw(st.booleans()) else "")
    raw = data.encode("utf-8")
    return raw + b"\xff" if rarely() else raw


def strings_of(status: NodeStatus) -> list[str]:
    doc = status.to_json()
    doc.pop("digests", None)  # file names are data (exact, shown only through display_name)
    return json_strings(doc)


@SETTINGS
@given(reports(), st.booleans())
def test_probe_parser_on_structured_but_wrong_reports(data, checksums):
    try:
        status = parse(data, FLEET, NODE, checksums=checksums)
    except ProbeError as exc:
        message = str(exc)
        assert message and is_clean(message) and "\n" not in message and len(message) < 400
        return
    # a report only ever describes its own node and its configured processes
    assert status.node == "n2"
    assert [p.name for p in status.processes] == CONFIGURED
    assert status.monitor in ("alive", "dead", "absent")
    assert status.heartbeat_age is None or status.heartbeat_age >= 0
    assert status.clock is not None and math.isfinite(status.clock)
    if status.load is not None:
        assert math.isfinite(status.load)
    for text in strings_of(status):
        assert is_clean(text) and "\n" not in text, text
    if checksums:
        assert status.digests is not None
        assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in status.digests.values())
        assert all(isinstance(n, str) and n for n in status.digests)
    else:
        assert status.digests is None


# --------------------------------------------------------------------------------------------
# The node-set layer: selections with groups, from fleets with random groups

NODES = ["web01", "web02", "web10", "db1", "db2", "edge-a.example.org", "x_1", "n007"]
GOOD_EXPRS = ["web[01-02]", "db[1-2]", "@web", "@all!@db", "@web&web01", "@db^db1", "n007,x_1", "@all",
              "edge-a.example.org", "@a&@b", "@b,@c", "web10"]
BAD_EXPRS = ["@nosuch", "web[01-", "", " ", "db3", "@c!@a", "web*"]
SEL_TERMS = ["web[01-02]", "web10", "@web", "@db", "@all", "@nosuch", "web[", "", "db[1-9]", "*", "web*", "n007",
             "@web!web01", "@all^@db", "x_1", "x%1", "edge-a.example.org", "n[1-99999999]", "\x1b[2J", "db1,,db2", "@"]
GROUP_NAMES = ["web", "db", "a", "b", "c", "all", "bad name", "e"]


@st.composite
def fleet_texts(draw) -> str:
    exprs = st.one_of(st.sampled_from(GOOD_EXPRS), st.sampled_from(GOOD_EXPRS), st.sampled_from(BAD_EXPRS))
    groups = draw(st.dictionaries(st.sampled_from(GROUP_NAMES), exprs, max_size=4))
    lines = ['[fleet]', 'name = "s"', f'nodes = [{", ".join(repr(n).replace(chr(39), chr(34)) for n in NODES)}]']
    if groups:
        lines.append("[groups]")
        lines += [f'"{g}" = "{e}"' for g, e in groups.items()]
    return "\n".join(lines) + "\n"


@SETTINGS
@given(fleet_texts(), st.lists(st.sampled_from(SEL_TERMS), max_size=3), st.lists(st.sampled_from(GROUP_NAMES), max_size=2),
       st.lists(st.sampled_from(SEL_TERMS), max_size=2), st.lists(st.sampled_from(GROUP_NAMES), max_size=2))
def test_selection_from_any_fleet_and_any_options(text, include, groups, exclude, exclude_groups):
    try:
        fleet = fleet_mod.loads(text, "s.toml")
    except FleetError as exc:
        assert exc.problems and all(p.startswith("s.toml") for p in exc.problems)
        return
    selector = Selector.for_fleet(fleet)
    try:
        chosen = selector.select(include, groups, exclude, exclude_groups)
    except NodeSetError as exc:
        assert str(exc) and "\x1b" not in str(exc).replace("\\x1b", "")
        return
    assert chosen and len(chosen) == len(set(chosen))
    assert set(chosen) <= set(NODES)
    assert chosen == [n for n in NODES if n in set(chosen)]  # fleet order
    assert sorted(expand(fold(chosen))) == sorted(chosen)
    if not include and not groups:
        assert set(chosen) <= set(NODES)
    else:  # everything chosen was asked for, nothing excluded was kept
        for expr in exclude:
            assert not set(chosen) & set(selector.parse(expr))


# --------------------------------------------------------------------------------------------
# The fleet-file loader: any text, any bytes from a file

TOML_CHARS = string.ascii_letters + string.digits + ' =[]{}"\'.,#\n\t-_:@!&^*%$\\'


@SETTINGS
@given(st.one_of(st.text(max_size=300), st.text(alphabet=TOML_CHARS, max_size=300)))
def test_loader_on_any_text(text):
    try:
        fleet = fleet_mod.loads(text, "t.toml")
    except FleetError as exc:
        assert exc.problems and all(isinstance(p, str) and p.startswith("t.toml") for p in exc.problems)
    else:
        assert isinstance(fleet, Fleet) and fleet.nodes


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300),
                 st.sampled_from([b'[fleet]\nname = "f"\nnodes = ["n1"]\n']).flatmap(
                     lambda good: st.tuples(st.just(good), st.binary(max_size=20)).map(lambda t: t[0] + t[1]))))
def test_loader_on_any_bytes_from_a_file(tmp_path, data):
    path = tmp_path / "fleet.toml"
    path.write_bytes(data)
    try:
        fleet = fleet_mod.load(path)
    except FleetError as exc:
        assert exc.problems and all(isinstance(p, str) and str(path) in p for p in exc.problems)
    else:
        assert isinstance(fleet, Fleet)
