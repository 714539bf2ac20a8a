"""`pltui logs`: verified, resumable, never-overwriting, prune-safe log collection against real
SSH nodes (in-process asyncssh nodes running real shell commands, and a real OpenSSH sshd fleet).

The invariant checked everywhere (`assert_nothing_lost`): every version of every log file that
existed on a node is either still on the node, byte for byte, or collected in DEST with a copy
whose decompressed sha256 equals it; and every collected copy equals some version of its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from pltui import fleet as fleet_mod
from pltui.actions.base import ActionError
from pltui.actions.logs import (CollectLogs, FrameScanner, GzipVerifier, ListError, ListParser, MANIFEST, PARTIAL_DIR,
                                VerifyError, display, normalize, pct, unpct)
from pltui.demo.nodesim import write_toml
from pltui.ssh import Transport
from pltui.store import Store

SSH = {"connect_timeout": "3s", "command_timeout": "10s"}
LOGS = ["logs/*.log*", "logs/archive"]
HOSTILE = ["a b.log", "new\nline.log", "it's \"quoted\".log", "$(touch pwned).log", "semi;colon.log",
           "back`tick`.log", "-rf.log", "star*[x].log", "tab\there.log", "\x1b[31mred.log"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_log(seed: int, size: int) -> bytes:
    """Log-like text (compresses ~5x, like real access logs)."""
    rng = random.Random(seed)
    lines, n = [], 0
    while n < size:
        line = (f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - "
                f"[25/Nov/2026:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} +0000] "
                f"\"GET /obj/{rng.randint(0, 99999)} HTTP/1.1\" {rng.choice((200, 200, 304, 404))} "
                f"{rng.randint(0, 99999)} rt={rng.random():.4f}\n").encode()
        lines.append(line)
        n += len(line)
    return b"".join(lines)[:size]


def write_files(root: Path, files: dict[str, bytes], owner=None) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if owner is not None:
            for p in [path, *path.parents]:
                if p == root:
                    break
                os.chown(p, owner.pw_uid, owner.pw_gid)


def snapshot(roots: dict[str, Path]) -> dict[str, dict[bytes, dict[str, int]]]:
    """node -> relative path (bytes) -> {sha256: size} of every file under logs/ now."""
    return {node: {path: {sha(data): len(data)} for path, data in contents(root).items()} for node, root in roots.items()}


def contents(root: Path) -> dict[bytes, bytes]:
    found = {}
    for dirpath, _, filenames in os.walk(os.fsencode(root / "logs")):
        for fn in filenames:
            full = os.path.join(dirpath, fn)
            if not os.path.islink(full):
                with open(full, "rb") as f:
                    found[os.path.relpath(full, os.fsencode(root))] = f.read()
    return found


def merge(into: dict, more: dict) -> dict:
    for node, files in more.items():
        for path, sums in files.items():
            into.setdefault(node, {}).setdefault(path, {}).update(sums)
    return into


def decompress(path: Path, codec: str | None = None) -> bytes:
    data = path.read_bytes()
    codec = codec or ("zstd" if path.name.endswith(".zst") else "gzip" if path.name.endswith(".gz") else "none")
    if codec == "zstd":
        return subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout
    if codec == "gzip":
        return gzip.decompress(data)
    return data


def collected(dest: Path, node: str) -> dict[bytes, list[tuple[str, bytes]]]:
    """node path -> [(sha256, decompressed content)] of every copy the manifest lists."""
    out: dict[bytes, list[tuple[str, bytes]]] = {}
    manifest = dest / node / MANIFEST
    if not manifest.exists():
        return out
    for line in manifest.read_bytes().splitlines():
        rec = json.loads(line)
        if rec["kind"] != "collected":
            continue
        stored = dest / node / os.fsdecode(unpct(rec["stored"]))
        if not stored.exists() or sha(stored.read_bytes()) != rec["stored_sha256"]:
            continue  # gone or damaged since (by the test): not a copy we count on
        data = decompress(stored, rec["codec"])
        assert sha(data) == rec["sha256"], f"{stored}: copy does not match its manifest record"
        out.setdefault(unpct(rec["path"]), []).append((sha(data), data))
    return out


def assert_nothing_lost(history: dict, roots: dict[str, Path], dest: Path) -> None:
    """Every version in `history` is still on its node or has a verified copy in DEST (whole, or
    as the prefix of a later version: a log being appended); every copy in DEST is a version of
    its file, or a prefix of what the node holds now."""
    for node, files in history.items():
        now = contents(roots[node])
        got = collected(dest, node)
        for path, versions in files.items():
            held = [now[path]] if path in now else []
            held += [data for _, data in got.get(path, [])]
            for s, size in versions.items():
                assert any(len(data) >= size and sha(data[:size]) == s for data in held), \
                    f"{node}:{display(path)} version {s[:12]} ({size} bytes) lost"
        for path, copies in got.items():
            longer = [now[path]] if path in now else []
            longer += [data for s, data in copies if s in files.get(path, {})]
            for s, data in copies:
                assert s in files.get(path, {}) or any(d[:len(data)] == data for d in longer), \
                    f"a copy is not a version of {display(path)}"


async def collect(fleet_path, dest, nodes=None, *, store=None, events=None, **kwargs):
    fleet = fleet_mod.load(fleet_path)
    transport = Transport(fleet)
    try:
        action = CollectLogs(fleet, transport, store, nodes or fleet.node_names, dest=dest,
                             emit=(events.append if events is not None else None), **kwargs)
        return await action.run()
    finally:
        await transport.close()


async def cli(*argv: str, timeout: float = 120) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out, err


def roots_of(sim) -> dict[str, Path]:
    return {name: node.root for name, node in sim.nodes.items()}


@pytest.fixture
async def sim3(make_sim_fleet):
    return await make_sim_fleet(3, fleet={"ssh_overrides": SSH, "service": {"logs": LOGS}})


# -- the listing parser (hostile bytes) ------------------------------------------------------------


def records(*recs: bytes) -> bytes:
    return b"".join(r + b"\0" for r in recs)


def test_parser_takes_any_name_and_rejects_escapes():
    digest = b"a" * 64

    def rec(name: bytes, moved: bytes = b"0", sha: bytes = digest) -> bytes:
        return b"file 3 10 11 12 " + sha + b" " + moved + b" " + name

    data = records(b"pltui-logs 1", b"tools sha256sum openssl nice zstd gzip",
                   b"stat 3 logs/new\nline .log",
                   rec(b"logs/new\nline .log"),
                   rec(b"./logs//x.log", b"1"),
                   rec(b"../etc/passwd"),
                   rec(b"logs/../../x"),
                   rec(b"/etc/shadow"),
                   rec(PARTIAL_DIR.encode() + b"/x"),
                   rec(b"logs/" + b"x" * 300),
                   rec(b"logs/stat-only.log", sha=b"-"),
                   b"skip unreadable logs/secret.log",
                   b"end")
    parser = ListParser()
    for i in range(0, len(data), 7):  # arbitrary chunking
        parser.feed(data[i:i + 7])
    listing = parser.finish()
    assert [f.path for f in listing.files] == [b"logs/new\nline .log", b"logs/x.log", b"logs/stat-only.log"]
    assert listing.files[1].moved and not listing.files[0].moved
    assert listing.files[0].version == (3, 10, 11, 12) and listing.files[2].sha256 is None
    assert listing.codecs == {"zstd", "gzip"} and listing.nice
    assert len(listing.rejected) == 5
    assert listing.skipped == [(b"logs/secret.log", "unreadable")]


@pytest.mark.parametrize("bad", [
    records(b"garbage"),
    records(b"pltui-logs 1", b"file 3 10 1 1 xyz 0 a.log", b"end"),
    records(b"pltui-logs 1", b"file -3 10 1 1 " + b"a" * 64 + b" 0 a.log", b"end"),
    records(b"pltui-logs 1", b"file 3 10 1 1 " + b"A" * 64 + b" 0 a.log", b"end"),
    records(b"pltui-logs 1", b"file 3 10 " + b"a" * 64 + b" 0 a.log", b"end"),  # old format
    records(b"pltui-logs 1", b"file 3 10 1 1 " + b"a" * 64 + b" 2 a.log", b"end"),
    records(b"pltui-logs 1", b"\x1b[2Jproc x", b"end"),
    records(b"pltui-logs 1", b"end", b"file 3 10 1 1 " + b"a" * 64 + b" 0 a.log"),
    records(b"pltui-logs 1", b"file 3 10 1 1 " + b"a" * 64 + b" 0 a.log"),  # no end
    records(b"error noroot"),
])
def test_parser_refuses_malformed_listings(bad):
    parser = ListParser()
    with pytest.raises(ListError):
        parser.feed(bad)
        parser.finish()


def test_parser_caps_output():
    parser = ListParser(max_output=1000)
    with pytest.raises(ListError):
        parser.feed(b"pltui-logs 1\0" + b"x" * 2000)


def test_every_copy_has_a_resume_point_within_a_block_of_its_end():
    from pltui.actions.logs.segments import BLOCK, segment_plan
    mib = BLOCK
    assert segment_plan(5 * mib // 2, 0, 64 * mib) == [(0, 2 * mib), (2 * mib, mib // 2)]
    assert segment_plan(3 * mib, 0, 64 * mib) == [(0, 3 * mib)]                  # aligned: no split
    assert segment_plan(mib // 2, 0, 64 * mib) == [(0, mib // 2)]                # under a block: none
    assert segment_plan(9 * mib + 5, 4 * mib, 4 * mib) == [(4 * mib, 4 * mib), (8 * mib, mib), (9 * mib, 5)]
    assert segment_plan(0, 0, 64 * mib) == [(0, 0)]


def test_names_round_trip_and_display_is_safe():
    name = "logs/\x1b[2J$(x);'\"\n\xff".encode("utf-8", "surrogateescape")
    assert unpct(pct(name)) == name
    shown = display(name)
    assert "\x1b" not in shown and "\n" not in shown
    assert normalize(b"./a//b/./c") == (b"a/b/c", None)
    assert normalize(b"a/../b")[0] is None and normalize(b"/a")[0] is None


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs zstd")
def test_frame_scanner_finds_every_frame_end_in_any_chunking():
    def z(data: bytes, *opts: str) -> bytes:
        return subprocess.run(["zstd", "-q", "-c", *opts], input=data, capture_output=True, check=True).stdout

    frames = [z(b""), z(b"hello"), z(os.urandom(300_000)), z(b"a" * 3_000_000), z(text_log(1, 2_000_000), "-1"),
              z(b"xyz", "--no-check"), z(os.urandom(1000), "-19"), z(b"q" * 100_000, "-T0")]
    stream = b"".join(frames)
    ends, pos = [], 10
    for frame in frames:
        pos += len(frame)
        ends.append(pos)
    for chunk in (1, 3, 4096, 1 << 20, len(stream)):
        scanner = FrameScanner(10)
        found = []
        for i in range(0, len(stream), chunk):
            found += scanner.feed(stream[i:i + chunk])
        assert found == ends, chunk
    with pytest.raises(VerifyError):
        FrameScanner().feed(b"not zstd at all")


def test_gzip_verifier_reports_member_ends():
    members = [gzip.compress(b"one\n" * 1000), gzip.compress(b""), gzip.compress(os.urandom(50_000))]
    verifier = GzipVerifier()
    stream = b"".join(members)
    for i in range(0, len(stream), 999):
        verifier.feed(stream[i:i + 999])
    assert verifier.ends == [len(members[0]), len(members[0]) + len(members[1]), len(stream)]
    count, digest = verifier.finish()
    assert count == 4000 + 50_000
    cut = GzipVerifier()
    cut.feed(stream[:-5])
    with pytest.raises(VerifyError):
        cut.finish()


# -- collection --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["auto", "gzip", "none"])
async def test_collects_every_file_verified_and_rerun_skips(sim3, tmp_path, compress):
    for i, node in enumerate(sim3.nodes.values()):
        files = {f"logs/{n}": text_log(i * 100 + j, 2000 + j) for j, n in enumerate(HOSTILE)}
        files["logs/app.log"] = text_log(i, 3_000_000)
        files["logs/random.log"] = os.urandom(1_500_000)
        files["logs/empty.log"] = b""
        files["logs/app.log.2.gz"] = gzip.compress(b"rotated\n" * 1000)
        files["logs/archive/2026/11/old.txt"] = b"old\n"
        files["other/not-a-log.txt"] = b"x"
        write_files(node.root, files)
        os.symlink("/etc/passwd", node.root / "logs" / "link.log")
    history = snapshot(roots_of(sim3))
    dest = tmp_path / "dest"
    events = []
    report = await collect(sim3.fleet_path, dest, compress=compress, segment=1 << 20, events=events)
    assert report.ok, report.to_json()
    for name in sim3.names:
        files = report.results[name].data["files"]
        assert len(files) == len(HOSTILE) + 5 and all(f["state"] == "collected" for f in files)
        got = collected(dest, name)
        assert set(got) == set(history[name]), "every listed file collected, nothing else"
        assert not (dest / name / "link.log").exists() and not list((dest / name).rglob("link.log*"))
    assert_nothing_lost(history, roots_of(sim3), dest)
    stored = (dest / "sim001" / "logs").iterdir()
    ext = {"auto": ".zst", "gzip": ".gz", "none": ".log"}[compress]
    assert (dest / "sim001" / "logs" / f"app.log{ext if compress != 'none' else ''}").exists(), list(stored)
    assert (dest / "sim001" / "logs" / "app.log.2.gz").read_bytes() == (sim3.nodes["sim001"].root / "logs/app.log.2.gz").read_bytes()
    # no injected command ran anywhere
    assert not list(tmp_path.rglob("pwned")) and not list(sim3.base_dir.rglob("pwned"))
    # progress in bytes, per node, up to the node's total
    progress = [e for e in events if getattr(e, "bytes_total", None)]
    assert {e.node for e in progress} == set(sim3.names)
    for name in sim3.names:
        mine = [e for e in progress if e.node == name]
        assert all(0 <= e.bytes_done <= e.bytes_total for e in mine)
        assert mine[-1].bytes_total >= 4_500_000 and max(e.bytes_done for e in mine) > 1_000_000
    # a re-run transfers nothing and changes nothing
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file() and p.name != ".pltui-lock"}
    again = await collect(sim3.fleet_path, dest, compress=compress)
    assert again.ok
    assert again.summary["files"] == {"present": 3 * (len(HOSTILE) + 5)}
    assert again.summary["bytes_collected"] == 0
    after = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file() and p.name != ".pltui-lock"}
    assert before == after
    assert not any((dest / n / PARTIAL_DIR).exists() for n in sim3.names), "partials cleaned up"


async def test_hostile_characters_in_the_globs_themselves(make_sim_fleet, tmp_path):
    odd = "odd dir $(touch pwned);'q\"`x`"
    sim = await make_sim_fleet(1, fleet={"ssh_overrides": SSH,
                                         "service": {"logs": [f"{odd}/*.log", "sp ace/a b.log", "nomatch $(touch pwned)/*"]}})
    root = sim.nodes["sim001"].root
    write_files(root, {f"{odd}/one.log": b"one\n", f"{odd}/two;rm -rf x.log": b"two\n", "sp ace/a b.log": b"ab\n"})
    dest = tmp_path / "dest"
    report = await collect(sim.fleet_path, dest)
    assert report.ok, report.to_json()
    got = collected(dest, "sim001")
    assert {p: [d for _, d in c] for p, c in got.items()} == {
        f"{odd}/one.log".encode(): [b"one\n"], f"{odd}/two;rm -rf x.log".encode(): [b"two\n"],
        b"sp ace/a b.log": [b"ab\n"]}
    assert not list(sim.base_dir.rglob("pwned")) and not list(tmp_path.rglob("pwned"))


async def test_rerun_hashes_only_versions_not_collected_yet(sim3, tmp_path):
    node = sim3.nodes["sim001"]
    write_files(node.root, {f"logs/r{i}.log": text_log(i, 100_000) for i in range(5)})
    dest = tmp_path / "dest"
    before = node.execs
    assert (await collect(sim3.fleet_path, dest, nodes=["sim001"])).ok
    assert node.execs - before == 1 + 5          # list (hashing all), one transfer per file
    before = node.execs
    again = await collect(sim3.fleet_path, dest, nodes=["sim001"])
    assert again.ok and again.summary["files"] == {"present": 5}
    assert node.execs - before == 1              # a stat-only listing: nothing hashed, nothing sent
    os.utime(node.root / "logs" / "r1.log")      # same bytes, another version stamp: hashed, not sent
    with open(node.root / "logs" / "r2.log", "ab") as f:
        f.write(b"one more line\n")             # changed: hashed and sent
    before = node.execs
    third = await collect(sim3.fleet_path, dest, nodes=["sim001"])
    assert third.ok and third.summary["files"] == {"present": 4, "collected": 1}
    assert node.execs - before == 1 + 1 + 1      # stat, hash of the two, one transfer
    before = node.execs
    assert (await collect(sim3.fleet_path, dest, nodes=["sim001"])).summary["files"] == {"present": 5}
    assert node.execs - before == 1              # both new versions are known now
    fourth = await collect(sim3.fleet_path, dest, nodes=["sim001"], prune=True)
    assert fourth.ok and fourth.summary["files"] == {"present": 5, "pruned": 5}
    assert not list((node.root / "logs").iterdir())


async def test_different_file_on_an_existing_name_is_never_overwritten(sim3, tmp_path):
    node = sim3.nodes["sim001"]
    write_files(node.root, {"logs/app.log": b"version one\n" * 100})
    dest = tmp_path / "dest"
    foreign = dest / "sim001" / "logs" / "app.log.zst"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"the operator's own file")
    history = snapshot(roots_of(sim3))
    report = await collect(sim3.fleet_path, dest, nodes=["sim001"])
    assert report.ok
    assert foreign.read_bytes() == b"the operator's own file"
    first = dest / "sim001" / "logs" / "app.log.~1~.zst"
    assert decompress(first) == b"version one\n" * 100
    # the node's file changes (a log rotated by copytruncate, then written again): a new copy
    write_files(node.root, {"logs/app.log": b"version two\n" * 50})
    merge(history, snapshot(roots_of(sim3)))
    report = await collect(sim3.fleet_path, dest, nodes=["sim001"])
    assert report.ok
    assert decompress(first) == b"version one\n" * 100
    assert decompress(dest / "sim001" / "logs" / "app.log.~2~.zst") == b"version two\n" * 50
    assert foreign.read_bytes() == b"the operator's own file"
    assert_nothing_lost(history, roots_of(sim3), dest)


async def test_manifest_names_stored_files_as_the_disk_does(sim3, tmp_path):
    """`~` is an unreserved character: the manifest's `stored` says `app.log.~1~.zst`, the name on
    disk, not `app.log.%7E1%7E.zst`."""
    node = sim3.nodes["sim001"]
    write_files(node.root, {"logs/app.log": b"version one\n" * 100})
    dest = tmp_path / "dest"
    assert (await collect(sim3.fleet_path, dest, nodes=["sim001"])).ok
    write_files(node.root, {"logs/app.log": b"version two\n" * 50})  # rewritten: a second copy
    report = await collect(sim3.fleet_path, dest, nodes=["sim001"])
    assert report.ok
    records = [json.loads(line) for line in (dest / "sim001" / MANIFEST).read_text().splitlines()]
    stored = sorted(r["stored"] for r in records if r["kind"] == "collected")
    assert stored == ["logs/app.log.zst", "logs/app.log.~1~.zst"], stored
    assert all((dest / "sim001" / name).is_file() for name in stored)
    files = report.to_json()["nodes"]["sim001"]["files"]
    assert [f["stored"] for f in files if f["state"] == "collected"] == ["logs/app.log.~1~.zst"]


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
async def test_growing_log_stores_only_what_is_new(sim3, tmp_path, compress):
    """A log appended to between runs: the next run fetches only what the stored copy lacks (from
    the last segment boundary it kept, at most one BLOCK before its end) and the grown copy
    replaces the old one under its name: one copy per log, not one more full copy per run."""
    if compress == "zstd" and shutil.which("zstd") is None:
        pytest.skip("no local zstd")
    node = sim3.nodes["sim001"]
    log = node.root / "logs" / "app.log"
    body = text_log(3, (3 << 20) + 300_000)
    write_files(node.root, {"logs/app.log": body})
    history = snapshot(roots_of(sim3))
    dest = tmp_path / "dest"
    first = await collect(sim3.fleet_path, dest, nodes=["sim001"], compress=compress)
    assert first.ok, first.to_json()
    [copy] = [f for f in first.to_json()["nodes"]["sim001"]["files"] if f["state"] == "collected"]
    for growth in (200_000, 1_500_000):
        with open(log, "ab") as f:  # appended in place: same inode, as a logger does
            f.write(text_log(growth, growth))
        merge(history, snapshot(roots_of(sim3)))
        report = await collect(sim3.fleet_path, dest, nodes=["sim001"], compress=compress)
        assert report.ok, report.to_json()
        [grown] = [f for f in report.to_json()["nodes"]["sim001"]["files"] if f["state"] == "collected"]
        assert grown["stored"] == copy["stored"], "the grown copy is not stored under the log's name"
        assert grown["size"] == log.stat().st_size
        print(f"{compress}: {growth} bytes appended to a {grown['size'] - growth}-byte log: {grown['sent']} fetched")
        assert grown["sent"] <= growth + (1 << 20), f"{grown['sent']} bytes fetched for {growth} new ones"
        stored_files = sorted(p.name for p in (dest / "sim001" / "logs").iterdir())
        assert stored_files == [os.path.basename(copy["stored"])], stored_files
        assert decompress(dest / "sim001" / copy["stored"], compress) == log.read_bytes()
        assert_nothing_lost(history, roots_of(sim3), dest)
    # a log rewritten (not appended) is never spliced onto the old copy: it gets a copy of its own
    write_files(node.root, {"logs/app.log": b"x" + log.read_bytes()[1:] + b"more\n"})
    merge(history, snapshot(roots_of(sim3)))
    report = await collect(sim3.fleet_path, dest, nodes=["sim001"], compress=compress)
    assert report.ok, report.to_json()
    assert len(list((dest / "sim001" / "logs").iterdir())) == 2
    assert_nothing_lost(history, roots_of(sim3), dest)
    # a stored copy damaged on disk (same size) is never continued: the grown log is fetched whole
    newest = dest / "sim001" / report.to_json()["nodes"]["sim001"]["files"][0]["stored"]
    damaged = bytearray(newest.read_bytes())
    damaged[len(damaged) // 3: len(damaged) // 3 + 64] = bytes(64)
    newest.write_bytes(bytes(damaged))
    with open(log, "ab") as f:
        f.write(b"after the damage\n")
    report = await collect(sim3.fleet_path, dest, nodes=["sim001"], compress=compress)
    assert report.ok, report.to_json()
    [again] = [f for f in report.to_json()["nodes"]["sim001"]["files"] if f["state"] == "collected"]
    assert again["sent"] == log.stat().st_size
    assert decompress(dest / "sim001" / again["stored"], compress) == log.read_bytes()


async def test_names_outside_the_root_are_rejected(make_sim_fleet, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_bytes(b"outside\n")
    sim = await make_sim_fleet(1, fleet={"ssh_overrides": SSH,
                                         "service": {"logs": ["logs/*.log", "../*.log", str(outside / "*.log")]}})
    node = sim.nodes["sim001"]
    write_files(node.root, {"logs/ok.log": b"fine\n"})
    (node.root.parent / "sibling.log").write_bytes(b"sibling\n")
    dest = tmp_path / "dest"
    report = await collect(sim.fleet_path, dest)
    result = report.results["sim001"]
    assert result.state == "failed" and not report.ok
    states = sorted((f["shown"], f["state"]) for f in result.data["files"])
    assert states == sorted([("logs/ok.log", "collected"), ("../sibling.log", "rejected"),
                             (str(outside / "secret.log"), "rejected")])
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(["outside/secret.log", "dest/.pltui-lock", f"dest/sim001/{MANIFEST}",
                              "dest/sim001/logs/ok.log.zst"])


async def test_unreachable_node_and_missing_root(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, modes={"sim002": "refuse"}, fleet={"ssh_overrides": SSH, "service": {"logs": LOGS}})
    for node in sim.nodes.values():
        write_files(node.root, {"logs/a.log": b"a\n"})
    doc = tomllib.loads(sim.fleet_path.read_text())
    doc["node"]["sim003"]["root"] = str(sim.nodes["sim003"].root / "no-such-dir")
    write_toml(sim.fleet_path, doc)
    report = await collect(sim.fleet_path, tmp_path / "dest")
    assert report.results["sim001"].state == "done"
    assert report.results["sim002"].state == "unreachable" and "refused" in report.results["sim002"].message
    assert report.results["sim003"].state == "failed" and "service root" in report.results["sim003"].message
    assert not report.ok


async def test_garbage_and_hanging_nodes_fail_cleanly(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, modes={"sim002": "garbage", "sim003": "hang"},
                               fleet={"ssh_overrides": {"connect_timeout": "3s", "command_timeout": "2s"},
                                      "service": {"logs": LOGS}})
    write_files(sim.nodes["sim001"].root, {"logs/a.log": b"a\n"})
    fleet = fleet_mod.load(sim.fleet_path)
    transport = Transport(fleet)
    try:
        action = CollectLogs(fleet, transport, None, fleet.node_names, dest=tmp_path / "dest", retries=0)
        report = await asyncio.wait_for(action.run(), 30)
    finally:
        await transport.close()
    assert report.results["sim001"].state == "done"
    assert report.results["sim002"].state == "failed" and "not a pltui listing" in report.results["sim002"].message
    assert report.results["sim003"].state == "failed" and "no data" in report.results["sim003"].message
    for result in report.results.values():
        assert "\x1b" not in result.message and "\x9b" not in result.message
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [".pltui-lock", "sim001"]


# -- prune -------------------------------------------------------------------------------------------


async def test_prune_deletes_only_verified_files_never_one_being_written(sim3, tmp_path):
    node = sim3.nodes["sim002"]
    files = {f"logs/rotated-{i}.log": text_log(i, 300_000) for i in range(4)}
    files["logs/app.log"] = text_log(99, 2_000_000)   # appended to during the collection
    files["logs/quiet.log"] = text_log(98, 10_000)    # open by a process, not written
    files["logs/old.log.3.gz"] = gzip.compress(b"old\n" * 100)
    for n in sim3.nodes.values():
        write_files(n.root, files)
    history = snapshot(roots_of(sim3))
    stop = asyncio.Event()
    writes = 0

    async def writer():
        nonlocal writes
        with open(node.root / "logs" / "app.log", "ab") as f:
            while not stop.is_set():
                f.write(b"appended line %d\n" % writes)
                f.flush()
                writes += 1
                await asyncio.sleep(0.002)

    holder = subprocess.Popen(["/bin/sh", "-c", "exec 3>>logs/quiet.log; sleep 60"], cwd=sim3.nodes["sim003"].root)
    task = asyncio.ensure_future(writer())
    try:
        await asyncio.sleep(0.05)
        dest = tmp_path / "dest"
        report = await collect(sim3.fleet_path, dest, prune=True, segment=1 << 20)
    finally:
        stop.set()
        await task
        holder.kill()
        holder.wait()
    assert writes > 10
    assert report.ok, report.to_json()
    by_node = {n: {f["shown"]: f for f in report.results[n].data["files"]} for n in sim3.names}
    assert by_node["sim001"]["logs/app.log"]["prune"] == "pruned"
    assert by_node["sim002"]["logs/app.log"]["prune"] == "kept"
    assert "still being written" in by_node["sim002"]["logs/app.log"]["prune_message"]
    assert by_node["sim003"]["logs/quiet.log"]["prune"] == "kept"
    assert "open by a process" in by_node["sim003"]["logs/quiet.log"]["prune_message"]
    assert (node.root / "logs" / "app.log").exists()
    assert (sim3.nodes["sim003"].root / "logs" / "quiet.log").exists()
    assert not (sim3.nodes["sim001"].root / "logs" / "app.log").exists()
    for n in sim3.names:
        assert not (sim3.nodes[n].root / "logs" / "rotated-0.log").exists()
        assert by_node[n]["logs/old.log.3.gz"]["prune"] == "pruned"
    assert_nothing_lost(history, roots_of(sim3), dest)
    # the appended file: next run collects its new version, and now prunes it
    history = merge(history, snapshot(roots_of(sim3)))
    report = await collect(sim3.fleet_path, dest, prune=True, nodes=["sim002"])
    assert report.ok
    assert not (node.root / "logs" / "app.log").exists()
    assert_nothing_lost(history, roots_of(sim3), dest)
    # the grown log's copy replaced the earlier one (its prefix): one copy, the newest version
    [(_, newest)] = collected(dest, "sim002")[b"logs/app.log"]
    assert newest.endswith(b"appended line %d\n" % (writes - 1))


async def test_prune_of_files_collected_by_an_earlier_run_rechecks_the_copy(sim3, tmp_path):
    for n in sim3.nodes.values():
        write_files(n.root, {"logs/a.log": b"a\n" * 1000, "logs/b.log": b"b\n" * 1000})
    history = snapshot(roots_of(sim3))
    dest = tmp_path / "dest"
    assert (await collect(sim3.fleet_path, dest)).ok
    # the local copy of sim001's b.log is damaged: it is collected again (never over the damaged
    # copy, which is left as it is) and only then pruned
    damaged = dest / "sim001" / "logs" / "b.log.zst"
    bad = damaged.read_bytes()[:-1] + b"\0"
    damaged.write_bytes(bad)
    report = await collect(sim3.fleet_path, dest, prune=True)
    assert report.ok
    files = {f["shown"]: f for f in report.results["sim001"].data["files"]}
    assert files["logs/a.log"]["state"] == "present" and files["logs/a.log"]["prune"] == "pruned"
    assert files["logs/b.log"]["state"] == "collected" and files["logs/b.log"]["prune"] == "pruned"
    assert damaged.read_bytes() == bad
    assert decompress(dest / "sim001" / "logs" / "b.log.~1~.zst") == b"b\n" * 1000
    assert all(not list((n.root / "logs").iterdir()) for n in sim3.nodes.values())
    assert_nothing_lost(history, roots_of(sim3), dest)


# -- failures: dropped connections, a killed console, a full disk --------------------------------------


async def when_partial(dest: Path, node: str, minimum: int, act) -> None:
    """Run `act()` as soon as a partial download of `node` holds `minimum` bytes."""
    while True:
        try:
            sizes = [p.stat().st_size for p in (dest / node / PARTIAL_DIR).glob("*.part")]
        except OSError:
            sizes = []
        if sizes and max(sizes) >= minimum:
            await act()
            return
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("compress", ["auto", "gzip", "none"])
async def test_dropped_connection_mid_download_resumes_and_loses_nothing(sim3, tmp_path, compress):
    node = sim3.nodes["sim001"]
    for n in sim3.nodes.values():
        write_files(n.root, {"logs/big.log": os.urandom(24 << 20), "logs/small.log": b"s\n"})
    history = snapshot(roots_of(sim3))
    dest = tmp_path / "dest"
    watcher = asyncio.ensure_future(when_partial(dest, "sim001", 3 << 20, lambda: node.set_mode("refuse")))
    try:
        report = await collect(sim3.fleet_path, dest, prune=True, segment=1 << 20, compress=compress, retries=0)
    finally:
        triggered = watcher.done()
        watcher.cancel()
    assert triggered, "the connection was never dropped"
    assert report.results["sim001"].state in ("failed", "unreachable")
    assert report.results["sim002"].state == "done" and report.results["sim003"].state == "done"
    assert (node.root / "logs" / "big.log").exists() and (node.root / "logs" / "small.log").exists()
    parts = list((dest / "sim001" / PARTIAL_DIR).glob("*.part"))
    assert parts and max(p.stat().st_size for p in parts) >= (2 << 20)
    assert_nothing_lost(history, roots_of(sim3), dest)
    await node.set_mode("ok")
    events = []
    report = await collect(sim3.fleet_path, dest, prune=True, segment=1 << 20, events=events, nodes=["sim001"],
                           compress=compress)
    assert report.ok, report.to_json()
    assert not (node.root / "logs" / "big.log").exists()
    assert_nothing_lost(history, roots_of(sim3), dest)
    # it resumed: the first progress already counts the kept partial
    first = next(e.bytes_done for e in events if e.node == "sim001" and e.state == "collecting" and e.bytes_done)
    assert first >= (2 << 20)
    assert not (dest / "sim001" / PARTIAL_DIR).exists()


async def test_short_outage_is_retried_within_the_run(sim3, tmp_path):
    node = sim3.nodes["sim003"]
    write_files(node.root, {"logs/big.log": os.urandom(24 << 20)})
    history = snapshot(roots_of(sim3))

    async def blip():
        await node.set_mode("refuse")
        await asyncio.sleep(0.3)
        await node.set_mode("ok")

    watcher = asyncio.ensure_future(when_partial(tmp_path / "d", "sim003", 3 << 20, blip))
    events = []
    try:
        report = await collect(sim3.fleet_path, tmp_path / "d", nodes=["sim003"], prune=True, segment=1 << 20,
                               events=events)
    finally:
        triggered = watcher.done()
        watcher.cancel()
    assert triggered and report.ok, report.to_json()
    assert any(e.state == "retrying" for e in events)
    assert_nothing_lost(history, roots_of(sim3), tmp_path / "d")


async def _wait_for_partial(dest: Path, minimum: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in dest.glob(f"*/{PARTIAL_DIR}/*.part") if p.exists()]
        if sizes and max(sizes) >= minimum:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no partial download appeared")


async def test_sigkill_during_prune_collection_then_rerun_loses_nothing(make_sim_fleet, tmp_path):
    sim = await make_sim_fleet(3, fleet={"ssh_overrides": SSH, "service": {"logs": LOGS}})
    for i, n in enumerate(sim.nodes.values()):
        write_files(n.root, {"logs/big.log": os.urandom(20 << 20), "logs/text.log": text_log(i, 4 << 20),
                             **{f"logs/r{j}.log": text_log(i * 10 + j, 200_000) for j in range(3)},
                             "logs/new\nline $(touch pwned).log": b"hostile\n"})
    history = snapshot(roots_of(sim))
    dest = tmp_path / "dest"
    state = tmp_path / "state"
    argv = ["logs", str(sim.fleet_path), "--dest", str(dest), "--prune", "--state", str(state), "--json",
            "--parallel", "2", "--segment", "2"]
    idx_after: list[dict[Path, list[bytes]]] = []
    for minimum in (5 << 20, 12 << 20):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _wait_for_partial(dest, minimum)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert_nothing_lost(history, roots_of(sim), dest)
        idx_after.append({p: p.read_bytes().splitlines() for p in dest.glob(f"*/{PARTIAL_DIR}/*.idx")})
    # the second run resumed the partials the first left (their finished segments were kept)
    resumed = [p for p, lines in idx_after[0].items() if p in idx_after[1] and len(lines) >= 3]
    assert resumed, idx_after
    for p in resumed:
        assert idx_after[1][p][:len(idx_after[0][p])] == idx_after[0][p]
    code, out, err = await cli(*argv)
    assert code == 0, err.decode()
    doc = json.loads(out)
    assert doc["ok"] and doc["summary"]["files"].get("pruned") == 3 * 6
    assert_nothing_lost(history, roots_of(sim), dest)
    assert all(not list((n.root / "logs").iterdir()) for n in sim.nodes.values())
    # nothing stuck: no partials, no stale node locks, the DEST lock free
    assert not list(dest.glob(f"*/{PARTIAL_DIR}/*"))
    code, out, _ = await cli(*argv)
    assert code == 0 and json.loads(out)["summary"]["files"] == {}
    assert not list(sim.base_dir.rglob("pwned")) and not list(tmp_path.rglob("pwned"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (root only); unmounted at teardown."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


async def test_full_local_disk_stops_cleanly_and_prunes_nothing_unverified(sim3, tmp_path, tiny_disk):
    for i, n in enumerate(sim3.nodes.values()):
        write_files(n.root, {"logs/a.log": os.urandom(600_000), "logs/b.log": os.urandom(600_000),
                             "logs/c.log": text_log(i, 300_000)})
    history = snapshot(roots_of(sim3))
    dest = tiny_disk / "dest"
    code, out, err = await cli("logs", str(sim3.fleet_path), "--dest", str(dest), "--prune", "--parallel", "1",
                               "--state", str(tmp_path / "state"))
    assert code == 2  # a local error (README: exit codes)
    text = out.decode() + err.decode()
    assert "local disk full" in text and str(dest) in text, text
    assert_nothing_lost(history, roots_of(sim3), dest)
    # a node that finished before the disk filled may have pruned (its copies are verified and
    # fsynced); the node that hit the full disk, and those after it, pruned nothing
    doc_nodes = [line.split()[:2] for line in out.decode().splitlines() if line.startswith("sim")]
    states = dict(doc_nodes)
    assert "failed" in states.values() or "untouched" in states.values(), out.decode()
    for name, state in states.items():
        if state != "done":
            assert (sim3.nodes[name].root / "logs" / "a.log").exists()
            assert (sim3.nodes[name].root / "logs" / "b.log").exists()
    print(out.decode(), err.decode())
    # more room: the same command finishes the job, every byte verified
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    code, out, err = await cli("logs", str(sim3.fleet_path), "--dest", str(dest), "--prune",
                               "--state", str(tmp_path / "state"))
    assert code == 0, out.decode() + err.decode()
    assert_nothing_lost(history, roots_of(sim3), dest)
    assert all(not list((n.root / "logs").iterdir()) for n in sim3.nodes.values())


# -- the CLI -----------------------------------------------------------------------------------------


async def test_cli_human_output_and_usage_errors(sim3, tmp_path):
    write_files(sim3.nodes["sim001"].root, {"logs/a.log": b"a\n" * 100})
    dest = tmp_path / "dest"
    code, out, err = await cli("logs", str(sim3.fleet_path), "--dest", str(dest), "-w", "sim001",
                               "--state", str(tmp_path / "state"))
    assert code == 0, err
    text = out.decode()
    assert "sim001" in text and "1 collected" in text and "ok" in text
    code, _, err = await cli("logs", str(sim3.fleet_path), "--state", str(tmp_path / "state"))
    assert code == 2 and b"--dest" in err
    code, _, err = await cli("logs", str(sim3.fleet_path), "--dest", str(dest), "-w", "nosuchnode",
                             "--state", str(tmp_path / "state"))
    assert code == 2
    bare = tmp_path / "bare.toml"
    fleet_path = sim3.fleet_path
    sim3.write_fleet(bare, ssh_overrides=SSH)
    sim3.fleet_path = fleet_path
    code, _, err = await cli("logs", str(bare), "--dest", str(dest), "--state", str(tmp_path / "state"))
    assert code == 2 and b"[service].logs" in err
    # a second collection into the same DEST is refused while one runs
    import fcntl
    with open(dest / ".pltui-lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, _, err = await cli("logs", str(sim3.fleet_path), "--dest", str(dest),
                                 "--state", str(tmp_path / "state"))
    assert code == 2 and b"another log collection" in err


async def test_node_locks_and_audit_with_prune(sim3, tmp_path):
    write_files(sim3.nodes["sim001"].root, {"logs/a.log": b"a\n"})
    store = Store(tmp_path / "state.db")
    try:
        store.lock_nodes(["sim002"], "rollout-other")
        with pytest.raises(ActionError, match="locked"):
            await collect(sim3.fleet_path, tmp_path / "dest", store=store, prune=True)
        report = await collect(sim3.fleet_path, tmp_path / "dest", store=store)  # no prune: no locks needed
        assert report.ok
        assert any(r["action"] == "logs" for r in store.audit_log())
    finally:
        store.close()


# -- a real OpenSSH sshd fleet -----------------------------------------------------------------------


def _sshd_roots(fleet) -> dict[str, Path]:
    return {name: node.root for name, node in fleet.nodes.items()}


async def test_collect_and_prune_on_real_sshd(make_sshd_fleet, tmp_path):
    fleet = await asyncio.to_thread(make_sshd_fleet, 3, fleet={"ssh_overrides": SSH, "service": {"logs": LOGS}},
                                    solo=["sshd003"])
    for i, node in enumerate(fleet.nodes.values()):
        write_files(node.root, {"logs/app.log": text_log(i, 3 << 20), "logs/a b;$(touch pwned).log": b"x\n",
                                "logs/app.log.1.gz": gzip.compress(b"r\n" * 10)}, owner=fleet.pw)
    history = snapshot(_sshd_roots(fleet))
    await asyncio.to_thread(fleet.down, "sshd003")
    dest = tmp_path / "dest"
    report = await collect(fleet.fleet_path, dest, prune=True, segment=1 << 20)
    assert report.results["sshd003"].state == "unreachable"
    assert report.results["sshd001"].state == "done" and report.results["sshd002"].state == "done"
    assert_nothing_lost(history, _sshd_roots(fleet), dest)
    await asyncio.to_thread(fleet.up, "sshd003")
    report = await collect(fleet.fleet_path, dest, prune=True)
    assert report.ok, report.to_json()
    assert_nothing_lost(history, _sshd_roots(fleet), dest)
    assert all(not list((n.root / "logs").iterdir()) for n in fleet.nodes.values())
    assert not list(fleet.share_dir.rglob("pwned"))


@pytest.mark.slow
async def test_few_hundred_mb_with_prune_kill_and_a_writer_on_real_sshd(make_sshd_fleet, tmp_path):
    """The issue's definition of done, on real sshd nodes: ~300 MB across 4 nodes collected with
    --prune, the console SIGKILLed mid-way and run again, a log appended to all along: every
    byte kept (checked against the nodes' originals), the growing log never deleted."""
    fleet = await asyncio.to_thread(make_sshd_fleet, 4, fleet={"ssh_overrides": SSH, "service": {"logs": LOGS}})
    block = text_log(7, 4 << 20)
    for i, node in enumerate(fleet.nodes.values()):
        files = {f"logs/part{j}.log": bytes([65 + i + j]) + block[1:] for j in range(12)}
        files["logs/big.log"] = (block * 6)[: 20 << 20] + os.urandom(1 << 20)
        files["logs/current.log"] = text_log(i, 1 << 20)
        write_files(node.root, files, owner=fleet.pw)
    history = snapshot(_sshd_roots(fleet))
    current = fleet.nodes["sshd002"].root / "logs" / "current.log"
    stop = asyncio.Event()

    async def writer():
        with open(current, "ab") as f:
            n = 0
            while not stop.is_set():
                f.write(b"still writing %d\n" % n)
                f.flush()
                n += 1
                await asyncio.sleep(0.005)

    dest = tmp_path / "dest"
    argv = ["logs", str(fleet.fleet_path), "--dest", str(dest), "--prune", "--json", "--segment", "4",
            "--state", str(tmp_path / "state")]
    task = asyncio.ensure_future(writer())
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pltui", *argv,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _wait_for_partial(dest, 6 << 20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert_nothing_lost(history, _sshd_roots(fleet), dest)
        code, out, err = await cli(*argv)
    finally:
        stop.set()
        await task
    elapsed = time.monotonic() - started
    assert code == 0, err.decode()
    doc = json.loads(out)
    assert doc["ok"]
    kept_bytes = sum(len(data) for name in fleet.names for copies in collected(dest, name).values()
                     for _, data in copies)
    assert kept_bytes >= (4 * 70) << 20
    assert_nothing_lost(history, _sshd_roots(fleet), dest)
    assert current.exists(), "the log being written was deleted"
    files = {f["shown"]: f for f in doc["nodes"]["sshd002"]["files"]}
    assert files["logs/current.log"]["prune"] == "kept"
    for name, node in fleet.nodes.items():
        left = sorted(p.name for p in (node.root / "logs").iterdir())
        assert left == (["current.log"] if name == "sshd002" else []), (name, left)
    assert elapsed < 60
