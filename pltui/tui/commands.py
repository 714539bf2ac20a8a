"""The `:` command line: parsing only (the app carries the commands out).

`:rollout [BUNDLE]`, `:restart`, `:logs`, `:capture`, `:exec COMMAND...`, `:repair`, `:heal`,
`:sweep`, `:checksums`, `:mark NODESET`, `:unmark NODESET`, `:group save NAME`, `:filter EXPR`,
`:sort COLUMN [desc]`, `:theme NAME`, `:events`, `:pause`, `:help`, `:q`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

ALIASES = {"q": "quit", "quit": "quit", "exit": "quit", "checksum": "checksums", "x": "exec",
           "fix": "repair", "log": "logs", "h": "help", "?": "help"}
NAMES = ("rollout", "restart", "logs", "capture", "exec", "repair", "heal", "sweep", "checksums", "mark",
         "unmark", "group", "filter", "sort", "theme", "events", "pause", "help", "quit", "progress")


class CommandError(ValueError):
    """A command line that cannot be run; the message says how to write it."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    rest: str        # everything after the command word, as typed (for exec and filter)


def parse(line: str) -> Command | None:
    line = line.strip().lstrip(":").strip()
    if not line:
        return None
    word, _, rest = line.partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name not in NAMES:
        import difflib

        hint = difflib.get_close_matches(name, NAMES, n=1)
        raise CommandError(f"unknown command :{word}" + (f" (did you mean :{hint[0]}?)" if hint else "") +
                           "; ? lists them")
    try:
        args = tuple(shlex.split(rest))
    except ValueError as exc:
        raise CommandError(f":{name}: {exc}") from None
    if name == "group" and (len(args) != 2 or args[0] != "save"):
        raise CommandError("usage: :group save NAME  (saves the marked nodes as a group)")
    if name in ("mark", "unmark") and not rest.strip():
        raise CommandError(f"usage: :{name} NODESET  (e.g. @alpha or pl[1-4])")
    if name == "exec" and not rest.strip():
        raise CommandError("usage: :exec COMMAND")
    if name == "theme" and len(args) > 1:
        raise CommandError("usage: :theme [NAME]")
    if name == "sort" and (not args or len(args) > 2 or (len(args) == 2 and args[1] not in ("asc", "desc"))):
        raise CommandError("usage: :sort COLUMN [asc|desc]")
    return Command(name, args, rest.strip())
