"""Checking a fleet file's values: every problem is collected with its file, line and key.

`Checker` holds the typed getters (strings, integers, durations, lists, values that reach ssh,
paths) that the section loaders (`pltui.fleetload`) and `pltui.alerts` use; `Locator` finds the
line of a key, since tomllib reports none for a valid document.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from pltui.durations import parse_duration
from pltui.jumps import check_jump


class Locator:
    """Best-effort line numbers for keys, since tomllib reports none for valid documents.

    A key is looked for under its table's header (the `index`-th one for arrays of tables
    such as [[rollout.stage]]), then as a dotted key (`ssh.port = 0`) or inline table under a
    parent table, then as a header of its own (`[sweeep]`, `[ssh.extra]`)."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((number, match.group(1).replace('"', "").replace("'", "").replace(" ", "")))

    def _region(self, header_line: int) -> tuple[int, int]:
        """Lines of a table's body: after its header up to the next header."""
        later = [n for n, _ in self.headers if n > header_line]
        return header_line + 1, later[0] if later else len(self.lines) + 1

    def _top_region(self) -> tuple[int, int]:
        return 1, self.headers[0][0] if self.headers else len(self.lines) + 1

    @staticmethod
    def _segment(name: str) -> str:
        quoted = re.escape(name)
        return f"(?:\"{quoted}\"|'{quoted}'|{quoted})"

    def _find(self, region: tuple[int, int], path: list[str], *, prefix_only: bool = False) -> int | None:
        dotted = r"\s*\.\s*".join(self._segment(p) for p in path)
        pattern = re.compile(r"^\s*" + dotted + (r"\s*[=.]" if prefix_only else r"\s*="))
        for number in range(*region):
            if pattern.match(self.lines[number - 1]):
                return number
        return None

    def _headers_named(self, name: str) -> list[int]:
        return [n for n, header in self.headers if header == name]

    def line_of(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        found = self._headers_named(table) if table else []
        header_line = found[min(index, len(found) - 1)] if found else None
        if key is None and header_line is not None:
            return header_line
        if key is not None:
            region = self._region(header_line) if header_line is not None else (self._top_region() if not table else None)
            if region is not None:
                line = self._find(region, [key])
                if line:
                    return line
        # dotted keys or inline tables under a parent table (or at the top level)
        parts = table.split(".") if table else []
        path = parts + ([key] if key is not None else [])
        for cut in range(len(parts) - (1 if found else 0), -1, -1):
            if cut and not self._headers_named(".".join(parts[:cut])):
                continue
            region = self._region(self._headers_named(".".join(parts[:cut]))[0]) if cut else self._top_region()
            rest = path[cut:]
            if not rest:
                continue
            line = self._find(region, rest) or self._find(region, rest[:1], prefix_only=True)
            if line:
                return line
        # a table of its own: [sweeep] for an unknown top-level key, [ssh.extra] for one in [ssh]
        full = ".".join(path)
        for number, header in self.headers:
            if header == full or header.startswith(full + "."):
                return number
        return header_line


def ssh_word_problem(value: str) -> str | None:
    """Why `value` must not stand as one word on an ssh command line (None when it may): a host
    or user starting with `-` is read as an option (`-oProxyCommand=...` runs a command here),
    whitespace or control characters split or forge arguments and lines."""
    bad_char = next((c for c in value if c.isspace() or ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f), None)
    if bad_char is not None:
        return f"holds whitespace or control characters (found {bad_char!r}): not one ssh word"
    if value.startswith("-"):
        return f"starts with '-': ssh would read {value[:40]!r} as an option"
    return None


def root_relative_problem(path: str) -> str | None:
    """Why `path` is not a path inside the service root (None when it is): state paths and
    `capture --paths` are documented as relative to the root, so an absolute path, a `~` (home)
    or a `..` that climbs out would capture something else than the service's state."""
    if path.startswith("/"):
        why = "is absolute"
    elif path.startswith("~"):
        why = "starts with ~"
    elif ".." in path.split("/"):
        why = "climbs out with .."
    else:
        return None
    return f"{path!r} {why}: state paths are relative to the service root"


class Checker:
    """Typed getters over one fleet file's TOML document; problems pile up in `problems`."""

    def __init__(self, text: str, source: str, base_dir: Path | None):
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.locator = Locator(text)
        # which entry of an array of tables ([[rollout.stage]]) problems are about, by table
        self.occurrence: dict[str, int] = {}
        self.defined_groups: set[str] = set()  # names in [groups], even ones with problems

    # -- problem reporting --------------------------------------------------------------

    def problem(self, table: str, key: str | None, message: str) -> None:
        line = self.locator.line_of(table, key, self.occurrence.get(table, 0)) if (table or key) else None
        where = self.source + (f":{line}" if line else "")
        label = ".".join(p for p in (table, key) if p)
        self.problems.append(f"{where}: {'[' + label + '] ' if label else ''}{message}")

    def check_keys(self, table: str, data: dict, allowed: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(allowed)})"
                self.problem(table, key, f"unknown key {key!r}{suffix}")

    # -- typed getters --------------------------------------------------------------------

    def get(self, table: str, data: dict, key: str, kind: type | tuple, default: Any, what: str) -> Any:
        if key not in data:
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(table, key, f"expected {what}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(table, key, f"expected {what}, got {type(value).__name__} {value!r}")
            return default
        return value

    def text_value(self, table: str, data: dict, key: str, default: str | None, *, empty_ok=False) -> str | None:
        value = self.get(table, data, key, str, default, "a string")
        if value is not None and not empty_ok and key in data and not value.strip():
            self.problem(table, key, "must not be empty")
            return default
        return value

    def ssh_value(self, table: str, data: dict, key: str, default: str | None) -> str | None:
        """A value that reaches an ssh command line (host, user, proxy_jump): never an option.

        ssh reads a destination or `-J` hop starting with `-` as an option (`-oProxyCommand=...`
        runs a command); whitespace or control characters split or forge arguments and lines."""
        value = self.text_value(table, data, key, default)
        if value is None or key not in data or value == default:
            return value
        why = ssh_word_problem(value)
        if why:
            self.problem(table, key, why)
            return default
        return value

    def int_value(self, table: str, data: dict, key: str, default: int, low: int, high: int) -> int:
        value = self.get(table, data, key, int, default, "an integer")
        if not low <= value <= high:
            self.problem(table, key, f"must be between {low} and {high}, got {value}")
            return default
        return value

    def duration(self, table: str, data: dict, key: str, default: Any, *, minimum: float = 0.0) -> Any:
        if key not in data:
            return default
        try:
            seconds = parse_duration(data[key])
        except ValueError as exc:
            self.problem(table, key, str(exc))
            return default
        if seconds < minimum:
            self.problem(table, key, f"must be at least {minimum:g}s, got {data[key]!r}")
            return default
        return seconds

    def str_list(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        if key not in data:
            return ()
        value = data[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.problem(table, key, "expected a list of non-empty strings")
            return ()
        return tuple(value)

    def root_relative(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        """A list of paths inside the service root (see `root_relative_problem`)."""
        paths = self.str_list(table, data, key)
        problems = [p for p in map(root_relative_problem, paths) if p]
        for problem in problems:
            self.problem(table, key, problem)
        return () if problems else paths

    def table(self, data: dict, key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem("", key, f"expected a table [{key}], got {type(value).__name__}")
            return {}
        return value


    def jump_value(self, table: str, t: dict, default: str | None) -> str | None:
        """proxy_jump, checked as OpenSSH's ProxyJump (a hop starting with '-' would become an
        ssh option on the console's `ssh -J` command line)."""
        value = self.text_value(table, t, "proxy_jump", default)
        if value is not None and "proxy_jump" in t:
            why = check_jump(value)
            if why:
                self.problem(table, "proxy_jump", why)
                return default
        return value

    def path_value(self, table: str, t: dict, key: str, default: str | None) -> str | None:
        value = self.text_value(table, t, key, default)
        if value is None or key not in t:
            return value
        expanded = os.path.expanduser(value)
        if not os.path.isabs(expanded) and self.base_dir is not None:
            expanded = str(self.base_dir / expanded)
        return expanded

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$", re.ASCII)


def parse_batches(value: object) -> tuple[int | str, ...]:
    """Ansible `serial` style: a count, a percentage, or a list of them ("1, 5%, 25%, 100%")."""
    if isinstance(value, str) and "," in value:
        value = [v.strip() for v in value.split(",")]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("batch list is empty")
    out: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"bad batch size {item!r}")
        if isinstance(item, int):
            if item < 1:
                raise ValueError(f"batch size must be at least 1, got {item}")
            out.append(item)
        elif isinstance(item, str) and item.strip().isascii() and item.strip().isdigit():
            if int(item) < 1:
                raise ValueError(f"batch size must be at least 1, got {item!r}")
            out.append(int(item))
        elif isinstance(item, str) and (percent := _PERCENT.match(item)):
            pct = float(percent.group(1))
            if not 0 < pct <= 100:
                raise ValueError(f"batch percentage must be in (0, 100], got {item!r}")
            out.append(f"{pct:g}%")
        else:
            raise ValueError(f"bad batch size {item!r} (use a count like 5, a percentage like \"25%\", or a list)")
    return tuple(out)


def parse_budget(value: object) -> tuple[str, float]:
    """A failure budget: ("count", n) or ("percent", p)."""
    if isinstance(value, bool):
        raise ValueError(f"bad failure budget {value!r}")
    if isinstance(value, int) and value >= 0:
        return ("count", float(value))
    if isinstance(value, str):
        if value.strip().isascii() and value.strip().isdigit():
            return ("count", float(value))
        match = _PERCENT.match(value)
        if match and 0 <= float(match.group(1)) <= 100:
            return ("percent", float(match.group(1)))
    raise ValueError(f"bad failure budget {value!r} (use a count like 2 or a percentage like \"10%\")")
