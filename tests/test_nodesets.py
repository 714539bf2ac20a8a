"""Node-set expressions (ClusterShell syntax) against a fleet: expansion, folding, selection,
and errors that always come out as NodeSetError naming the expression."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pltui import nodesets
from pltui.nodesets import MAX_NODES, NodeSetError, Selector, expand, fold, resolve_groups

NODES = [f"pl{i}-r{j}" for i in range(1, 4) for j in range(1, 3)] + ["web01", "web02", "web10", "db.example.org"]
GROUPS = {
    "rack1": ["pl1-r1", "pl2-r1", "pl3-r1"],
    "rack2": ["pl1-r2", "pl2-r2", "pl3-r2"],
    "web": ["web01", "web02", "web10"],
    "empty": [],
    "empty-2": ["db.example.org"],  # shares a prefix with an empty group
}


@pytest.fixture
def sel() -> Selector:
    return Selector(NODES, GROUPS)


# --------------------------------------------------------------------------------------------
# expand


@pytest.mark.parametrize("expr, nodes", [
    ("n1", ["n1"]),
    ("n[1-3]", ["n1", "n2", "n3"]),
    ("n[1-3,7]", ["n1", "n2", "n3", "n7"]),
    ("n[1-10/4]", ["n1", "n5", "n9"]),
    ("n[08-11]", ["n08", "n09", "n10", "n11"]),
    ("n[001-003]", ["n001", "n002", "n003"]),
    ("pl[1-3]-r[1-2]", ["pl1-r1", "pl1-r2", "pl2-r1", "pl2-r2", "pl3-r1", "pl3-r2"]),
    ("planetlab[1-2].cs.example.edu", ["planetlab1.cs.example.edu", "planetlab2.cs.example.edu"]),
    ("n[1-5]!n[2-3]", ["n1", "n4", "n5"]),
    ("n[1-5]&n[4-9]", ["n4", "n5"]),
    ("n[1-5]^n[4-7]", ["n1", "n2", "n3", "n6", "n7"]),
    ("n1,m1", ["m1", "n1"]),
    (" n1 , n2 ", ["n1", "n2"]),
    ("n[1, 3]", ["n1", "n3"]),
    ("n[1-3],n2", ["n1", "n2", "n3"]),  # a set: no duplicates
])
def test_expand(expr, nodes):
    assert sorted(expand(expr)) == sorted(nodes)
    assert len(expand(expr)) == len(nodes)


def test_expand_keeps_clustershell_order():
    assert expand("n[3,1,2]") == ["n1", "n2", "n3"]
    assert expand("pl[1-2]-r[1-2]") == ["pl1-r1", "pl1-r2", "pl2-r1", "pl2-r2"]


@pytest.mark.parametrize("expr, fragment", [
    ("n[", "missing bracket"),
    ("n]", "illegal closing bracket"),
    ("n[1-2][", "illegal reopening bracket"),
    ("n[3-1]", "invalid values in range"),
    ("n[a-b]", "bad range 'a-b'"),
    ("n[1-2-3]", "bad range '1-2-3'"),  # ClusterShell alone would give n-2..n3
    ("n[-1]", "bad range '-1'"),
    ("n[١-٣]", "bad range '١-٣'"),  # other scripts' digits
    ("n[]", "empty range"),
    ("n[1,,2]", "empty range"),
    ("n[01-1]", "padding length mismatch"),
    ("n[2-10/0]", "invalid values in range"),
    (",", "missing nodeset operand"),
    ("n1,", "missing nodeset operand"),
    ("n1!!n2", "missing nodeset operand"),
    ("&n1", "missing nodeset operand"),
    ("@grp", "unknown group '@grp'"),  # expand() has no groups, and never reads ClusterShell's
    ("@", "unknown group '@'"),
    ("@@", "not supported"),
    ("@*", "not supported"),
    ("n[1-1000000]", f"names more than {MAX_NODES} nodes"),
    ("n[0-9]" * 20, f"names more than {MAX_NODES} nodes"),  # ClusterShell alone: OverflowError
    ("a[1-1000]b[1-1000]", f"names more than {MAX_NODES} nodes"),
    ("a[1-60000],b[1-60000]", f"names more than {MAX_NODES} nodes"),
])
def test_malformed_expressions_raise_nodeseterror_naming_the_expression(expr, fragment):
    with pytest.raises(NodeSetError) as info:
        expand(expr)
    assert type(info.value) is NodeSetError
    assert str(info.value).startswith(f"bad node set {expr!r}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("value, message", [
    ("", "empty node-set expression"),
    ("   ", "empty node-set expression"),
    (None, "node set must be a string, got NoneType"),
    (["n1"], "node set must be a string, got list"),
])
def test_empty_or_non_string(value, message):
    with pytest.raises(NodeSetError, match=message):
        expand(value)


def test_size_limit_is_not_hit_by_real_fleets():
    assert len(expand(f"n[1-{MAX_NODES}]")) == MAX_NODES
    assert len(expand("a[1-100]-[1-100]")) == 10_000


def test_nodeseterror_is_a_valueerror():
    assert issubclass(NodeSetError, ValueError)


# --------------------------------------------------------------------------------------------
# fold


@pytest.mark.parametrize("names, folded", [
    (["n1", "n2", "n3", "n7"], "n[1-3,7]"),
    (["pl1", "pl2", "pl3", "pl7"], "pl[1-3,7]"),
    (["n01", "n02", "n03"], "n[01-03]"),
    (["n1", "n01", "n02"], "n[1,01-02]"),
    (["pl1-r1", "pl1-r2", "pl2-r1", "pl2-r2"], "pl[1-2]-r[1-2]"),
    (["a.example.org"], "a.example.org"),
    ([], ""),
])
def test_fold(names, folded):
    assert fold(names) == folded
    if names:
        assert sorted(expand(folded)) == sorted(names)


def test_fold_accepts_any_iterable_and_ignores_order_and_duplicates():
    assert fold(iter(["n3", "n1", "n2", "n1"])) == "n[1-3]"
    assert fold({"n2", "n1"}) == fold(("n1", "n2"))


def test_fold_cache_returns_identical_results():
    names = [f"node{i}.site{i % 7}.example.org" for i in range(500)]
    first = fold(names)
    again = fold(reversed(names))
    assert again is first  # the cached object itself
    assert sorted(expand(first)) == sorted(names)


def test_fold_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(nodesets, "_FOLD_CACHE", type(nodesets._FOLD_CACHE)())
    monkeypatch.setattr(nodesets, "_fold_cache_names", 0)
    monkeypatch.setattr(nodesets, "_FOLD_CACHE_NAMES", 1000)
    for start in range(0, 5000, 400):
        fold(f"n{i}" for i in range(start, start + 400))
    assert len(nodesets._FOLD_CACHE) <= nodesets._FOLD_CACHE_SIZE
    assert sum(len(k) for k in nodesets._FOLD_CACHE) == nodesets._fold_cache_names <= 1000
    fold(f"n{i}" for i in range(5000))  # larger than the whole budget: folded, not kept
    assert nodesets._fold_cache_names <= 1000


# --------------------------------------------------------------------------------------------
# groups


def test_resolve_groups_with_nesting_and_operators():
    names = [f"n{i}" for i in range(1, 7)]
    members, problems = resolve_groups({
        "low": "n[1-3]",
        "rest": "@all!@low",
        "mid": "@all&n[3-4]",
        "odd": "@low^n[2-4]",
        "deep": "@rest&@mid,@odd",
    }, names)
    assert problems == {}
    assert members["rest"] == ["n4", "n5", "n6"]
    assert members["mid"] == ["n3", "n4"]
    assert members["odd"] == ["n1", "n4"]
    assert sorted(members["deep"]) == ["n1", "n4"]


def test_resolve_groups_problems():
    members, problems = resolve_groups({
        "self": "@self",
        "a": "@b",
        "b": "@a,n1",
        "typo": "@lwo",
        "low": "n1",
        "user": "@typo",
        "bad": "n[",
    }, ["n1", "n2"])
    assert problems["self"] == "refers to itself (@self -> @self)"
    assert problems["a"] == "refers to itself (@a -> @b -> @a)"
    assert problems["b"] == "refers to itself (@b -> @a -> @b)"
    assert problems["typo"] == "refers to unknown group '@lwo' (did you mean '@low'?)"
    assert problems["user"] == "refers to group '@typo', which has problems"
    assert problems["bad"].startswith("bad node set 'n[': missing bracket")
    assert members == {"low": ["n1"]}


def test_resolve_groups_shortest_cycle_and_many_shared_groups():
    # a dense DAG: every group uses every earlier one; resolution and cycle checks stay fast
    exprs = {"g0": "n1"}
    for i in range(1, 40):
        exprs[f"g{i}"] = ",".join(f"@g{j}" for j in range(i)) + f",n{i + 1}"
    members, problems = resolve_groups(exprs, [f"n{i}" for i in range(1, 41)])
    assert problems == {}
    assert len(members["g39"]) == 40
    exprs["g0"] = "@g39"
    _, problems = resolve_groups(exprs, [f"n{i}" for i in range(1, 41)])
    assert problems["g0"] == "refers to itself (@g0 -> @g39 -> @g0)"
    assert len(problems) == 40


# --------------------------------------------------------------------------------------------
# Selector


def test_select_everything_by_default(sel):
    assert sel.select() == NODES


def test_select_union_of_w_and_g_in_fleet_order(sel):
    assert sel.select(include=["web10"], groups=["rack1"]) == ["pl1-r1", "pl2-r1", "pl3-r1", "web10"]
    assert sel.select(include=["web[01-02]", "db.example.org"]) == ["web01", "web02", "db.example.org"]
    assert sel.select(groups=["rack1", "rack2"]) == NODES[:6]
    assert sel.select(groups=["all"]) == NODES


def test_select_minus_x_and_X(sel):
    assert sel.select(exclude=["pl[1-3]-r[1-2]"]) == ["web01", "web02", "web10", "db.example.org"]
    assert sel.select(groups=["web"], exclude=["web02"]) == ["web01", "web10"]
    assert sel.select(exclude_groups=["rack1", "rack2", "web"]) == ["db.example.org"]
    assert sel.select(include=["@rack1"], exclude_groups=["empty"]) == ["pl1-r1", "pl2-r1", "pl3-r1"]


def test_select_with_operators_and_groups_in_w(sel):
    assert sel.select(include=["@rack1,@web!web10"]) == ["pl1-r1", "pl2-r1", "pl3-r1", "web01", "web02"]
    assert sel.select(include=["@all!@rack1!@rack2"]) == ["web01", "web02", "web10", "db.example.org"]
    assert sel.select(include=["pl[1-3]-r[1-2]&@rack2"]) == ["pl1-r2", "pl2-r2", "pl3-r2"]
    assert sel.select(include=["@rack1^pl1-r[1-2]"]) == ["pl1-r2", "pl2-r1", "pl3-r1"]


def test_empty_groups_and_groups_sharing_a_prefix(sel):
    assert sel.parse("@empty") == []
    assert sel.parse("@empty,web01") == ["web01"]
    assert sel.parse("@empty-2") == ["db.example.org"]  # not "@empty" followed by "-2"
    assert sel.parse("@empty-2!@empty") == ["db.example.org"]


@pytest.mark.parametrize("kwargs", [
    dict(groups=["web"], exclude_groups=["web"]),
    dict(include=["web01"], exclude=["web01"]),
    dict(groups=["empty"]),
    dict(include=["@empty"]),
    dict(exclude_groups=["all"]),
])
def test_empty_selection_is_an_error(sel, kwargs):
    with pytest.raises(NodeSetError, match="^the selection matches no nodes$"):
        sel.select(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=["wbe"]), "unknown group 'wbe' (did you mean 'web'?)"),
    (dict(exclude_groups=["rck2"]), "unknown group 'rck2' (did you mean 'rack2'?)"),
    (dict(groups=["zzzz"]), "unknown group 'zzzz'"),
    (dict(include=["@rakc1"]), "unknown group '@rakc1' in '@rakc1' (did you mean '@rack1'?)"),
    (dict(include=["web01,@zzzz"]), "unknown group '@zzzz' in 'web01,@zzzz'"),
    (dict(include=["wbe01"]), "'wbe01' names node 'wbe01', not in the fleet (did you mean 'web01'?)"),
    (dict(include=["web[03-05]"]), "'web[03-05]' names node 'web03' and 2 more, not in the fleet"),
    (dict(exclude=["db.example.com"]), "'db.example.com' names node 'db.example.com', not in the fleet (did you mean 'db.example.org'?)"),
    (dict(include=["web[01-"]), "bad node set 'web[01-': missing bracket"),
    (dict(include=[""]), "empty node-set expression"),
    (dict(include=["@"]), "bad node set '@': unknown group '@'"),
    (dict(include=["@@"]), "bad node set '@@': listing groups"),
    (dict(include=["@other:web"]), "unknown group '@other' in '@other:web'"),
    (dict(include=["²"]), "'²' names node '²', not in the fleet"),  # found by hypothesis
])
def test_selection_errors_name_the_problem(sel, kwargs, message):
    with pytest.raises(NodeSetError) as info:
        sel.select(**kwargs)
    assert type(info.value) is NodeSetError
    assert str(info.value).startswith(message)


def test_parse_non_string(sel):
    with pytest.raises(NodeSetError, match="must be a string"):
        sel.parse(42)


def test_selector_for_fleet():
    from pltui.fleet import loads

    fleet = loads('[fleet]\nname = "f"\nnodes = ["n[1-4]"]\n[groups]\nodd = "n1,n3"\n')
    sel = Selector.for_fleet(fleet)
    assert sel.select(groups=["odd"]) == ["n1", "n3"]
    assert sel.select(include=["@all!@odd"]) == ["n2", "n4"]


# --------------------------------------------------------------------------------------------
# ClusterShell's own group configuration is never consulted


def test_clustershell_system_groups_config_is_never_read(tmp_path):
    """A groups.conf in $CLUSTERSHELL_CFGDIR (or /etc/clustershell, ~/.config...) defining
    @evil is visible to plain ClusterShell, but not through pltui.nodesets."""
    (tmp_path / "groups.conf").write_text(textwrap.dedent(f"""\
        [Main]
        default: local
        [local]
        map: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' {tmp_path}/groups.txt
        all: sed -n 's/^all:\\(.*\\)/\\1/p' {tmp_path}/groups.txt
        list: sed -n 's/^\\([0-9A-Za-z_-]*\\):.*/\\1/p' {tmp_path}/groups.txt
    """))
    (tmp_path / "groups.txt").write_text("evil: n[1-3]\nall: n[1-9]\n")
    script = textwrap.dedent("""\
        import json
        from ClusterShell.NodeSet import NodeSet
        before = list(NodeSet("@evil"))
        from pltui.nodesets import NodeSetError, Selector, expand, fold
        from ClusterShell.NodeSet import NodeSet as NS
        after = {}
        for name, call in [("expand", lambda: expand("@evil")),
                           ("select", lambda: Selector(["n1", "n2"], {}).parse("@evil")),
                           ("plain", lambda: list(NS("@evil")))]:
            try:
                after[name] = call()
            except Exception as exc:
                after[name] = type(exc).__name__ + ": " + str(exc)
        print(json.dumps({"before": before, "after": after}))
    """)
    env = dict(os.environ, CLUSTERSHELL_CFGDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout)
    assert report["before"] == ["n1", "n2", "n3"]  # the config is live for plain ClusterShell
    assert report["after"]["expand"] == "NodeSetError: bad node set '@evil': unknown group '@evil'"
    assert report["after"]["select"] == "NodeSetError: unknown group '@evil' in '@evil'"
    assert report["after"]["plain"].startswith("GroupSourceError")  # the std resolver is pltui's


def test_group_terms_do_not_reparse_member_lists(monkeypatch):
    """`@all!@alpha` on a big fleet is set algebra on the groups' members: ClusterShell only
    sees the terms that are not plain groups (here `n1`)."""
    names = [f"node{i}.site{i % 97}.example.org" for i in range(20_000)]
    sel = Selector(names, {"alpha": names[:5000]})
    seen = []
    real = nodesets._parse

    def spy(expr, resolver=None):
        seen.append(expr)
        return real(expr, resolver)

    monkeypatch.setattr(nodesets, "_parse", spy)
    chosen = sel.parse("@all!@alpha!node5000.site53.example.org")
    assert len(chosen) == 14_999 and chosen[0] == "node5001.site54.example.org"
    assert seen == ["node5000.site53.example.org"]
    members, problems = resolve_groups({"alpha": "@all&@beta", "beta": "@all!node0.site0.example.org"}, names)
    assert problems == {} and len(members["alpha"]) == 19_999
    assert seen == ["node5000.site53.example.org", "node0.site0.example.org"]
