"""Node-set expressions (ClusterShell syntax) wired to a fleet's groups.

`node[001-120]`, `pl[1-3]-r[1-2]`, `@group`, union `,`, difference `!`, intersection `&`,
xor `^`. The parsing and folding is ClusterShell's own `NodeSet`; this module only feeds it the
fleet's `[groups]` through a `GroupResolver`, turns its exceptions into one clear `NodeSetError`,
and caches folds (irregular PlanetLab-style names fold slowly).
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict, deque
from typing import Iterable, Sequence

from ClusterShell.NodeSet import NodeSet, NodeSetException, set_std_group_resolver
from ClusterShell.NodeUtils import (
    GroupResolver,
    GroupResolverError,
    GroupResolverSourceError,
    GroupSource,
    GroupSourceError,
)

from pltui.sanitize import display_name

_GROUP_REF = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.-]*)")

# Upper bound on the nodes one expression may name: `n[1-100000000]` would otherwise make
# ClusterShell build a set of 10^8 strings (minutes, gigabytes) before anything could refuse it.
MAX_NODES = 100_000
# One item of a bracket: 7, 1-10 or 1-10/2 (ASCII digits; ClusterShell's int() would also take
# signs and other scripts' digits, and turns `n[1-2-3]` into n-2..n3).
_RANGE_ITEM = re.compile(r"^[0-9]+(?:-[0-9]+(?:/[0-9]+)?)?$", re.ASCII)
_OPERATORS = ",!&^"


class NodeSetError(ValueError):
    """A node-set expression could not be parsed or resolved."""


class _StrictSource(GroupSource):
    """A static group source where an unknown group is an error, not silently empty."""

    def resolv_map(self, group):
        if group not in self.groups:
            raise GroupSourceError(f"unknown group '@{group}'", self)
        return self.groups[group]

    def resolv_list(self):
        raise GroupSourceError("listing groups ('@@', '@*') is not supported", self)


def _strict_resolver(groups: dict[str, str], all_nodes: str | None = None) -> GroupResolver:
    return GroupResolver(_StrictSource("fleet", dict(groups), all_nodes))


# Never let ClusterShell read /etc/clustershell/groups* (or ~/.config, $CLUSTERSHELL_CFGDIR):
# a fleet's groups come from its file only, and a group outside it is an error.
_NO_GROUPS = _strict_resolver({})
set_std_group_resolver(_NO_GROUPS)


def _resolver(groups: dict[str, str] | None, all_nodes: Sequence[str] | None) -> GroupResolver:
    return _strict_resolver(dict(groups or {}), ",".join(all_nodes) if all_nodes else None)


def _precheck(expr: str) -> str | None:
    """Why `expr` must not reach ClusterShell (a bad range, or too many nodes), or None.

    Brackets are checked item by item, and the size is bounded by summing, over the terms
    between top-level operators, the product of each term's bracket sizes. Unbalanced
    brackets are left for ClusterShell to report."""
    total = 0
    term = 1
    i, n = 0, len(expr)
    while i < n:
        char = expr[i]
        if char == "[":
            close = expr.find("]", i + 1)
            if close < 0 or "[" in expr[i + 1:close]:
                return None
            size = 0
            for item in re.sub(r"\s+", "", expr[i + 1:close]).split(","):
                if not _RANGE_ITEM.match(item):
                    return f"bad range {item!r} in [{expr[i + 1:close]}]" if item else f"empty range in [{expr[i + 1:close]}]"
                low, _, rest = item.partition("-")
                high, _, step = rest.partition("/")
                if high and int(high) >= int(low) and (not step or int(step) > 0):
                    size += (int(high) - int(low)) // int(step or 1) + 1
                else:
                    size += 1
            term *= size
            if term > MAX_NODES:
                break
            i = close + 1
            continue
        if char in _OPERATORS:
            total += term
            term = 1
        i += 1
    total += term
    if total > MAX_NODES:
        return f"names more than {MAX_NODES} nodes"
    return None


def _parse(expr: str, resolver: GroupResolver | None = None) -> NodeSet:
    if not isinstance(expr, str):
        raise NodeSetError(f"node set must be a string, got {type(expr).__name__}")
    if not expr.strip():
        raise NodeSetError("empty node-set expression")
    reason = _precheck(expr)
    if reason:
        raise NodeSetError(f"bad node set {expr!r}: {reason}")
    try:
        return NodeSet(expr, resolver=resolver or _NO_GROUPS)
    except GroupResolverSourceError as exc:
        raise NodeSetError(f"bad node set {expr!r}: unknown group source {str(exc)!r} (use '@group')") from None
    except (NodeSetException, GroupResolverError, GroupSourceError) as exc:
        raise NodeSetError(f"bad node set {expr!r}: {display_name(str(exc))}") from None
    except RecursionError:
        raise NodeSetError(f"bad node set {expr!r}: group definitions refer to themselves") from None
    except Exception as exc:  # ClusterShell leaks ValueError, OverflowError, ... on odd input
        raise NodeSetError(f"bad node set {expr!r}: {display_name(str(exc))}") from None


def _split_terms(expr: str) -> list[tuple[str, str]] | None:
    """The top-level (operator, term) pairs of `expr`, as ClusterShell reads them left to
    right (the first operator is a union with the empty set); None for input ClusterShell
    itself should judge (nested or unbalanced brackets, a missing operand)."""
    terms: list[tuple[str, str]] = []
    op, start, inside = ",", 0, False
    for i, char in enumerate(expr):
        if char == "[":
            if inside:
                return None
            inside = True
        elif char == "]":
            if not inside:
                return None
            inside = False
        elif char in _OPERATORS and not inside:
            terms.append((op, expr[start:i].strip()))
            op, start = char, i + 1
    if inside:
        return None
    terms.append((op, expr[start:].strip()))
    if not all(term for _, term in terms):
        return None
    return terms


def _evaluate(expr: str, sets: dict[str, frozenset[str]], resolver: GroupResolver) -> set[str]:
    """The nodes of `expr`, with every plain `@group` term taken from `sets` (no re-parsing
    of a 10k-node group's member list); other terms go to ClusterShell one by one.

    Same result as ClusterShell on the whole expression with a resolver over the same groups
    (a property test checks this); errors are ClusterShell's, naming the whole expression."""
    terms = _split_terms(expr) if isinstance(expr, str) and "@" in expr else None
    if terms is None or not any(term[0] == "@" and term[1:] in sets for _, term in terms):
        return set(_parse(expr, resolver))
    reason = _precheck(expr)
    if reason:
        raise NodeSetError(f"bad node set {expr!r}: {reason}")
    result: set[str] = set()
    nodes: set[str] | frozenset[str]
    for op, term in terms:
        if term[0] == "@" and term[1:] in sets:
            nodes = sets[term[1:]]
        else:
            try:
                nodes = set(_parse(term, resolver))
            except NodeSetError:
                _parse(expr, resolver)  # raises the same problem, naming the expression
                raise
        if op == ",":
            result |= nodes
        elif op == "!":
            result -= nodes
        elif op == "&":
            result &= nodes
        else:
            result ^= nodes
    return result


def _natural_key(name: str) -> list:
    """Sort key putting n2 before n10."""
    return [(0, int(part), part) if part.isascii() and part.isdigit() else (1, 0, part)
            for part in re.split(r"([0-9]+)", name)]


def expand(expr: str) -> list[str]:
    """Every node name of a group-free expression, in ClusterShell's order (`@group` is an error)."""
    return list(_parse(expr))


def _group_cycles(exprs: dict[str, str]) -> dict[str, str]:
    """Groups whose definitions refer, directly or not, to themselves (shortest chain shown)."""
    refs = {g: sorted(set(_GROUP_REF.findall(e))) for g, e in exprs.items()}
    bad: dict[str, str] = {}
    for group in exprs:
        # breadth-first from the group's references; reaching the group again is a cycle
        parent: dict[str, str] = {}
        queue: deque[str] = deque()
        for ref in refs[group]:
            if ref in refs and ref not in parent:
                parent[ref] = group
                queue.append(ref)
        while queue:
            current = queue.popleft()
            if current == group:
                chain = [group]
                node = parent[group]
                while node != group:
                    chain.append(node)
                    node = parent[node]
                chain.append(group)
                bad[group] = "refers to itself (" + " -> ".join("@" + g for g in reversed(chain)) + ")"
                break
            for ref in refs[current]:
                if ref in refs and ref not in parent:
                    parent[ref] = current
                    queue.append(ref)
    return bad


def resolve_groups(exprs: dict[str, str], all_nodes: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Expand every group; return (members, problems) where problems names each bad group.

    Groups are resolved in dependency order, each `@other` standing for the already resolved
    members of `other`, so nested groups cost one parse each however they are shared.
    Members come in the order of `all_nodes`, then any names outside it."""
    problems = _group_cycles(exprs)
    known = set(exprs) | {"all"}
    refs = {g: set(_GROUP_REF.findall(e)) for g, e in exprs.items()}
    for group in exprs:
        if group in problems:
            continue
        unknown = sorted(refs[group] - known)
        if unknown:
            hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            suffix = f" (did you mean '@{hint[0]}'?)" if hint else ""
            problems[group] = f"refers to unknown group '@{unknown[0]}'{suffix}"
    table = {"all": ",".join(all_nodes)}
    sets = {"all": frozenset(all_nodes)}
    index = {name: i for i, name in enumerate(all_nodes)}
    members: dict[str, list[str]] = {}
    pending = [g for g in exprs if g not in problems]
    while pending:
        progress = False
        for group in list(pending):
            deps = refs[group] - {"all"}
            broken = sorted(d for d in deps if d in problems)
            if broken:
                problems[group] = f"refers to group '@{broken[0]}', which has problems"
            elif all(d in members for d in deps):
                try:
                    chosen = _evaluate(exprs[group], sets, _strict_resolver(table, table["all"]))
                except NodeSetError as exc:
                    problems[group] = str(exc)
                else:  # fleet order, then names outside the fleet
                    known_nodes = sorted((n for n in chosen if n in index), key=index.__getitem__)
                    members[group] = known_nodes + sorted(chosen.difference(index), key=_natural_key)
                    sets[group] = frozenset(chosen)
                    table[group] = ",".join(members[group])
            else:
                continue
            pending.remove(group)
            progress = True
        if not progress:  # pragma: no cover - cycles were removed above
            for group in pending:
                problems[group] = "could not be resolved"
            break
    return members, problems


class Selector:
    """Selections against one fleet: `-w NODESET -g GROUP -x NODESET -X GROUP`, and folding."""

    def __init__(self, nodes: Sequence[str], groups: dict[str, Sequence[str]]):
        self.nodes = list(nodes)
        self._index = {n: i for i, n in enumerate(self.nodes)}
        self.groups = {g: list(m) for g, m in groups.items()}
        table = {g: ",".join(m) for g, m in self.groups.items()}
        table["all"] = ",".join(self.nodes)
        # Empty groups resolve to nothing; unknown ones are errors (see _StrictSource).
        self._resolver = _strict_resolver(table, table["all"])
        self._sets = {g: frozenset(m) for g, m in self.groups.items()}
        self._sets["all"] = frozenset(self.nodes)

    @classmethod
    def for_fleet(cls, fleet) -> "Selector":
        return cls(fleet.node_names, fleet.group_members)

    def parse(self, expr: str) -> list[str]:
        """Nodes of the fleet named by `expr`, in fleet order; unknown nodes or groups are errors."""
        if not isinstance(expr, str):
            raise NodeSetError(f"node set must be a string, got {type(expr).__name__}")
        for ref in _GROUP_REF.findall(expr):
            if ref not in self.groups and ref != "all":
                hint = difflib.get_close_matches(ref, list(self.groups), n=1)
                suffix = f" (did you mean '@{hint[0]}'?)" if hint else ""
                raise NodeSetError(f"unknown group '@{ref}' in {expr!r}{suffix}")
        names = _evaluate(expr, self._sets, self._resolver)
        unknown = sorted(names.difference(self._index), key=_natural_key)
        if unknown:
            hint = difflib.get_close_matches(unknown[0], self.nodes, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise NodeSetError(f"{expr!r} names node {unknown[0]!r}{more}, not in the fleet{suffix}")
        return self.order(names)

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
# Also bound the names held: 256 sets of a 10k-node fleet would pin ~150 MB of frozensets.
_FOLD_CACHE_NAMES = 200_000
_fold_cache_names = 0


def fold(names: Iterable[str]) -> str:
    """The shortest ClusterShell form of a set of names (`pl[1-3,7]`), cached by set."""
    global _fold_cache_names
    key = frozenset(names)
    cached = _FOLD_CACHE.get(key)
    if cached is not None:
        _FOLD_CACHE.move_to_end(key)
        return cached
    if not key:
        return ""
    try:
        folded = str(NodeSet.fromlist(sorted(key), resolver=_NO_GROUPS))
    except Exception:  # a name ClusterShell cannot take: list them as they are
        folded = ",".join(sorted(key))
    if len(key) <= _FOLD_CACHE_NAMES:
        _FOLD_CACHE[key] = folded
        _fold_cache_names += len(key)
        while len(_FOLD_CACHE) > _FOLD_CACHE_SIZE or _fold_cache_names > _FOLD_CACHE_NAMES:
            old, _ = _FOLD_CACHE.popitem(last=False)
            _fold_cache_names -= len(old)
    return folded
