"""The probe parser: strict on structure, defensive on content, never raising anything but ProbeError."""

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pltui import fleet as fleet_mod
from pltui.model import Health, NodeStatus, SSHState
from pltui.probe import (MAX_OUTPUT, ProbeError, build_script, carry_checksums, parse, probe_args, probe_command,
                         shell_path)
from pltui.sanitize import is_clean

FLEET = fleet_mod.loads(
    """
[fleet]
name = "t"
nodes = ["n[1-3]"]
[service]
root = "~/svc"
important = ["bin/*"]
logs = ["logs/*.log"]
monitor_interval = "5s"
[[service.process]]
name = "web"
start = "sleep 100"
[[service.process]]
name = "cache"
start = "sleep 100"
"""
)
NODE = FLEET.nodes["n1"]


def report(*lines: str, end: bool = True) -> bytes:
    body = ["pltui-probe 1", "clock 1000"] + list(lines) + (["end"] if end else [])
    return ("\n".join(body) + "\n").encode()


def test_full_report_is_parsed():
    out = report(
        "uptime 3600", "load 0.25", "disk_free 123456", "log_bytes 42", "version 2.1.0 (build 7)",
        "protocol 7", "monitor_pid 55 alive", "hb_time 998",
        "hb_proc web running 101 2 0 -", "hb_proc cache backoff - 5 1 1004",
        "proc web alive 101", "proc cache dead -",
    )
    status = parse(out, FLEET, NODE, checksums=False)
    assert status.version == "2.1.0 (build 7)"
    assert status.protocol == "7"
    assert status.monitor == "alive" and status.monitor_pid == 55 and status.heartbeat_age == 2
    web, cache = status.processes
    assert (web.name, web.alive, web.pid, web.state, web.restarts) == ("web", True, 101, "running", 2)
    assert (cache.alive, cache.state, cache.restarts, cache.last_exit, cache.next_try) == (False, "backoff", 5, 1, 1004.0)
    assert status.load == 0.25 and status.disk_free == 123456 and status.log_bytes == 42
    assert status.digests is None


def test_stale_heartbeat_means_dead_monitor_even_with_live_pid():
    out = report("monitor_pid 55 alive", "hb_time 900", "proc web alive 1", "proc cache alive 2")
    status = parse(out, FLEET, NODE, checksums=False)
    assert status.monitor == "dead"
    assert status.heartbeat_age == 100


def test_monitor_absent_and_dead_pid():
    assert parse(report("monitor_pid -"), FLEET, NODE, checksums=False).monitor == "absent"
    assert parse(report("monitor_pid 9 dead", "hb_time 999"), FLEET, NODE, checksums=False).monitor == "dead"


def test_missing_processes_are_reported_dead():
    status = parse(report(), FLEET, NODE, checksums=False)
    assert [(p.name, p.alive) for p in status.processes] == [("web", False), ("cache", False)]


def test_checksum_records_including_gnu_escaped_names():
    d1, d2 = "a" * 64, "b" * 64
    out = report("digest_tool sha256sum", f"file {d1}  bin/app", f"file \\{d2}  bin/new\\nline\\\\x")
    status = parse(out, FLEET, NODE, checksums=True)
    assert status.digests == {"bin/app": d1, "bin/new\nline\\x": d2}
    assert status.digest_tool == "sha256sum"


@pytest.mark.parametrize(
    "output, message",
    [
        (b"", "not a pltui probe report"),
        (b"hello\n", "not a pltui probe report"),
        (report("version 1", end=False), "truncated"),
        (report("bogus 1"), "unknown record"),
        (report("load lots"), "not a number"),
        (report("clock 5"), "duplicate 'clock'"),
        (report("proc other-node alive 5"), "unconfigured process"),
        (report("proc web alive 1", "proc web alive 1"), "duplicate process"),
        (report("file zz  x"), "bad file digest"),
        (b"pltui-probe 1\nend\n", "no clock"),
        (b"\xff\xfe\x00garbage", "not a pltui probe report"),
        (b"pltui-probe 1\nclock 1000\nload 0.5\xff\nend\n", "not UTF-8 text"),
    ],
)
def test_garbled_reports_are_errors(output, message):
    with pytest.raises(ProbeError, match=message):
        parse(output, FLEET, NODE, checksums=False)


def test_hostile_strings_are_sanitised():
    out = report("version \x1b[2J\x1b]0;pwned\x07[/oops]\x9b31m", "protocol 7\x1b[31m")
    status = parse(out, FLEET, NODE, checksums=False)
    assert "\x1b" not in status.version and "\x9b" not in status.version and "\x07" not in status.version
    assert "[/oops]" in status.version  # markup is text; the faces never render it as markup
    assert status.protocol == "7"


def test_oversized_output_is_refused():
    with pytest.raises(ProbeError, match="too large"):
        parse(b"x" * (MAX_OUTPUT + 1), FLEET, NODE, checksums=False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_status_or_probe_error(data):
    try:
        parse(data, FLEET, NODE, checksums=True)
    except ProbeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=30))
def test_any_record_lines_give_a_status_or_probe_error(lines):
    try:
        status = parse(report(*lines), FLEET, NODE, checksums=True)
    except ProbeError:
        return
    for value in (status.version or "", status.protocol or ""):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in value)


def test_script_quotes_every_value():
    hostile = fleet_mod.loads(
        """
[fleet]
name = "t"
nodes = ["n1"]
[service]
root = "/srv/it's $(reboot)"
important = ["bin/*; rm -rf /"]
"""
    )
    script = build_script(hostile, hostile.nodes["n1"], checksums=True).decode()
    first = script.split("\n", 1)[0]
    assert first.startswith("set -- ") and first == "set -- " + probe_args(hostile, hostile.nodes["n1"], checksums=True)
    command = probe_command(hostile, hostile.nodes["n1"], checksums=True, limit=30)
    assert command.startswith(first + ";")
    # The words reach the probe as the exact values, nothing run (the sh parses them for real).
    got = subprocess.run(["/bin/sh", "-c", first + ';printf "[%s]" "$@"'], capture_output=True, check=True).stdout
    assert got == b"[/srv/it's $(reboot)][VERSION][PROTOCOL][][][][bin/*; rm -rf /][1][604800]"
    assert shell_path("~/svc") == '"$HOME"/svc'


DOC = Path(__file__).resolve().parent.parent / "docs" / "node-layout.md"


def _doc_blocks() -> tuple[list[str], list[str]]:
    """The probe section's format block and its example block, as lines."""
    text = DOC.read_text("utf-8")
    section = text[text.index("## The probe ("):]
    section = section[: section.index("\n## ", 1)]
    blocks = [b.split("```", 1)[0] for b in section.split("```\n")[1::2]]
    return blocks[0].splitlines(), blocks[1].splitlines()


def test_the_documented_example_report_parses():
    _, example = _doc_blocks()
    status = parse(("\n".join(example) + "\n").encode(), FLEET, NODE, checksums=True)
    assert status.clock == 1714564800.25 and status.disk_free == 1048576 * 1024
    assert status.monitor == "alive" and status.version == "2.1.0" and status.protocol == "7"
    web, cache = status.processes
    assert web.alive and web.pid == 4300 and not cache.alive and cache.state == "backoff"
    assert status.digests == {
        "bin/app": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        "bin/odd\\name": "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c",
    }
    assert status.special_files == {"bin/control.pipe": "fifo"}


def test_every_documented_record_is_one_the_parser_knows_and_the_probe_prints():
    fmt, _ = _doc_blocks()
    kinds = {line.split(" ", 1)[0] for line in fmt if line[:1].isalpha()}
    script = (Path(__file__).resolve().parent.parent / "pltui" / "node" / "probe.sh").read_text()
    assert {"end", "clock", "proc", "hb_proc", "monitor_pid", "special", "file"} <= kinds
    for kind in kinds - {"pltui-probe", "end"}:
        assert f"{kind} " in script or f'"{kind}"' in script, kind
        try:
            parse(report(f"{kind} zz"), FLEET, NODE, checksums=True)
        except ProbeError as exc:
            assert "unknown record" not in str(exc), kind


def test_spec_processes_missing_from_the_fleet_and_the_reverse_are_warnings():
    out = report("monitor_pid 55 alive", "hb_time 999", "hb_proc web running 1 0 - -",
                 "hb_proc db running 2 0 - -", "proc web alive 1", "proc cache alive 2")
    status = parse(out, FLEET, NODE, checksums=False)
    assert status.warnings == ["monitor spec differs from the fleet file: processes not in the fleet "
                               "file: db; fleet processes missing from it: cache"]
    status.ssh = SSHState.OK
    assert status.health == Health.DEGRADED


def test_odd_bytes_stay_in_their_field_and_the_rest_is_intact():
    out = (b"pltui-probe 1\nclock 1000\nversion 1.0\x9b\x1b[2J\nproc web alive 7\ndigest_tool busybox\n"
           b"file " + b"a" * 64 + b"  bin/caf\xe9\nfile " + b"b" * 64 + b"  bin/app\n"
           b"special fifo bin/p\xff\nbin/half of a name\nproc cache alive 9\nversion FORGED\nend\n")
    status = parse(out, FLEET, NODE, checksums=True)
    assert status.version == "1.0\\x9b" and status.processes[0].alive
    assert not status.processes[1].alive  # a `proc` line after digest_tool is no record
    assert status.digests == {"bin/caf\\xe9": "a" * 64, "bin/app": "b" * 64}
    assert status.special_files == {"bin/p\\xff": "fifo"}
    assert len(status.warnings) == 6 and all(is_clean(w) for w in status.warnings)


def test_liveness_sweeps_carry_the_last_checksum_warnings():
    previous = parse(report("digest_tool sha256sum", "special device bin/zero"), FLEET, NODE, checksums=True)
    status = parse(report(), FLEET, NODE, checksums=False)
    carry_checksums(previous, status)
    assert status.special_files == {"bin/zero": "device"} and len(status.warnings) == 1
    assert NodeStatus.from_json(status.to_json()).warnings == status.warnings


def test_a_bad_heartbeat_costs_the_heartbeat_not_the_node():
    for bad in ("hb_proc web exploded 1 2 3 4", "hb_time soon", "hb_proc web running " + "x" * 300):
        out = report("monitor_pid 55 alive", "hb_time 999", bad, "proc web alive 1", "proc cache alive 2")
        status = parse(out, FLEET, NODE, checksums=False)
        assert status.monitor == "dead" and status.heartbeat_age is None
        assert status.procs_alive == 2 and status.version is None
        assert len(status.warnings) == 1 and "heartbeat file" in status.warnings[0], status.warnings
