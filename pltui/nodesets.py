"""Node-set expressions (ClusterShell syntax) wired to a fleet's groups.

`node[001-120]`, `pl[1-3]-r[1-2]`, `@group`, union `,`, difference `!`, intersection `&`,
xor `^`. The parsing and folding is ClusterShell's own `NodeSet`; this module only feeds it the
fleet's `[groups]` through a `GroupResolver`, turns its exceptions into one clear `NodeSetError`,
and caches folds (irregular PlanetLab-style names fold slowly).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Iterable, Sequence

from ClusterShell.NodeSet import NodeSet, NodeSetException, set_std_group_resolver
from ClusterShell.NodeUtils import GroupResolver, GroupSource, GroupResolverError

# Never let ClusterShell read /etc/clustershell/groups*: a fleet's groups come from its file only.
set_std_group_resolver(GroupResolver(GroupSource("pltui-empty", {})))

_GROUP_REF = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.-]*)")


class NodeSetError(ValueError):
    """A node-set expression could not be parsed or resolved."""


def _resolver(groups: dict[str, str] | None, all_nodes: Sequence[str] | None) -> GroupResolver:
    table = dict(groups or {})
    source = GroupSource("fleet", table, ",".join(all_nodes) if all_nodes else None)
    return GroupResolver(source)


def _parse(expr: str, resolver: GroupResolver | None = None) -> NodeSet:
    if not isinstance(expr, str):
        raise NodeSetError(f"node set must be a string, got {type(expr).__name__}")
    if not expr.strip():
        raise NodeSetError("empty node-set expression")
    try:
        return NodeSet(expr, resolver=resolver)
    except (NodeSetException, GroupResolverError) as exc:
        raise NodeSetError(f"bad node set {expr!r}: {exc}") from None
    except RecursionError:
        raise NodeSetError(f"bad node set {expr!r}: group definitions refer to themselves") from None
    except (ValueError, TypeError, IndexError, KeyError) as exc:  # ClusterShell leaks these on odd input
        raise NodeSetError(f"bad node set {expr!r}: {exc}") from None


def expand(expr: str) -> list[str]:
    """Every node name of a group-free expression, in ClusterShell's order."""
    return list(_parse(expr))


def _group_cycles(exprs: dict[str, str]) -> dict[str, str]:
    """Groups whose definitions refer, directly or not, to themselves."""
    refs = {g: set(_GROUP_REF.findall(e)) for g, e in exprs.items()}
    bad: dict[str, str] = {}

    def visit(group: str, path: list[str]) -> None:
        for ref in sorted(refs.get(group, ())):
            if ref == path[0]:
                chain = " -> ".join(["@" + p for p in path] + ["@" + ref])
                bad.setdefault(path[0], f"refers to itself ({chain})")
                return
            if ref in refs and ref not in path:
                visit(ref, path + [ref])

    for group in exprs:
        visit(group, [group])
    return bad


def resolve_groups(exprs: dict[str, str], all_nodes: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Expand every group; return (members, problems) where problems names each bad group."""
    problems = _group_cycles(exprs)
    known = set(exprs) | {"all"}
    for group, expr in exprs.items():
        if group in problems:
            continue
        unknown = sorted(set(_GROUP_REF.findall(expr)) - known)
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            suffix = f" (did you mean '@{hint[0]}'?)" if hint else ""
            problems[group] = f"refers to unknown group '@{unknown[0]}'{suffix}"
    good = {g: e for g, e in exprs.items() if g not in problems}
    table = dict(good)
    table["all"] = ",".join(all_nodes) if all_nodes else ""
    resolver = _resolver(table, all_nodes)
    members: dict[str, list[str]] = {}
    for group, expr in good.items():
        try:
            members[group] = list(_parse(expr, resolver))
        except NodeSetError as exc:
            problems[group] = str(exc)
    return members, problems


class Selector:
    """Selections against one fleet: `-w NODESET -g GROUP -x NODESET -X GROUP`, and folding."""

    def __init__(self, nodes: Sequence[str], groups: dict[str, Sequence[str]]):
        self.nodes = list(nodes)
        self._index = {n: i for i, n in enumerate(self.nodes)}
        self.groups = {g: list(m) for g, m in groups.items()}
        table = {g: ",".join(m) for g, m in self.groups.items()}
        table["all"] = ",".join(self.nodes)
        self._resolver = GroupResolver(GroupSource("fleet", {g: v for g, v in table.items() if v}, table["all"]))
        self._empty_groups = {g for g, v in table.items() if not v}

    @classmethod
    def for_fleet(cls, fleet) -> "Selector":
        return cls(fleet.node_names, fleet.group_members)

    def parse(self, expr: str) -> list[str]:
        """Nodes of the fleet named by `expr`, in fleet order; unknown nodes or groups are errors."""
        for ref in _GROUP_REF.findall(expr):
            if ref not in self.groups and ref != "all":
                import difflib

                hint = difflib.get_close_matches(ref, list(self.groups), n=1)
                suffix = f" (did you mean '@{hint[0]}'?)" if hint else ""
                raise NodeSetError(f"unknown group '@{ref}' in {expr!r}{suffix}")
        # Empty groups cannot be given to ClusterShell's resolver; substitute a name no node has.
        for group in self._empty_groups:
            expr = re.sub(r"@" + re.escape(group) + r"\b", "__pltui_empty_group__", expr)
        names = list(_parse(expr, self._resolver))
        unknown = [n for n in names if n not in self._index and n != "__pltui_empty_group__"]
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], self.nodes, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise NodeSetError(f"{expr!r} names node {unknown[0]!r}{more}, not in the fleet{suffix}")
        return self.order(n for n in names if n in self._index)

    def order(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names), key=self._index.__getitem__)

    def select(
        self,
        include: Sequence[str] = (),
        groups: Sequence[str] = (),
        exclude: Sequence[str] = (),
        exclude_groups: Sequence[str] = (),
    ) -> list[str]:
        """clush-style selection: the union of -w and -g (every node when both are empty),
        minus -x and -X. An empty result is an error: acting on nothing is never intended."""
        for group in list(groups) + list(exclude_groups):
            if group not in self.groups and group != "all":
                import difflib

                hint = difflib.get_close_matches(group, list(self.groups), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise NodeSetError(f"unknown group {group!r}{suffix}")
        chosen: set[str] = set()
        if not include and not groups:
            chosen = set(self.nodes)
        for expr in include:
            chosen.update(self.parse(expr))
        for group in groups:
            chosen.update(self.nodes if group == "all" else self.groups[group])
        for expr in exclude:
            chosen.difference_update(self.parse(expr))
        for group in exclude_groups:
            chosen.difference_update(self.nodes if group == "all" else self.groups[group])
        if not chosen:
            raise NodeSetError("the selection matches no nodes")
        return self.order(chosen)


_FOLD_CACHE: "OrderedDict[frozenset[str], str]" = OrderedDict()
_FOLD_CACHE_SIZE = 256


def fold(names: Iterable[str]) -> str:
    """The shortest ClusterShell form of a set of names (`pl[1-3,7]`), cached by set."""
    key = frozenset(names)
    cached = _FOLD_CACHE.get(key)
    if cached is not None:
        _FOLD_CACHE.move_to_end(key)
        return cached
    if not key:
        return ""
    try:
        folded = str(NodeSet.fromlist(sorted(key), resolver=GroupResolver(GroupSource("none", {}))))
    except (NodeSetException, ValueError, TypeError):
        folded = ",".join(sorted(key))
    _FOLD_CACHE[key] = folded
    if len(_FOLD_CACHE) > _FOLD_CACHE_SIZE:
        _FOLD_CACHE.popitem(last=False)
    return folded
