"""Planning a rollout: stages from the fleet file or the command line, split into batches
(Ansible `serial` style) and failure budgets. Computed once and saved with the rollout, so a
resumed rollout runs exactly the same batches (see pltui.actions.rollout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pltui.actions.base import ActionError
from pltui.fleet import Fleet, Stage, parse_batches, parse_budget


@dataclass
class StagePlan:
    name: str
    batches: list[list[str]]
    parallel: int
    max_fail: int | str
    pause: bool

    @property
    def nodes(self) -> list[str]:
        return [n for b in self.batches for n in b]

    def to_json(self) -> dict:
        return {"name": self.name, "batches": self.batches, "parallel": self.parallel, "max_fail": self.max_fail,
                "pause": self.pause}

    @classmethod
    def from_json(cls, d: dict) -> "StagePlan":
        return cls(d["name"], [list(b) for b in d["batches"]], int(d["parallel"]), d["max_fail"], bool(d["pause"]))


def batch_sizes(spec: Iterable[int | str], total: int) -> list[int]:
    """Batch sizes for `total` nodes: counts, percentages (floor, at least 1); the last entry repeats."""
    spec = list(spec) or ["100%"]
    sizes: list[int] = []
    left = total
    i = 0
    while left > 0:
        item = spec[min(i, len(spec) - 1)]
        if isinstance(item, str) and item.endswith("%"):
            size = max(1, int(float(item[:-1]) * total / 100.0 + 1e-9))
        else:
            size = max(1, int(item))
        size = min(size, left)
        sizes.append(size)
        left -= size
        i += 1
    return sizes


def split_batches(nodes: list[str], spec: Iterable[int | str]) -> list[list[str]]:
    out, pos = [], 0
    for size in batch_sizes(spec, len(nodes)):
        out.append(nodes[pos:pos + size])
        pos += size
    return out


def budget_allows(count: int, size: int, max_fail: int | str) -> bool:
    """True unless `count` failures of `size` are strictly more than the budget."""
    kind, value = parse_budget(max_fail)
    if kind == "count":
        return count <= value
    return count * 100.0 <= value * size + 1e-9


def parse_stage_arg(text: str, fleet: Fleet) -> tuple[str, tuple | None, int | str | None]:
    """`GROUP[:batch[:max_fail]]` from the command line."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ActionError(f"bad --stage {text!r}: use GROUP[:BATCH[:MAX_FAIL]], e.g. alpha:1 or prod:1,25%,100%:10%")
    group = parts[0].lstrip("@")
    if group not in fleet.group_members:
        raise ActionError(f"--stage {text!r}: unknown group {group!r} (groups: {', '.join(sorted(fleet.group_members))})")
    batch = None
    max_fail: int | str | None = None
    try:
        if len(parts) > 1 and parts[1].strip():
            batch = parse_batches(parts[1])
        if len(parts) > 2 and parts[2].strip():
            parse_budget(parts[2].strip())
            max_fail = parts[2].strip()
            if max_fail.isdigit():
                max_fail = int(max_fail)
    except ValueError as exc:
        raise ActionError(f"--stage {text!r}: {exc}") from None
    return group, batch, max_fail


def build_stages(fleet: Fleet, selected: list[str] | None, *, stage_args: Iterable[str] = (),
                 batch: str | None = None, max_fail: str | None = None, parallel: int | None = None) -> list[StagePlan]:
    """The rollout's stages and batches. `selected`: the -w/-g/-x/-X selection (None: no selection)."""
    try:
        batch_override = parse_batches(batch) if batch else None
        if max_fail is not None:
            parse_budget(max_fail)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    fail_override: int | str | None = int(max_fail) if max_fail is not None and max_fail.isdigit() else max_fail
    if parallel is not None and parallel < 1:
        raise ActionError("--parallel must be at least 1")
    stages: list[Stage] = []
    stage_args = list(stage_args)
    if stage_args:
        for i, text in enumerate(stage_args):
            group, b, f = parse_stage_arg(text, fleet)
            stages.append(Stage(name=group, group=group, batch=b or ("100%",), max_fail=0 if f is None else f,
                                pause=i > 0))
    elif fleet.rollout.stages:
        stages = list(fleet.rollout.stages)
    else:
        stages = [Stage(name="all" if selected is None else "selection", group="all")]
    chosen = set(fleet.node_names if selected is None else selected)
    taken: set[str] = set()
    plans: list[StagePlan] = []
    for stage in stages:
        members = [n for n in fleet.members(stage.group) if n in chosen and n not in taken]
        taken.update(members)
        if not members:
            continue
        plans.append(StagePlan(
            name=stage.name,
            batches=split_batches(members, batch_override or stage.batch),
            parallel=parallel or stage.parallel,
            max_fail=fail_override if fail_override is not None else stage.max_fail,
            pause=stage.pause,
        ))
    rest = [n for n in fleet.node_names if n in chosen and n not in taken]
    if rest and fleet.rollout.stages and not stage_args:
        plans.append(StagePlan(name="rest", batches=split_batches(rest, batch_override or ("100%",)),
                               parallel=parallel or 16, max_fail=fail_override if fail_override is not None else 0,
                               pause=False))
    if not plans:
        raise ActionError("the rollout selects no nodes")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ActionError(f"two stages share a name: {', '.join(names)}")
    return plans
