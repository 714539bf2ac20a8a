"""`pltui rollout`: a bundle onto the fleet in stages and batches; --status, --resume, --rollback.

    pltui rollout FLEET BUNDLE [-w/-g/-x/-X] [--stage GROUP[:BATCH[:MAX_FAIL]]]... [--batch B]
                  [--max-fail F] [--parallel N] [--failhard] [--reload] [--yes] [--health-timeout D]
                  [--dry-run] [--json]
    pltui rollout FLEET --status [ACTION_ID] [--json]
    pltui rollout FLEET --resume ACTION_ID [-w/-g/-x/-X] [--yes] [--health-timeout D] [--json]
    pltui rollout FLEET --rollback ACTION_ID [-w/-g/-x/-X] [--json]

With a selection, --resume and --rollback act on the selected nodes of the rollout only (a
partial resume or rollback); a selection naming none of its nodes is refused (exit 2).

The plan is printed first. A pause between stages asks on the terminal ("continue? [y/N]");
without a terminal the rollout stops there, resumable (``--yes`` continues automatically).
The first Ctrl-C (or SIGTERM/SIGHUP) starts no new node and lets the nodes in flight finish;
a second one stops at once. Either way the state is saved and ``--resume`` goes on.
Exit status: 0 every node done; 1 some node failed/unreachable or the rollout halted;
2 usage, fleet file, bundle or locking errors; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time

from pltui.actions.base import ActionError, Control
from pltui.actions.bundle import Bundle, BundleError
from pltui.cli import (EXIT_OK, EXIT_UNHEALTHY, UsageError, add_fleet_arg, add_json_arg, add_selection_args, err,
                       load_fleet, out, print_json, select)
from pltui.durations import format_duration, parse_duration
from pltui.format import human_bytes
from pltui.model import ActionProgress, Event
from pltui.nodesets import fold
from pltui.sanitize import clean_line

EXIT_INTERRUPTED = 130
FINAL = ("done", "failed", "rolled-back", "unreachable")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rollout", help="roll a bundle out in stages and batches (crash-safe; --status/--resume/--rollback)",
        description="Upload a bundle (directory or .tar.gz with a VERSION file) to every selected node, "
                    "then per node: stop, swap the files in (previous release kept), start, verify; "
                    "a node failing verification is rolled back.")
    add_fleet_arg(parser)
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="directory or .tar.gz holding VERSION")
    add_selection_args(parser)
    add_json_arg(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--status", nargs="?", const="", metavar="ACTION_ID",
                      help="where a rollout (default: the latest) and each of its nodes stand")
    mode.add_argument("--resume", metavar="ACTION_ID",
                      help="continue an interrupted or paused rollout (with -w/-g/-x/-X: only those of its nodes)")
    mode.add_argument("--rollback", metavar="ACTION_ID",
                      help="return the rollout's touched nodes to their previous release (with -w/-g/-x/-X: only "
                           "those)")
    parser.add_argument("--stage", action="append", default=[], metavar="GROUP[:BATCH[:MAX_FAIL]]",
                        help="a stage on a group (repeat; a pause before each after the first); "
                             "default: the fleet's [rollout] stages")
    parser.add_argument("--batch", metavar="SIZES", help='batch sizes for every stage: 5, "25%%" or "1,5%%,25%%,100%%"')
    parser.add_argument("--max-fail", metavar="N|P%", help="failure budget per batch for every stage")
    parser.add_argument("--parallel", type=int, metavar="N", help="nodes at once within a batch")
    parser.add_argument("--failhard", action="store_true", help="halt at the first failed or unreachable node")
    parser.add_argument("--reload", action="store_true", help="no restart: swap, then each process's reload command")
    parser.add_argument("-y", "--yes", action="store_true", help="go on at pauses without asking")
    parser.add_argument("--health-timeout", metavar="DURATION", help="how long a node may take to come up healthy")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.set_defaults(func=run)


def _state_dir(fleet, args):
    from pltui.paths import fleet_dir, state_root

    return fleet_dir(state_root(args.state), fleet.name, fleet.path)


def _open_store(fleet, args):
    from pltui.store import Store, StoreError

    try:
        return Store(_state_dir(fleet, args) / "pltui.db")
    except (StoreError, OSError) as exc:
        raise UsageError(f"cannot open the state database (a rollout records every step there): {exc}") from None


def run(args) -> int:
    fleet = load_fleet(args.fleet)
    selecting = args.include or args.groups or args.exclude or args.exclude_groups
    if args.status is not None:
        if selecting:
            raise UsageError("--status shows the whole rollout: it takes no -w/-g/-x/-X")
        return show_status(fleet, args)
    health = None
    if args.health_timeout:
        try:
            health = parse_duration(args.health_timeout)
        except ValueError as exc:
            raise UsageError(f"--health-timeout: {exc}") from None
        if health <= 0:
            raise UsageError("--health-timeout must be more than 0")
    if args.resume or args.rollback:
        if args.bundle:
            raise UsageError("--resume/--rollback take no BUNDLE (the rollout's own bundle is used)")
        only = select(fleet, args) if selecting else None  # honoured: only these nodes, never ignored
        return asyncio.run(_go(fleet, args, None, None, health, only))
    if not args.bundle:
        raise UsageError("give a BUNDLE (a directory or .tar.gz holding VERSION), or --status, --resume ID, --rollback ID")
    from pltui.actions.rollout import build_stages

    selected = select(fleet, args) if selecting else None
    try:
        stages = build_stages(fleet, selected, stage_args=args.stage, batch=args.batch, max_fail=args.max_fail,
                              parallel=args.parallel)
    except ActionError as exc:
        raise UsageError(str(exc)) from None
    try:
        bundle = Bundle.open(args.bundle, _state_dir(fleet, args) / "bundles", version_file=fleet.service.version_file)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    return asyncio.run(_go(fleet, args, bundle, stages, health))


# --------------------------------------------------------------------------------------------
# Running


def print_plan(plan: dict) -> None:
    b = plan["bundle"]
    verb = {"run": "rollout", "resume": "resuming", "rollback": "rolling back"}[plan["mode"]]
    out(f"{verb} {plan['action_id']}: version {b['version']} ({b['files']} files, {human_bytes(b['size'])}, "
        f"sha256 {b['sha256'][:12]}) from {b['source']}")
    how = "reload (no restart)" if plan["reload"] else "stop, swap, start"
    out(f"  per node: upload, verify sha256, {how}, verify (health timeout {format_duration(plan['health_timeout'])})"
        + ("; --failhard" if plan["failhard"] else ""))
    if plan.get("selection"):
        out(f"  only the selected nodes of the rollout: {plan['selection']['nodes']} ({plan['selection']['count']}); "
            f"the others are left as they are")
    for s in plan["stages"]:
        batches = ", ".join(str(n) for n in s["batches"])
        out(f"  stage {s['name']}: {s['count']} nodes ({s['nodes']}); batches {batches}; parallel {s['parallel']}; "
            f"max_fail {s['max_fail']}" + ("; pause before" if s["pause"] else ""))


def _printer(args, control: Control, loop: asyncio.AbstractEventLoop):
    human = not args.json
    tty = sys.stderr.isatty()

    def ask(stage: str, detail: str) -> None:
        if not sys.stdin.isatty():
            out(f"paused {detail}: no terminal to ask (use --yes, or --resume later)")
            loop.call_soon_threadsafe(control.answer_gate, False)
            return

        def reader() -> None:
            try:
                sys.stdout.write(clean_line(f"continue with stage {stage}? [y/N]", 200) + " ")
                sys.stdout.flush()
                answer = sys.stdin.readline()
            except (OSError, ValueError):
                answer = ""
            loop.call_soon_threadsafe(control.answer_gate, answer.strip().lower() in ("y", "yes"))

        threading.Thread(target=reader, name="pltui-gate", daemon=True).start()

    def emit(event: Event) -> None:
        if not isinstance(event, ActionProgress):
            return
        if event.node is None:
            if event.state == "paused":
                if human:
                    out(f"-- paused {event.detail}")
                if not control.auto_continue:
                    stage = event.detail.split()[2] if event.detail.startswith("before stage ") else "?"
                    loop.call_soon(ask, stage, event.detail)
            elif human:
                out(f"-- {event.state}: {event.detail}")
        elif human and event.state in FINAL:
            out(f"  {event.node}: {event.state}" + (f": {event.detail}" if event.detail else ""))
        elif human and tty and event.bytes_done is None:
            err(f"  {event.node}: {event.state} {event.detail}".rstrip())

    return emit


async def _go(fleet, args, bundle, stages, health, only=None) -> int:
    from pltui.actions.rollout import Rollout
    from pltui.ssh import Transport

    store = _open_store(fleet, args)
    transport = Transport(fleet)
    loop = asyncio.get_running_loop()
    control = Control(auto_continue=args.yes)
    emit = _printer(args, control, loop)
    kwargs = dict(emit=emit, control=control, state_dir=args.state, health_timeout=health)
    try:
        try:
            if bundle is not None:
                action = Rollout.new(fleet, transport, store, bundle, stages, reload=args.reload,
                                     failhard=args.failhard, **kwargs)
            else:
                action = Rollout.load(fleet, transport, store, args.resume or args.rollback,
                                      mode="resume" if args.resume else "rollback", only=only, **kwargs)
        except ActionError as exc:
            raise UsageError(str(exc)) from None
        plan = action.plan()
        if not args.json:
            print_plan(plan)
        if args.dry_run:
            if args.json:
                print_json({"plan": plan})
            return EXIT_OK
        if transport.nofile_warning and not args.json:
            err(f"pltui: warning: {transport.nofile_warning}")
        main = asyncio.current_task()
        hits = 0

        def on_signal(name: str) -> None:
            nonlocal hits
            hits += 1
            if hits == 1:
                action.interrupt(f"interrupted by the operator ({name})")
                err(f"pltui: {name}: starting no new node; nodes in flight finish (again to stop at once); "
                    f"then: pltui rollout {args.fleet} --resume {action.action_id}")
            else:
                main.cancel()

        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            report = await action.run()
        except ActionError as exc:
            raise UsageError(str(exc)) from None
        except asyncio.CancelledError:
            err(f"pltui: rollout {action.action_id} stopped in the middle of node steps; state saved. "
                f"See: pltui rollout {args.fleet} --status {action.action_id}")
            return EXIT_INTERRUPTED
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        if args.json:
            print_json({"plan": plan, **report.to_json()})
        else:
            print_report(report, args.fleet, rollback=bool(args.rollback))
        if report.summary.get("status") == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK if report.ok else EXIT_UNHEALTHY
    finally:
        await transport.close()
        store.close()


def print_report(report, fleet_arg: str, rollback: bool = False) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for node, r in report.results.items():
        groups.setdefault((r.state, r.message if r.state != "done" else ""), []).append(node)
    order = {"done": 0, "rolled-back": 1, "failed": 2, "unreachable": 3, "untouched": 4}
    for (state, message), nodes in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 5), kv[0][1])):
        out(f"{fold(nodes)} ({len(nodes)}): {state}" + (f": {message}" if message else ""))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.summary.get("counts", {}).items()))
    versions = ", ".join(f"{v} on {n}" for v, n in sorted(report.summary.get("versions", {}).items()))
    out(f"rollout {report.action_id}: {report.summary.get('status')}, {'ok' if report.ok else 'NOT OK'} ({counts}) "
        f"in {report.summary.get('elapsed', 0):.1f}s" + (f"; versions: {versions}" if versions else ""))
    if report.stopped_because:
        out(f"stopped because: {report.stopped_because}")
    if report.summary.get("status") in ("halted", "paused", "interrupted"):
        out(f"see: pltui rollout {fleet_arg} --status {report.action_id}; go on: --resume {report.action_id}; "
            f"undo: --rollback {report.action_id} (add -w NODESET for some nodes only)")
    elif report.summary.get("status") == "done" and not rollback:
        out(f"undo: pltui rollout {fleet_arg} --rollback {report.action_id} (add -w NODESET for some nodes only)")


# --------------------------------------------------------------------------------------------
# --status


def show_status(fleet, args) -> int:
    from pltui.actions.rollout import describe, load_saved

    store = _open_store(fleet, args)
    try:
        try:
            saved = load_saved(store, args.status or None)
        except ActionError as exc:
            raise UsageError(str(exc)) from None
        doc = describe(saved)
    finally:
        store.close()
    if args.json:
        print_json(doc)
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(doc["updated"]))
        b = doc["bundle"]
        out(f"rollout {doc['action_id']}: {doc['status']}" + (f" ({doc['running']})" if doc["running"] else "")
            + f", version {b['version']} (sha256 {b['sha256'][:12]}), by {doc['owner']}, last saved {when}")
        if doc["stopped_because"]:
            out(f"stopped because: {doc['stopped_because']}")
        for s in doc["stages"]:
            out(f"stage {s['name']} (max_fail {s['max_fail']}{', pause before' if s['pause'] else ''}):")
            for b in s["batches"]:
                phases = ", ".join(f"{n} {p}" for p, n in sorted(b["phases"].items()))
                out(f"  batch {b['batch']}: {b['count']} nodes ({b['nodes']}): {phases}")
        out("nodes:")
        for phase, info in doc["phases"].items():
            out(f"  {phase:<13} {info['count']:>5}  {info['nodes']}")
        for name, rec in doc["nodes"].items():
            if rec["phase"] not in ("done", "pending") and rec.get("message"):
                at = f" (left {rec['at']})" if rec.get("at") else ""
                out(f"  {name}: {rec['phase']}{at}: {rec['message']}")
    status = doc["status"]
    all_done = all(r["phase"] == "done" for r in doc["nodes"].values())
    return EXIT_OK if status == "done" and all_done else EXIT_UNHEALTHY
