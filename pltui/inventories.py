"""Readers for what an operator already has: ~/.ssh/config, ClusterShell groups, Ansible
inventories (INI and YAML) and plain host lists. Each fills one `Inventory`, which
`pltui.init` turns into a fleet file.

Every problem names its file and line (`InventoryError.problems`, all of them, not just the
first), so a broken inventory is fixed in one pass. Entries pltui cannot use as nodes (ssh_config
wildcards, `Match` blocks) are skipped with a note rather than an error: they are normal there.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pltui.fleet import NAME_RE, NODE_NAME_RE

OVERRIDE_KEYS = ("host", "port", "user")
_ANSIBLE_VARS = {"ansible_host": "host", "ansible_ssh_host": "host", "ansible_port": "port",
                 "ansible_ssh_port": "port", "ansible_user": "user", "ansible_ssh_user": "user"}
_ANSIBLE_IMPLICIT = ("all", "ungrouped")


class InventoryError(Exception):
    """An input could not be read; `problems` lists every one, each starting `file:line:`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Inventory:
    """Nodes (in first-seen order) with their connection overrides, groups, and notes."""

    nodes: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    ssh: dict[str, object] = field(default_factory=dict)  # fleet-wide [ssh] settings
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add_node(self, name: str, where: str, **overrides) -> bool:
        if not NODE_NAME_RE.match(name):
            self.problems.append(f"{where}: {name!r} is not usable as a node name (a host name: letters, "
                                 "digits, '.', '-', '_', ':'; not starting with '-')")
            return False
        known = self.nodes.setdefault(name, {})
        for key, value in overrides.items():
            if value is None:
                continue
            if key in known and known[key] != value:
                self.notes.append(f"{where}: {name}: {key} {value!r} ignored, {known[key]!r} was given first")
                continue
            known[key] = value
        return True

    def add_to_group(self, group: str, name: str, where: str) -> None:
        if name not in self.nodes:
            return
        clean = group_name(group)
        if clean is None:
            return
        if clean != group and clean not in self.groups:
            self.notes.append(f"{where}: group {group!r} written as {clean!r} (fleet group names: letters, "
                              "digits, '_', '.', '-')")
        members = self.groups.setdefault(clean, [])
        if name not in members:
            members.append(name)

    def check(self) -> None:
        self.notes = list(dict.fromkeys(self.notes))
        self.problems = list(dict.fromkeys(self.problems))
        if self.problems:
            raise InventoryError(self.problems)


def group_name(group: str) -> str | None:
    """A fleet-legal group name for an outside one ('web:prod' -> 'web_prod'); None for 'all'."""
    if group == "all":
        return None
    if NAME_RE.match(group):
        return group
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", group).lstrip(".-") or "group"
    return clean if clean != "all" else "all_"


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
    return None


# --------------------------------------------------------------------------------------------
# ~/.ssh/config


_SSH_LINE = re.compile(r"^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*?)\s*$")


def read_ssh_config(path: str | os.PathLike, inv: Inventory, *, _depth: int = 0) -> None:
    """Concrete `Host` names become nodes; wildcard and negated patterns and `Match` blocks are
    skipped with a note. The fleet's [ssh].config points at the file, so HostName, Port, User and
    IdentityFile stay where the operator keeps them (asyncssh applies them per host)."""
    if _depth == 0:
        inv.sources.append(f"ssh config {path}")
        given = str(path)
        inv.ssh.setdefault("config", str(path) if given.startswith("~") else os.path.abspath(path))
    path = Path(os.path.expanduser(str(path)))
    text = _read_text(path, inv.problems)
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{number}"
        match = _SSH_LINE.match(stripped)
        if not match:
            inv.problems.append(f"{where}: cannot parse {stripped[:60]!r} (expected 'Keyword value')")
            continue
        keyword, rest = match.group(1).lower(), match.group(2)
        if keyword not in ("host", "include", "match"):
            continue
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            inv.problems.append(f"{where}: {keyword.capitalize()}: {exc}")
            continue
        if keyword == "match":
            inv.notes.append(f"{where}: Match block skipped (pltui lists hosts by name)")
        elif keyword == "include":
            _ssh_include(path, where, words, inv, _depth)
        elif not words:
            inv.problems.append(f"{where}: Host without a name")
        else:
            for word in words:
                if word.startswith("!") or any(c in word for c in "*?"):
                    inv.notes.append(f"{where}: pattern {word!r} skipped (not one concrete host)")
                else:
                    inv.add_node(word, where)


def _ssh_include(path: Path, where: str, words: list[str], inv: Inventory, depth: int) -> None:
    if depth >= 16:
        inv.problems.append(f"{where}: Include nested too deeply (a loop?)")
        return
    for word in words:
        pattern = os.path.expanduser(word)
        if not os.path.isabs(pattern):
            pattern = str(Path("~/.ssh").expanduser() / pattern)
        for found in sorted(glob.glob(pattern)):
            read_ssh_config(found, inv, _depth=depth + 1)


# --------------------------------------------------------------------------------------------
# ClusterShell groups


def read_clustershell(config: str | os.PathLike | None, inv: Inventory) -> None:
    """Every group of every source ClusterShell reads (groups.conf, its confdir and autodir).
    Groups of the default source keep their names; those of other sources are prefixed with
    the source name (`site_web`), since ClusterShell names them `@site:web`."""
    from ClusterShell.NodeSet import NodeSet, NodeSetException, config_paths
    from ClusterShell.NodeUtils import GroupResolverConfig, GroupResolverError, GroupSourceError

    from pltui.nodesets import _NO_GROUPS

    paths = [os.path.expanduser(str(config))] if config else config_paths("groups.conf")
    found = [p for p in paths if os.path.isfile(p)]
    if not found:
        inv.problems.append(f"{paths[0]}: no such ClusterShell groups.conf" if config else
                            f"no ClusterShell groups.conf found (looked in {', '.join(paths)})")
        return
    where = found[-1]  # the one that wins (ClusterShell reads them in this order)
    inv.sources.append(f"ClusterShell groups ({where})")
    try:
        resolver = GroupResolverConfig(paths)
        sources = resolver.sources() or []
        default = resolver.default_source_name
        for source in sources:
            for group in resolver.grouplist(source):
                nodes = NodeSet.fromlist(resolver.group_nodes(group, source), resolver=_NO_GROUPS)
                label = group if source == default else f"{source}_{group}"
                for name in nodes:
                    if inv.add_node(name, f"{where}: source {source}, group {group}"):
                        inv.add_to_group(label, name, f"{where}: source {source}")
    except (GroupResolverError, GroupSourceError, NodeSetException) as exc:
        inv.problems.append(f"{where}: ClusterShell: {exc}")
    except Exception as exc:  # ClusterShell's config errors are not all its own classes
        inv.problems.append(f"{where}: ClusterShell: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# Ansible inventories


_RANGE = re.compile(r"\[([0-9]+|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")


def expand_ansible(pattern: str) -> list[str]:
    """Ansible host ranges: `web[01:03].x`, `db-[a:c]`, `n[0:10:5]` (inclusive, stepped)."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if step < 1:
        raise ValueError(f"bad range step in {pattern!r}")
    head, tail = pattern[: match.start()], pattern[match.end():]
    if start.isdigit() != end.isdigit():
        raise ValueError(f"bad range {match.group(0)!r} in {pattern!r}")
    if start.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    else:
        values = [chr(i) for i in range(ord(start), ord(end) + 1, step)]
    if not values:
        raise ValueError(f"empty range {match.group(0)!r} in {pattern!r}")
    return [name for value in values for name in expand_ansible(head + value + tail)]


def _overrides(variables: dict, where: str, inv: Inventory) -> dict:
    out: dict[str, object] = {}
    for key, value in variables.items():
        target = _ANSIBLE_VARS.get(key)
        if target is None or value is None:
            continue
        if target == "port":
            try:
                value = int(str(value))
                if not 1 <= value <= 65535:
                    raise ValueError
            except ValueError:
                inv.problems.append(f"{where}: {key}={value!r} is not a port number")
                continue
        elif not isinstance(value, str) or not value or value.startswith("-") or any(c.isspace() for c in value):
            inv.problems.append(f"{where}: {key}={value!r} is not usable (one word, not starting with '-')")
            continue
        out[target] = value
    return out


class _AnsibleTree:
    """Groups, their hosts (with host vars), children and group vars, before flattening."""

    def __init__(self, path: Path, inv: Inventory):
        self.path, self.inv = path, inv
        self.hosts: dict[str, list[tuple[str, dict, str]]] = {}  # group -> [(host, vars, where)]
        self.children: dict[str, list[tuple[str, str]]] = {}
        self.vars: dict[str, tuple[dict, str]] = {}

    def host(self, group: str, pattern: str, variables: dict, where: str) -> None:
        try:
            names = expand_ansible(pattern)
        except ValueError as exc:
            self.inv.problems.append(f"{where}: {exc}")
            return
        for name in names:
            self.hosts.setdefault(group, []).append((name, variables, where))

    def members(self, group: str, seen: frozenset = frozenset()) -> list[str]:
        if group == "all":  # every host, listed or not (Ansible's implicit group)
            return [h for hosts in self.hosts.values() for h, _, _ in hosts]
        out = [h for h, _, _ in self.hosts.get(group, [])]
        for child, where in self.children.get(group, []):
            if child in seen:
                self.inv.problems.append(f"{where}: group {child!r} contains itself")
                continue
            if child not in self.hosts and child not in self.children and child not in self.vars:
                self.inv.notes.append(f"{where}: group {child!r} has no hosts")
            out += self.members(child, seen | {group, child})
        return out

    def flatten(self) -> None:
        """Host vars win over group vars; a group's vars reach its children's hosts too."""
        for group in self.hosts:
            for name, variables, where in self.hosts[group]:
                self.inv.add_node(name, where, **_overrides(variables, where, self.inv))
        groups = list(dict.fromkeys([*self.hosts, *self.children, *self.vars]))
        # a child group's vars beat its parents' (Ansible's rule), and setdefault keeps the
        # first value given: so visit the deepest groups first, 'all' last
        parents: dict[str, set[str]] = {}
        for parent, kids in self.children.items():
            for kid, _ in kids:
                parents.setdefault(kid, set()).add(parent)

        def depth(group: str, seen: frozenset = frozenset()) -> int:
            ups = [p for p in parents.get(group, ()) if p not in seen]
            return 1 + max((depth(p, seen | {group}) for p in ups), default=0) if group != "all" else 0

        for group in sorted(groups, key=lambda g: -depth(g)):
            gvars, gwhere = self.vars.get(group, ({}, ""))
            over = _overrides(gvars, gwhere, self.inv) if gvars else {}
            for name in self.members(group) if over else ():
                if name in self.inv.nodes:
                    for key, value in over.items():
                        self.inv.nodes[name].setdefault(key, value)
        for group in groups:
            if group not in _ANSIBLE_IMPLICIT:
                for name in self.members(group):
                    self.inv.add_to_group(group, name, f"{self.path}")


def read_ansible(path: str | os.PathLike, inv: Inventory) -> None:
    """An Ansible inventory file, INI or YAML (by extension, else by content)."""
    path = Path(os.path.expanduser(str(path)))
    inv.sources.append(f"Ansible inventory {path}")
    text = _read_text(path, inv.problems)
    if text is None:
        return
    tree = _AnsibleTree(path, inv)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    if path.suffix in (".yml", ".yaml") or first == "---" or first.startswith("all:"):
        _ansible_yaml(path, text, tree)
    else:
        _ansible_ini(path, text, tree)
    tree.flatten()


_INI_SECTION = re.compile(r"^\[([^\]:\s]+)(?::(children|vars))?\]$")


def _ansible_ini(path: Path, text: str, tree: _AnsibleTree) -> None:
    group, kind = "ungrouped", "hosts"
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        where = f"{path}:{number}"
        if stripped.startswith("[") and not _RANGE.match(stripped):
            match = _INI_SECTION.match(stripped)
            if not match:
                tree.inv.problems.append(f"{where}: bad section header {stripped[:60]!r}")
                group, kind = "", "skip"
                continue
            group, kind = match.group(1), match.group(2) or "hosts"
            tree.hosts.setdefault(group, []) if kind == "hosts" else None
            continue
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError as exc:
            tree.inv.problems.append(f"{where}: {exc}")
            continue
        if kind == "skip" or not words:
            continue
        if kind == "children":
            tree.children.setdefault(group, []).append((words[0], where))
        elif kind == "vars":
            key, eq, value = stripped.partition("=")
            if not eq:
                tree.inv.problems.append(f"{where}: expected key=value in [{group}:vars]")
                continue
            tree.vars.setdefault(group, ({}, where))[0][key.strip()] = value.strip().strip("'\"")
        else:
            variables = {}
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if not eq:
                    tree.inv.problems.append(f"{where}: expected key=value after the host, got {word!r}")
                    break
                variables[key] = value
            tree.host(group, words[0], variables, where)


def _ansible_yaml(path: Path, text: str, tree: _AnsibleTree) -> None:
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        tree.inv.problems.append(f"{path}{line}: YAML: {getattr(exc, 'problem', None) or exc}")
        return
    if root is None:
        return
    for group, body in _mapping(root, path, tree.inv, "the inventory"):
        _yaml_group(path, group, body, tree)


def _where(path: Path, node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _mapping(node, path: Path, inv: Inventory, what: str):
    """(key string, value node) pairs of a YAML mapping; a problem for anything else."""
    import yaml

    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return []
    if not isinstance(node, yaml.MappingNode):
        inv.problems.append(f"{_where(path, node)}: {what} should be a mapping")
        return []
    pairs = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            inv.problems.append(f"{_where(path, key)}: a key in {what} is not a plain name")
            continue
        pairs.append((key.value, value))
    return pairs


def _scalars(node, path: Path, inv: Inventory, what: str) -> dict:
    import yaml

    out = {}
    for key, value in _mapping(node, path, inv, what):
        if isinstance(value, yaml.ScalarNode):
            out[key] = value.value
        elif key in _ANSIBLE_VARS:
            inv.problems.append(f"{_where(path, value)}: {key} should be a single value")
    return out


def _yaml_group(path: Path, group: str, body, tree: _AnsibleTree) -> None:
    tree.hosts.setdefault(group, [])
    for key, value in _mapping(body, path, tree.inv, f"group {group!r}"):
        if key == "hosts":
            for host, hvars in _mapping(value, path, tree.inv, f"hosts of {group!r}"):
                tree.host(group, host, _scalars(hvars, path, tree.inv, f"host {host!r}"), _where(path, hvars))
        elif key == "children":
            for child, cbody in _mapping(value, path, tree.inv, f"children of {group!r}"):
                tree.children.setdefault(group, []).append((child, _where(path, cbody)))
                _yaml_group(path, child, cbody, tree)
        elif key == "vars":
            tree.vars[group] = (_scalars(value, path, tree.inv, f"vars of {group!r}"), _where(path, value))
        else:
            tree.inv.problems.append(f"{_where(path, value)}: unknown key {key!r} in group {group!r} "
                                     "(expected hosts, children, vars)")


# --------------------------------------------------------------------------------------------
# Plain host lists


def read_host_list(path: str | os.PathLike, inv: Inventory) -> None:
    """One node-set expression per line (`web[1-3].x`, `db1,db2`); '#' starts a comment;
    an optional `user@` prefix and `:port` suffix become overrides."""
    from pltui.nodesets import NodeSetError, expand

    path = Path(os.path.expanduser(str(path)))
    inv.sources.append(f"host list {path}")
    text = _read_text(path, inv.problems)
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        where = f"{path}:{number}"
        for word in entry.split():
            user, _, rest = word.rpartition("@")
            port = None
            match = re.match(r"^([^:]+):([0-9]{1,5})$", rest)  # one ':' only: IPv6 has several
            if match:
                rest, port = match.group(1), int(match.group(2))
                if not 1 <= port <= 65535:
                    inv.problems.append(f"{where}: port {port} out of range")
                    continue
            try:
                names = expand(rest)
            except NodeSetError as exc:
                inv.problems.append(f"{where}: {exc}")
                continue
            for name in names:
                inv.add_node(name, where, user=user or None, port=port)
