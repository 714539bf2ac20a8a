"""The fleet file: one TOML file describing a fleet, loaded into plain dataclasses.

Loading validates everything and collects *every* problem (with file, line and key) before
raising one `FleetError`, so an operator fixes a broken file in one pass. Fleets pltui generates
go through `tomli_w`; saved groups edit the operator's file in place with `tomlkit`, keeping its
comments and layout.

Schema (see sample_fleet.toml for a commented example)::

    [fleet]     name, nodes = [node-set expressions]
    [ssh]       user, port, identity_file, known_hosts, host_key_policy, connect_timeout,
                command_timeout, fanout, handshakes, proxy_jump, config, keepalive
    [node."n"]  per-node overrides: host, port, user, root, identity_file, proxy_jump
    [groups]    name = "node-set expression" (may use @other and @all)
    [tracks]    name = ["group", ...]  (nodes in no track form the "default" track)
    [service]   root, version_file, protocol_file | protocol_command, important, logs, state,
                reboot_command, monitor_interval, backoff_cap; [[service.process]] name, start, pidfile,
                stop, reload, stop_timeout
    [sweep]     interval, checksum_interval, full_checksum_interval (0: always full), quorum, heal ("off" | "monitor")
    [rollout]   health_timeout, keep_releases; [[rollout.stage]] name, group, batch,
                parallel, max_fail, pause
    [store]     history (how long the state database keeps history, events and finished
                actions; "90d" by default, 0 keeps everything)

Values that reach ssh (host, user, and each hop of proxy_jump, an OpenSSH ProxyJump chain
"[user@]host[:port],...", see pltui/jumps.py) never start with `-` nor hold whitespace or
control characters; state paths stay inside the service root.

The code: `pltui.fleetmodel` (the dataclasses), `pltui.fleetcheck` (typed getters, line
numbers), `pltui.fleetload` (the section loaders, `load`/`loads`); this module is where all of
it is imported from, and holds the writing side (`dumps`, `save_group`).
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path
from typing import Any, Callable

from pltui.fleetcheck import Checker, Locator, parse_batches, parse_budget, root_relative_problem, ssh_word_problem
from pltui.fleetload import _syntax_error, load, loads
from pltui.fleetmodel import (
    DEFAULT_TRACK, HEAL_POLICIES, HOST_KEY_POLICIES, NAME_RE, NODE_NAME_RE, Fleet, FleetError, Node, ProcessSpec,
    RolloutSettings, ServiceSpec, SSHSettings, Stage, StoreSettings, SweepSettings,
)

__all__ = [
    "DEFAULT_TRACK", "HEAL_POLICIES", "HOST_KEY_POLICIES", "NAME_RE", "NODE_NAME_RE", "Checker", "Fleet", "FleetError",
    "Locator", "Node", "ProcessSpec", "RolloutSettings", "SSHSettings", "ServiceSpec", "Stage", "StoreSettings",
    "SweepSettings", "dumps", "load", "loads", "parse_batches", "parse_budget", "root_relative_problem", "save_group", "ssh_word_problem",
]


def dumps(doc: dict) -> str:
    """TOML text for a document pltui writes (via tomli-w)."""
    import tomli_w

    return tomli_w.dumps(doc)


def _add_after_last_key(table, key: str, value: str) -> None:
    """tomlkit appends after a table's trailing blank lines and comments, which in a hand-written
    file introduce the *next* table: put the new key right after the last key instead."""
    body = table.value.body
    trailing = []
    while body and body[-1][0] is None:
        trailing.append(body.pop()[1])
    table.add(key, value)
    for item in reversed(trailing):
        table.add(item)


def save_group(path: str | os.PathLike, group: str, nodes_expr: str, *,
               check: Callable[[str], Any] | None = None) -> None:
    """Add or replace `[groups].group` in a fleet file, edited in place (tomlkit), atomically.

    The operator's comments, key order and layout survive: only the group's line changes (a
    replaced group keeps its trailing comment). The previous file is also kept as `<file>.bak`.
    The new text must load (`check`, by default `loads` with the file's name and directory)
    before anything is written; every failure is a FleetError. A symlinked fleet file is updated
    where it really lives, and the file keeps its permission bits.
    """
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    if not NAME_RE.match(group) or group == "all":
        raise FleetError([f"bad group name {group!r}: letters, digits, '_', '.', '-' only, and not 'all'"])
    path = Path(os.path.realpath(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise FleetError([f"{path}: cannot read fleet file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise FleetError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        tomllib.loads(text)  # the reference parser judges the syntax (and gives line:column)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError([_syntax_error(exc, str(path))]) from None
    try:
        doc = tomlkit.parse(text)
        groups = doc.get("groups")
        if groups is None:
            groups = tomlkit.table()
            doc["groups"] = groups
        if not isinstance(groups, dict):
            raise FleetError([f"{path}: [groups] is not a table"])
        if group in groups:
            groups[group] = nodes_expr  # tomlkit keeps the item's trailing comment
        else:
            _add_after_last_key(groups, group, nodes_expr)
        new_text = tomlkit.dumps(doc)
    except TOMLKitError as exc:
        raise FleetError([f"{path}: cannot edit the fleet file: {exc}"]) from None
    if check is None:
        loads(new_text, str(path), path.parent)  # never write a file that would not load
    else:
        check(new_text)
    backup = path.with_name(path.name + ".bak")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        backup.write_text(text, "utf-8")
        shutil.copymode(path, backup)
        tmp.write_text(new_text, "utf-8")
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise FleetError([f"{path}: cannot save group {group!r}: {exc.strerror or exc}"]) from None
    finally:
        tmp.unlink(missing_ok=True)
