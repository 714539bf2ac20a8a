"""What the console does to the fleet: sweeps, heal, actions, saved groups, shells.

A mixin of the app, shared by key bindings, the `:` command line and the command palette.
Everything mutating asks first (ConfirmScreen, default No) and is refused on a read-only console.
"""

from __future__ import annotations

import subprocess

from rich.text import Text
from textual import work
from textual.app import SuspendNotSupported

from pltui.actions.base import ActionError, Control
from pltui.fleet import FleetError, save_group
from pltui.nodesets import fold
from pltui.sanitize import clean_line
from pltui.store import StoreError
from pltui.tui.dispatch import (SPECS, ActionRun, BuildContext, NotAvailable, build, logs_options, rebuild_rollout,
                                resolve, rollout_options)
from pltui.tui.screens.confirm import ConfirmScreen
from pltui.tui.shell import SSH_FAILED, ShellRefused, run_shell, shell_argv
from pltui.tui.screens.progress import ProgressScreen
from pltui.tui.screens.prompt import PromptScreen


def _short(value: object, limit: int = 100) -> str:
    text = str(value)
    if len(text) > 24 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"      # digests: the start is enough to recognise them
    return clean_line(text, limit)


def _nodes(value: object, count: object = None) -> str:
    if isinstance(value, list):
        return f"{len(value)} node{'s' if len(value) != 1 else ''} {clean_line(fold(value), 200)}"
    return (f"{count} nodes " if count is not None else "") + clean_line(str(value), 200)


def node_plans_text(plans: dict) -> Text:
    """Per-node plans (repair's `plan`: node -> state, files to repair, rejections), nodes with
    the same plan folded into one node set, as `pltui repair --dry-run` lists them."""
    groups: dict[tuple, list[str]] = {}
    for node, p in plans.items():
        fixes = tuple((str(f.get("path")), str(f.get("majority", ""))[:12], f.get("holders"), f.get("answering"),
                       str(f.get("sources", ""))) for f in p.get("repair") or [] if isinstance(f, dict))
        rejected = tuple(sorted((str(k), str(v)) for k, v in (p.get("rejected") or {}).items()))
        key = (str(p.get("state", "?")), str(p.get("error") or ""), fixes, rejected, tuple(p.get("extra") or ()))
        groups.setdefault(key, []).append(node)
    out = Text(end="")
    out.append("plan:", "bold")
    if not groups:
        out.append(" nothing to repair\n")
        return out
    out.append("\n")
    for (state, error, fixes, rejected, extra), nodes in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0][0])):
        out.append(f"  {_nodes(nodes)}: ", "bold")
        out.append(clean_line(state, 20) + (f" ({clean_line(error, 120)})" if error else "") + "\n")
        for path, digest, holders, answering, sources in fixes[:20]:
            out.append(f"    repair {clean_line(path, 80)} <- majority {clean_line(digest, 12)}…"
                       f" ({clean_line(str(holders), 6)}/{clean_line(str(answering), 6)}) from {clean_line(sources, 60)}\n")
        if len(fixes) > 20:
            out.append(f"    ... and {len(fixes) - 20} more files\n")
        for path, why in rejected[:10]:
            out.append(f"    not repaired {clean_line(path, 80)}: {clean_line(why, 120)}\n")
        if extra:
            out.append(f"    {len(extra)} extra file(s) not in the majority (left alone)\n")
    return out


def plan_text(plan: dict) -> Text:
    """An action's plan (JSON-ready) for review: stages with their batches and node sets, the
    bundle in one line, node lists folded, digests shortened."""
    out = Text(end="")
    for key, value in plan.items():
        if key == "stages" and isinstance(value, list):
            for i, stage in enumerate(value, 1):
                if not isinstance(stage, dict):
                    continue
                out.append(f"stage {i} {clean_line(str(stage.get('name', '?')), 40)}", "bold")
                out.append(f": {_nodes(stage.get('nodes', []), stage.get('count'))}")
                if stage.get("pause"):
                    out.append("  (stage gate: asks before it starts)", "bold")
                details = []
                if "batches" in stage:
                    batches = stage["batches"]
                    sizes = [len(b) if isinstance(b, list) else b for b in batches] if isinstance(batches, list) else [batches]
                    details.append("batches " + ", ".join(clean_line(str(b), 12) for b in sizes))
                for name in ("parallel", "max_fail"):
                    if name in stage:
                        details.append(f"{name} {clean_line(str(stage[name]), 12)}")
                if details:
                    out.append("\n    " + " · ".join(details))
                out.append("\n")
        elif key == "plan" and isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            out.append_text(node_plans_text(value))
        elif isinstance(value, dict):
            out.append(f"{clean_line(key, 40)}: ", "bold")
            out.append((", ".join(f"{clean_line(str(k), 40)} {_short(v, 60)}" for k, v in value.items()
                                  if not isinstance(v, (dict, list))) or "none") + "\n")
        elif isinstance(value, list):
            out.append(f"{clean_line(key, 40)}: ", "bold")
            if all(isinstance(v, str) for v in value):
                out.append(_nodes(value) + "\n")
            else:
                out.append(f"{len(value)} item{'s' if len(value) != 1 else ''}\n")
        elif value is not None:
            out.append(f"{clean_line(key, 40)}: ", "bold")
            out.append(_short(value) + "\n")
    return out


def rollout_plan_text(plan: dict) -> Text:
    """A rollout's plan for its review: the stages and batches first (what the options change),
    without what the review's own lines already say (kind, mode, reload, failhard, the bundle as
    typed) and without the id a re-build changes (the progress screen and report name it)."""
    rest = {k: v for k, v in plan.items() if k not in ("stages", "kind", "mode", "reload", "failhard", "action_id")}
    if isinstance(rest.get("bundle"), dict):
        rest["bundle"] = {k: v for k, v in rest["bundle"].items() if k not in ("source", "tarball")}
    return plan_text({"stages": plan.get("stages", []), **rest})


class Operations:
    """Mixin for ConsoleApp: needs self.view, self.runs, self.main, notify, push_screen..."""

    # -- targets ----------------------------------------------------------------------------

    def targets(self) -> list[str]:
        cursor = self.main.table.cursor_node if self.main is not None else None
        return self.view.targets(cursor)

    def action_is_mutating(self, name: str) -> bool:
        spec = SPECS.get(name)
        return spec.mutating if spec is not None else name == "heal"

    def _refuse_readonly(self, what: str) -> bool:
        if self.view.readonly:
            self.notify(f"{what} is disabled: this console is read-only (--readonly)", severity="warning")
            return True
        return False

    # -- sweeps -----------------------------------------------------------------------------

    def sweep_now(self, checksums: bool) -> None:
        engine = self.view.engine
        word = "checksum sweep" if checksums else "sweep"
        if self.engine_task is not None and not self.engine_task.done():
            if not engine.lock.owned:  # the sweeping process (pltui serve, a console) is asked
                engine.request_sweep(checksums=checksums)
                self.notify(f"asked {engine.lock.holder()} for a {word}; its results show here", markup=False)
                return
            engine.request_sweep(checksums=checksums)
            self.notify(f"{word} requested" + (" (after the one running)" if engine.sweeping else ""))
        else:
            self._sweep_once(checksums)
            self.notify(f"{word} started")

    @work(group="sweep", exclusive=True)
    async def _sweep_once(self, checksums: bool) -> None:
        await self.view.engine.sweep(checksums=checksums)

    # -- heal -------------------------------------------------------------------------------

    @work(group="ask")
    async def start_heal(self, names: list[str] | None = None) -> None:
        if self._refuse_readonly("heal"):
            return
        names = names or self.targets()
        if not names:
            return
        question = Text(f"Heal {self.view.describe(names)}: restart the node monitor where it is dead?", end="")
        if not await self.push_screen_wait(ConfirmScreen("Heal now", question, yes="heal")):
            self.notify("heal cancelled")
            return
        self.notify(f"healing {len(names)} node{'s' if len(names) != 1 else ''}")
        results = await self.view.engine.heal(names)
        failed = [r.node for r in results if not r.ok]
        self.notify(f"heal: {len(results) - len(failed)}/{len(results)} healed" +
                    (f"; failed: {fold(failed)}" if failed else ""), severity="error" if failed else "information")

    # -- actions ----------------------------------------------------------------------------

    @work(group="ask")
    async def start_action(self, name: str, option: str | None = None) -> None:
        """Check, ask for the option, build, review the plan, confirm (default No), run, show progress."""
        spec = SPECS[name]
        if spec.mutating and self._refuse_readonly(spec.name):
            return
        try:
            resolve(spec)
        except NotAvailable as exc:
            self.notify(str(exc), title=spec.name, severity="warning")
            return
        names = self.targets()
        if not names:
            self.notify("no node to act on", severity="warning")
            return
        control = Control()
        ctx = BuildContext(self.view.fleet, self.view.engine, self.state_dir, self.view.engine.emit, control)
        if spec.ask and option is None:
            default = spec.default(ctx) if spec.default else ""
            option = await self.push_screen_wait(PromptScreen(spec.ask, value=default,
                                                              hint=f"{spec.name} on {self.view.describe(names)}"))
            if not option:
                self.notify(f"{spec.name} cancelled")
                return
        if spec.name == "logs" and option and logs_options(option)[1] and self._refuse_readonly("logs --prune"):
            return
        if spec.name == "repair":
            self.notify("repair: checking which files can be repaired (checksum sweep where needed)")
        try:
            action, plan = await build(spec, ctx, names, option)
        except NotAvailable as exc:
            self.notify(str(exc), title=spec.name, severity="warning")
            return
        except (ActionError, FleetError, ValueError, TypeError, OSError, StoreError) as exc:
            self.notify(clean_line(str(exc), 500), title=f"{spec.name} cannot start", severity="error")
            return
        except Exception as exc:  # a bug in building must not take the console down
            self.notify(clean_line(f"{type(exc).__name__}: {exc}", 500), title=f"{spec.name} cannot start",
                        severity="error")
            return
        reviewed = await self._review(spec, ctx, action, plan, option)
        if reviewed is None:
            return
        action, plan = reviewed
        self._launch(spec, action, control, plan)

    async def _review(self, spec, ctx: BuildContext, action, plan: dict, option: str | None):
        """What will happen, to which nodes, and the plan; the (action, plan) the operator said
        yes to (default No), or None."""
        count = len(action.nodes)
        question = Text(end="")
        question.append(f"{spec.title} {count} node{'s' if count != 1 else ''}?", "bold")
        if spec.name == "rollout" and hasattr(action, "bundle"):
            return await self._review_rollout(ctx, action, plan, option or "", question)
        if option:
            question.append(f"\n{'bundle' if spec.name == 'rollout' else 'command' if spec.name == 'exec' else 'into'}: "
                            f"{clean_line(option, 200)}")
        question.append(f"\nnodes: {clean_line(fold(action.nodes), 300)}")
        if spec.typed_confirm:
            if not await self._typed_confirmation(spec.name, count, question):
                return None
        elif not await self.push_screen_wait(ConfirmScreen(f"{spec.name}: review and confirm", question,
                                                           plan_text(plan), yes=f"{spec.name} {count} nodes")):
            self.notify(f"{spec.name} cancelled")
            return None
        return action, plan

    async def _review_rollout(self, ctx: BuildContext, action, plan: dict, option: str, question: Text):
        """The rollout review where its options can still change (RolloutReviewScreen): the
        (action, plan) the operator said yes to, or None for no. Options typed after the bundle
        in its prompt are where it starts."""
        from pltui.tui.screens.rolloutreview import RolloutReviewScreen

        bundle, opts = rollout_options(option)
        question.append(f"\nbundle: {clean_line(bundle, 200)}")
        question.append(f"\nnodes: {clean_line(fold(action.nodes), 300)}")
        count = len(action.nodes)
        screen = RolloutReviewScreen("rollout: review and confirm", question, opts, action, plan,
                                     rebuild=lambda new: rebuild_rollout(ctx, screen.rollout, new),
                                     render=rollout_plan_text, yes=f"rollout {count} nodes")
        if not await self.push_screen_wait(screen):
            self.notify("rollout cancelled")
            return None
        return screen.rollout, screen.rollout_plan

    def _launch(self, spec, action, control: Control, plan) -> None:
        """Run a reviewed action in the background and show its progress screen."""
        run = ActionRun(spec, action, control, list(action.nodes), plan=plan)
        self.runs.append(run)
        self._run_action(run)
        self.push_screen(ProgressScreen(run))

    @work(group="ask")
    async def start_saved_rollout(self, action_id: str, mode: str) -> None:
        """Resume or roll back a saved rollout: the CLI's --resume/--rollback, reviewed first."""
        if self._refuse_readonly(f"rollout {mode}"):
            return
        from pltui.actions.rollout import Rollout

        spec = SPECS["rollout"]
        engine = self.view.engine
        control = Control()
        try:
            if engine.store is None:
                raise ActionError(f"no state database: {engine.store_error or 'unavailable'}")
            action = Rollout.load(self.view.fleet, engine.transport, engine.store, action_id, mode=mode,
                                  emit=engine.emit, control=control, state_dir=self.state_dir)
            plan = action.plan()
        except Exception as exc:  # ActionError, or a saved state this version cannot read
            self.notify(clean_line(str(exc), 500), title=f"rollout {mode} cannot start", severity="error")
            return
        count = len(action.nodes)
        question = Text(end="")
        question.append(f"{'Resume' if mode == 'resume' else 'Roll back'} rollout {clean_line(action_id, 80)} "
                        f"on {count} node{'s' if count != 1 else ''}?", "bold")
        question.append(f"\nnodes: {clean_line(fold(action.nodes), 300)}")
        if not await self.push_screen_wait(ConfirmScreen(f"rollout {mode}: review and confirm", question,
                                                         plan_text(plan), yes=f"{mode} {count} nodes")):
            self.notify(f"rollout {mode} cancelled")
            return
        self._launch(spec, action, control, plan)

    def show_rollouts(self) -> None:
        from pltui.tui.screens.rollouts import RolloutsScreen

        self.push_screen(RolloutsScreen())

    async def _typed_confirmation(self, verb: str, count: int, question: Text) -> bool:
        """For what cannot be undone (reboot): the operator types the node count or the verb."""
        hint = question.copy()
        hint.append(f"\nType {count} (the node count) or {verb!r} and enter; anything else cancels.")
        answer = await self.push_screen_wait(PromptScreen(f"{verb}: type to confirm", hint=hint,
                                                          placeholder=f"{count} or {verb}"))
        if (answer or "").strip() not in (str(count), verb):
            self.notify(f"{verb} cancelled" + (f" (typed {answer.strip()!r})" if answer else ""))
            return False
        return True

    @work(group="actions")
    async def _run_action(self, run: ActionRun) -> None:
        try:
            report = await run.action.run()
        except ActionError as exc:
            run.finish(False, None, str(exc))
            self.notify(clean_line(str(exc), 500), title=f"{run.kind} did not start", severity="error")
        except Exception as exc:  # an action's bug must not take the console down
            run.finish(False, None, f"internal error: {type(exc).__name__}: {exc}")
            self.notify(clean_line(f"{type(exc).__name__}: {exc}", 500), title=f"{run.kind} failed", severity="error")
        else:
            if not run.finished:
                run.finish(report.ok, report.to_json())
        finally:
            self.refresh_header()
            self.schedule_flush()

    def show_progress(self) -> None:
        if not self.runs:
            self.notify("no action started from this console yet")
            return
        running = [r for r in self.runs if not r.finished]
        self.push_screen(ProgressScreen(running[-1] if running else self.runs[-1]))

    # -- groups, shells ---------------------------------------------------------------------

    def save_marked_group(self, group: str) -> None:
        if self._refuse_readonly("saving a group"):
            return
        names = self.view.marked()
        fleet = self.view.fleet
        if not names:
            self.notify("mark some nodes first (space, g, m)", severity="warning")
            return
        if fleet.path is None:
            self.notify("this fleet was not loaded from a file", severity="error")
            return
        try:
            save_group(fleet.path, group, fold(names))
        except (FleetError, OSError) as exc:
            self.notify(clean_line(str(exc), 500), title="group not saved", severity="error")
            return
        fleet.group_members[group] = tuple(names)
        fleet.groups[group] = fold(names)
        self.view.refresh_selector()
        self.notify(f"saved @{group} ({len(names)} nodes) to {fleet.path.name}; previous file kept as .bak")

    def shell_argv(self, name: str, log_file: str | None = None) -> list[str]:
        return shell_argv(self.view.fleet, self.view.fleet.nodes[name], log_file)

    def open_shell(self, name: str) -> None:
        try:
            self.shell_argv(name)
        except ShellRefused as exc:
            self.notify(str(exc), title="no shell", severity="error")
            return
        try:
            with self.suspend():
                code, cause = run_shell(lambda log: self.shell_argv(name, log), subprocess.call)
        except SuspendNotSupported:
            self.notify("cannot hand the terminal to ssh here", severity="error")
            return
        except OSError as exc:
            self.notify(f"ssh: {exc}", severity="error")
            return
        if code == SSH_FAILED:
            self.notify(f"ssh to {name} failed: {cause or 'ssh gave no reason (exit 255)'}",
                        title="shell", severity="error", timeout=15)
        elif code:
            self.notify(f"shell on {name} ended with status {code}")
