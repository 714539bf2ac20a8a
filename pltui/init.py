"""`pltui init`: a commented, valid fleet file from what the operator already has.

`pltui.inventories` reads the inputs into one `Inventory`; this module renders it as TOML with
tomlkit (so the file carries comments saying what to edit), checks that the result loads with
`pltui.fleet.loads` before anything is written, and writes it without ever clobbering an edited
file: an existing file is left alone and the new text goes to `FLEET.new`, or, with `merge`,
new nodes, groups and overrides are added into the existing file by tomlkit, which keeps the
operator's comments and formatting (the previous file is kept as `FLEET.bak`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from pltui.fleet import FleetError, loads
from pltui.inventories import Inventory
from pltui.nodesets import fold


@dataclass
class WriteResult:
    path: Path          # the file written (FLEET, FLEET.new), or FLEET when nothing changed
    action: str         # "created", "unchanged", "new-file", "merged"
    added_nodes: int = 0
    added_groups: int = 0


def split_nodeset(expr: str) -> list[str]:
    """`a[1-3],b,c[1,4]` -> ['a[1-3]', 'b', 'c[1,4]']: top-level commas only."""
    parts, depth, current = [], 0, ""
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def _common(inv: Inventory, key: str):
    """A value every node shares (it goes into [ssh] instead of every node), else None."""
    values = Counter(over.get(key) for over in inv.nodes.values())
    if len(values) == 1:
        return next(iter(values))
    return None


def render(inv: Inventory, name: str) -> str:
    """The fleet file's text. Raises FleetError if it would not load (a bug, or odd input)."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("pltui fleet file written by `pltui init` from:"))
    for source in inv.sources:
        doc.add(tomlkit.comment(f"  {source}"))
    doc.add(tomlkit.comment("Check it with `pltui check FILE`; sample_fleet.toml explains every key."))
    doc.add(tomlkit.nl())
    fleet = tomlkit.table()
    fleet.add("name", name)
    nodes = tomlkit.array()
    nodes.multiline(True)
    for expr in split_nodeset(fold(inv.nodes)):
        nodes.append(expr)
    fleet.add("nodes", nodes)
    doc.add("fleet", fleet)

    ssh = tomlkit.table()
    user, port = _common(inv, "user"), _common(inv, "port")
    if user:
        ssh.add("user", user)
    else:
        ssh.add(tomlkit.comment('user = "svc"                 # the account on every node (default: yours)'))
    if port:
        ssh.add("port", port)
    if inv.ssh.get("config"):
        ssh.add("config", str(inv.ssh["config"]))
        ssh["config"].comment("Host blocks here (HostName, Port, User, IdentityFile) apply per node")
    ssh.add(tomlkit.comment('identity_file = "~/.ssh/id_ed25519"'))
    ssh.add("known_hosts", "~/.ssh/known_hosts")
    ssh.add("host_key_policy", "strict")
    ssh["host_key_policy"].comment('or "accept-new": record first-seen keys, refuse changed ones')
    doc.add(tomlkit.nl())
    doc.add("ssh", ssh)

    overrides = {n: {k: v for k, v in o.items() if not (k == "user" and user) and not (k == "port" and port)
                     and not (k == "host" and v == n)}
                 for n, o in inv.nodes.items()}
    overrides = {n: o for n, o in overrides.items() if o}
    if overrides:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("Per-node connection overrides (from the inventory)."))
        node_t = tomlkit.table(is_super_table=True)
        for node, over in overrides.items():
            table = tomlkit.table()
            for key in ("host", "port", "user"):
                if key in over:
                    table.add(key, over[key])
            node_t.add(node, table)
        doc.add("node", node_t)

    if inv.groups:
        groups = tomlkit.table()
        for group, members in inv.groups.items():
            groups.add(group, fold(members))
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("Groups select nodes (-g NAME) and name rollout stages; @all is built in."))
        doc.add("groups", groups)

    service = tomlkit.table()
    service.add("root", "~/service")
    service["root"].comment("EDIT: where the service lives on each node")
    service.add(tomlkit.comment('important = ["bin/*", "etc/"]   # checksummed by `pltui sweep --checksums`'))
    service.add(tomlkit.comment('logs = ["logs/*.log"]            # pulled by `pltui logs`'))
    service.add(tomlkit.comment("[[service.process]] tables name the processes the node monitor keeps up"))
    doc.add(tomlkit.nl())
    doc.add("service", service)

    sweep = tomlkit.table()
    sweep.add("interval", "5m")
    sweep.add("heal", "off")
    sweep["heal"].comment('"monitor": restart a dead node monitor')
    doc.add(tomlkit.nl())
    doc.add("sweep", sweep)
    return tomlkit.dumps(doc)


def _atomic_write(path: Path, text: str, *, like: Path | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, "utf-8")
        if like is not None and like.exists():
            shutil.copymode(like, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def merge(existing: str, inv: Inventory, source: str) -> tuple[str, int, int]:
    """Add the inventory's new nodes (with their overrides) and new groups to an existing fleet
    file's text, keeping everything the operator wrote. Existing groups and overrides win."""
    current = loads(existing, source)  # refuse to merge into a file that does not load
    doc = tomlkit.parse(existing)
    new = [n for n in inv.nodes if n not in current.nodes]
    if new:
        nodes = doc["fleet"].setdefault("nodes", tomlkit.array())
        for expr in split_nodeset(fold(new)):
            nodes.append(expr)
        user, port = current.ssh.user, current.ssh.port
        for node in new:
            over = {k: v for k, v in inv.nodes[node].items() if not (k == "host" and v == node)
                    and not (k == "user" and v == user) and not (k == "port" and v == port)}
            if over:
                node_t = doc.setdefault("node", tomlkit.table(is_super_table=True))
                node_t[node] = over
    added_groups = 0
    for group, members in inv.groups.items():
        if group in current.groups:
            if set(current.members(group)) != set(members):
                inv.notes.append(f"{source}: group {group!r} kept as written there (the inputs say {fold(members)})")
            continue
        doc.setdefault("groups", tomlkit.table())[group] = fold(members)
        added_groups += 1
    text = tomlkit.dumps(doc)
    loads(text, source)
    return text, len(new), added_groups


def write(inv: Inventory, path: str | os.PathLike, name: str | None = None, *, do_merge: bool = False) -> WriteResult:
    """Write the fleet file for `inv` at `path` without clobbering an existing one."""
    path = Path(path)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name.removesuffix(".toml")).lstrip(".-") or "fleet"
    text = render(inv, name)
    loads(text, str(path))  # never write a file that would not load
    try:
        if not path.exists():
            _atomic_write(path, text)
            return WriteResult(path, "created", len(inv.nodes), len(inv.groups))
        existing = path.read_bytes().decode("utf-8", errors="replace")
        if existing == text:
            return WriteResult(path, "unchanged")
        if do_merge:
            real = Path(os.path.realpath(path))
            merged, nodes, groups = merge(existing, inv, str(path))
            if merged == existing:
                return WriteResult(path, "unchanged")
            backup = real.with_name(real.name + ".bak")
            backup.write_text(existing, "utf-8")
            shutil.copymode(real, backup)
            _atomic_write(real, merged, like=real)
            return WriteResult(path, "merged", nodes, groups)
        new_path = path.with_name(path.name + ".new")
        _atomic_write(new_path, text)
        return WriteResult(new_path, "new-file", len(inv.nodes), len(inv.groups))
    except OSError as exc:
        raise FleetError([f"{path}: cannot write: {exc.strerror or exc}"]) from None


async def probe(fleet, state_dir=None) -> list[dict]:
    """Sweep the new fleet once; per node: reachable, service root present, version, error."""
    from pltui.sweep import Engine

    engine = Engine(fleet, state_dir=state_dir)
    try:
        await engine.sweep()
        found = []
        for name in engine.nodes:
            s = engine.statuses[name]
            root_missing = s.reachable and (s.error or "").startswith("service root ")
            found.append({"node": name, "reachable": s.reachable, "ssh": s.ssh.value,
                          "root": None if not s.reachable else not root_missing,
                          "version": s.version, "protocol": s.protocol,
                          "error": None if root_missing else s.error})
        return found
    finally:
        await engine.close()
