"""A fleet of real OpenSSH sshd nodes on loopback, for integration tests and benchmarks.

::

    fleet = SshdFleet.start(50, tmp / "sshd")           # blocking; ~tens of ms per sshd
    fleet.write_fleet(tmp / "fleet.toml", service={...})
    fleet.down("sshd007"); fleet.up("sshd007")          # node unreachable / back
    fleet.set_host_key("sshd003")                       # presents another key (mismatch)
    fleet.restore_host_key("sshd003")
    fleet.stop()

Node *i* (``sshd001``...) listens on its own address ``127.0.X.Y`` (127.0.0.2, 127.0.0.3, ...)
and a free port; one sshd process serves up to 16 nodes (sshd's ListenAddress limit), and every
sshd has its own ed25519 host key (nodes of one sshd share it). ``BASE/known_hosts`` lists every
``[127.0.X.Y]:PORT`` with its key; ``BASE/client_ed25519`` is the one accepted client key.

The login user: the current user, except as root, where it is ``pltui-test`` (created with
``useradd -m -s /bin/sh`` if missing) because root's ~/.bashrc costs ~90 ms per exec here. Node
roots are owned by the login user. When BASE is not traversable by that user (pytest's
/tmp/pytest-of-root is 0700), roots and authorized_keys live in a private ``/tmp/pltui-sshd-*``
directory instead (``fleet.share_dir``, removed by stop(); ``BASE/nodes`` links to it).

Shell nodes (portability tests): ``start(n, base, shells={"sshd001": "busybox", ...})`` gives each
named node its own login user ``pltui-sh-KEY`` whose login shell is that shell, and its own sshd
run in a mount namespace where /bin/sh is that shell (`rigs.testshells`; needs root; a shell
that cannot be had raises `ShellUnavailable`, which tests turn into a skip). `node.user` then
names the node's login user, the fleet file gets it per node, `connect_options` uses it, and
`node_pw(name)` is the owner of the node's root.

Readiness is read from /proc (the sshd's own listening sockets), never by a TCP connect:
OpenSSH >= 9.8 penalises sources that connect without authenticating.

`down`, `up`, `set_host_key`, `restore_host_key` and `isolate` give a node its own sshd
first (restarting the sshd it shared, which drops its neighbours' open connections); pass
``solo=[names]`` to `start` to give planted-fault nodes their own sshd from the beginning.
All methods block briefly (sshd start ~10-30 ms); from async code call them through
``asyncio.to_thread``. stop() ends only the sshd processes this fleet started (and their
session children), by PID, then any process carrying the fleet's ``PLTUI_TESTFLEET`` marker
(set with sshd's SetEnv), e.g. a detached node monitor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import asyncssh

from pltui.limits import raise_nofile_limit
from rigs import testshells
from rigs.testshells import NodeShell
from pltui.demo.nodesim import (
    FleetFiles,
    MARKER_ENV,
    kill_marked,
    kill_pids,
    node_names,
    proc_stat,
    public_line,
    write_private_key,
)

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")
LOGIN_USER = "pltui-test"
MAX_LISTEN = 16  # OpenSSH's MAX_LISTEN_SOCKS
PORT_RANGE = (20000, 32000)  # below the usual ephemeral range (32768-60999)
OPTIONAL_OPTIONS = ("PerSourcePenalties no",)  # written only when this sshd accepts them


class SshdError(RuntimeError):
    """An sshd could not be started (message includes its log tail)."""


def find_sshd() -> str | None:
    """Absolute path of the OpenSSH server, or None when it is not installed."""
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("sshd")
    return os.path.abspath(found) if found else None


def sshd_version(sshd: str) -> str:
    """E.g. "OpenSSH_9.2p1 Debian-2+deb12u10" ("" when unknown)."""
    for argv in ([sshd, "-V"], ["ssh", "-V"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            for line in (out.stderr + out.stdout).splitlines():
                if line.startswith("OpenSSH"):
                    return line.split(",")[0].strip()
    return ""


def ensure_login_user() -> pwd.struct_passwd:
    """The user test sessions log in as: `pltui-test` (shell /bin/sh) as root, else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    lock_path = os.path.join(tempfile.gettempdir(), "pltui-test-user.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers may both get here
        try:
            try:
                pw = pwd.getpwnam(LOGIN_USER)
            except KeyError:
                # '*' (not '!'): sshd without PAM refuses accounts whose password is locked
                out = subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", LOGIN_USER],
                                     capture_output=True, text=True, timeout=30)
                try:
                    pw = pwd.getpwnam(LOGIN_USER)
                except KeyError:
                    raise SshdError(f"cannot create user {LOGIN_USER}: {out.stderr.strip()}") from None
            if _shadow_locked(LOGIN_USER):
                subprocess.run(["usermod", "-p", "*", LOGIN_USER], capture_output=True, timeout=30)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if pw.pw_shell != "/bin/sh":
        warnings.warn(f"user {LOGIN_USER} has shell {pw.pw_shell}, not /bin/sh: execs may be slower",
                      RuntimeWarning, stacklevel=2)
    return pw


def _shadow_locked(user: str) -> bool:
    with contextlib.suppress(OSError):
        with open("/etc/shadow") as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == user and len(fields) > 1:
                    return fields[1].startswith("!")
    return False


def _traversable(path: Path, pw: pwd.struct_passwd) -> bool:
    """Can user `pw` reach into `path` (x permission on it and every ancestor)?"""
    if pw.pw_uid == 0:
        return True
    groups = {pw.pw_gid} | set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    path = path.resolve()
    for part in [path, *path.parents]:
        st = os.stat(part)
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def node_address(index: int) -> str:
    """127.0.0.2, 127.0.0.3, ... 127.0.0.251, 127.0.1.2, ... for index 0, 1, ..."""
    return f"127.0.{index // 250}.{2 + index % 250}"


def free_port(host: str = "127.0.0.1", taken: Iterable[tuple[str, int]] = ()) -> int:
    """A port in PORT_RANGE that binds on `host` (IPv4 or IPv6) now and is not in `taken`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(500):
        port = random.randint(*PORT_RANGE)
        if (host, port) in taken:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise SshdError(f"no free port on {host}")


def socket_inodes(pid: int) -> set[str]:
    """Inode numbers of the sockets process `pid` holds open (from its /proc/PID/fd links)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def listening_rows(pid: int, table: str = "tcp") -> list[tuple[str, int]]:
    """(hex address, port) of the listening sockets process `pid` holds, from /proc/PID/net/TABLE
    ("tcp" or "tcp6")."""
    inodes = socket_inodes(pid)
    rows = []
    if not inodes:
        return rows
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                    addr, port = fields[1].rsplit(":", 1)
                    rows.append((addr, int(port, 16)))
    return rows


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) pairs on which process `pid` holds a listening IPv4 TCP socket."""
    return {(socket.inet_ntoa(struct.pack("=I", int(addr, 16))), port) for addr, port in listening_rows(pid)}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
            ppid = int(data[data.rfind(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo and len(out) < 100000:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def _proc_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("" when gone)."""
    fields = proc_stat(pid)
    return fields[0].decode() if fields else ""


@dataclass
class SshdNode:
    """One node: its own address/port and root, served by sshd instance `instance`."""

    name: str
    host: str
    port: int
    root: Path
    instance: int
    host_key: asyncssh.SSHKey  # the key it presents now
    trusted_key: asyncssh.SSHKey  # the key known_hosts lists for it
    up: bool = True
    user: str | None = None  # its own login user (a shell node), else the fleet's user
    shell: NodeShell | None = None  # its login shell and /bin/sh (rigs.testshells), else the host's

    @property
    def mode(self) -> str:
        return "ok" if self.up else "down"


@dataclass
class _Instance:
    index: int
    names: list[str]
    key: asyncssh.SSHKey
    key_path: Path
    proc: subprocess.Popen | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SshdFleet(FleetFiles):
    """A running fleet of sshd processes. Build with ``SshdFleet.start(n, base_dir)``.

    Attributes: base_dir, share_dir (roots + authorized_keys), nodes (name -> SshdNode), names,
    user (login user name), sshd (path), version, token, client_key, client_key_path,
    known_hosts_path, fleet_path (set by write_fleet).
    """

    DEFAULT_NAME = "sshdfleet"

    def __init__(self, base_dir: Path, sshd: str, pw: pwd.struct_passwd):
        self.base_dir = base_dir
        self.sshd = sshd
        self.version = sshd_version(sshd)
        self.pw = pw
        self.user = pw.pw_name
        self.token = secrets.token_hex(8)
        self.nodes: dict[str, SshdNode] = {}
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = base_dir / "client_ed25519"
        self.known_hosts_path = base_dir / "known_hosts"
        self.fleet_path: Path | None = None
        self.share_dir = base_dir
        self._own_share = False
        self._instances: dict[int, _Instance] = {}
        self._next_instance = 0
        self._options: list[str] = []
        self._known_hosts: asyncssh.SSHKnownHosts | None = None
        self._stopped = False
        self._started: list[int] = []
        self._users: dict[str, pwd.struct_passwd] = {}

    # -- start ----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        n: int,
        base_dir: str | os.PathLike,
        *,
        prefix: str = "sshd",
        per_instance: int = MAX_LISTEN,
        solo: Iterable[str] = (),
        shells: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> "SshdFleet":
        """Start n nodes (`prefix001`...), at most `per_instance` per sshd; nodes named in
        `solo` get an sshd each (cheap faults later). `shells` maps node names to test shells
        (`rigs.testshells.SHELLS` keys): such a node logs in as that shell's user and its sshd
        runs alone in a mount namespace where /bin/sh is that shell. Raises SshdError (with the
        sshd log), or `ShellUnavailable` when a shell cannot be had here (tests skip on it)."""
        sshd = find_sshd()
        if sshd is None:
            raise SshdError("OpenSSH sshd is not installed (apt-get install openssh-server)")
        if n < 1:
            raise ValueError("a fleet needs at least one node")
        per_instance = max(1, min(per_instance, MAX_LISTEN))
        raise_nofile_limit(n * 2 + 64)  # a test harness: the test process is its entry point
        base_dir = Path(base_dir).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        shells = dict(shells or {})
        prepared = {key: testshells.prepare(key) for key in sorted(set(shells.values()))}
        fleet = cls(base_dir, sshd, ensure_login_user())
        try:
            fleet._prepare(n, prefix)
            unknown = set(shells) - set(fleet.nodes)
            if unknown:
                raise ValueError(f"shells names unknown nodes: {', '.join(sorted(unknown))}")
            for name, key in shells.items():
                fleet._set_shell(fleet.nodes[name], *prepared[key])
            solo = set(solo) | set(shells)
            unknown = solo - set(fleet.nodes)
            if unknown:
                raise ValueError(f"solo names unknown nodes: {', '.join(sorted(unknown))}")
            shared = [name for name in fleet.nodes if name not in solo]
            groups = [shared[i:i + per_instance] for i in range(0, len(shared), per_instance)]
            groups += [[name] for name in fleet.nodes if name in solo]
            instances = [fleet._new_instance(names) for names in groups]
            fleet._probe_options(instances[0])
            fleet._launch(instances, timeout=timeout, repick=True)
            fleet.write_known_hosts()
        except BaseException:
            fleet.stop()
            raise
        return fleet

    def _prepare(self, n: int, prefix: str) -> None:
        for sub in ("keys", "config", "logs"):
            (self.base_dir / sub).mkdir(exist_ok=True)
        write_private_key(self.client_key, self.client_key_path)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        if not _traversable(self.base_dir, self.pw):
            self.share_dir = Path(tempfile.mkdtemp(prefix="pltui-sshd-"))
            self._own_share = True
            os.chmod(self.share_dir, 0o711)
            link = self.base_dir / "nodes"
            with contextlib.suppress(OSError):
                if not link.exists():
                    link.symlink_to(self.share_dir / "nodes")
        self.authorized_keys_path = self.share_dir / "authorized_keys"
        self.authorized_keys_path.write_text(public_line(self.client_key) + "\n")
        os.chmod(self.authorized_keys_path, 0o644)
        nodes_dir = self.share_dir / "nodes"
        nodes_dir.mkdir(exist_ok=True)
        os.chmod(nodes_dir, 0o755)
        taken: set[tuple[str, int]] = set()
        for index, name in enumerate(node_names(prefix, n)):
            host = node_address(index)
            port = free_port(host, taken)
            taken.add((host, port))
            root = nodes_dir / name
            root.mkdir(exist_ok=True)
            os.chmod(root, 0o755)
            if os.geteuid() == 0:
                os.chown(root, self.pw.pw_uid, self.pw.pw_gid)
            self.nodes[name] = SshdNode(name, host, port, root, -1, None, None)  # type: ignore[arg-type]

    def _set_shell(self, node: SshdNode, shell: NodeShell, pw: pwd.struct_passwd) -> None:
        node.user, node.shell = pw.pw_name, shell
        self._users[pw.pw_name] = pw
        if os.geteuid() == 0:
            os.chown(node.root, pw.pw_uid, pw.pw_gid)

    def node_pw(self, name: str) -> pwd.struct_passwd:
        """The passwd entry of the user node `name` logs in as (owner of its root)."""
        user = self.nodes[name].user
        return self._users[user] if user else self.pw

    def _new_instance(self, names: list[str], key: asyncssh.SSHKey | None = None) -> _Instance:
        index = self._next_instance
        self._next_instance += 1
        key = key or asyncssh.generate_private_key("ssh-ed25519")
        key_path = self.base_dir / "keys" / f"host-{index:03d}"
        write_private_key(key, key_path)
        inst = _Instance(index, list(names), key, key_path)
        self._instances[index] = inst
        for name in names:
            node = self.nodes[name]
            node.instance = index
            node.host_key = key
            if node.trusted_key is None:
                node.trusted_key = key
        return inst

    def _config_path(self, inst: _Instance) -> Path:
        return self.base_dir / "config" / f"sshd-{inst.index:03d}.conf"

    def _log_path(self, inst: _Instance) -> Path:
        return self.base_dir / "logs" / f"sshd-{inst.index:03d}.log"

    def _config(self, inst: _Instance, extra: Iterable[str] = ()) -> str:
        lines = [f"# rigs.sshd_fleet instance {inst.index} ({self.version})"]
        lines += [f"ListenAddress {self.nodes[name].host}:{self.nodes[name].port}" for name in inst.names]
        lines += [
            f"HostKey {inst.key_path}",
            f"PidFile {self.base_dir / 'config' / f'sshd-{inst.index:03d}.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"AllowUsers {' '.join([self.user, *sorted(self._users)])}",
            "PermitRootLogin prohibit-password" if self.pw.pw_uid == 0 else "PermitRootLogin no",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            "MaxStartups 1000:30:1000",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "LogLevel ERROR",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding local",  # jump-host (ProxyJump) tests; loopback-only fleet
            "PermitListen none",
            "PermitUserEnvironment no",
            "AcceptEnv LANG LC_* PLTUI_*",
            f"SetEnv {MARKER_ENV}={self.token}",
            "Subsystem sftp internal-sftp",
            *self._options,
            *extra,
        ]
        return "\n".join(lines) + "\n"

    def _probe_options(self, inst: _Instance) -> None:
        """Keep only the optional options this sshd accepts (`sshd -t`), then check the config."""
        probe = self.base_dir / "config" / "probe.conf"
        for option in OPTIONAL_OPTIONS:
            probe.write_text(self._config(inst, [option]))
            if self._test_config(probe)[0]:
                self._options.append(option)
        probe.write_text(self._config(inst))
        ok, message = self._test_config(probe)
        if not ok:
            raise SshdError(f"{self.sshd} -t rejects the generated config: {message}")
        probe.unlink()

    def _test_config(self, path: Path) -> tuple[bool, str]:
        out = subprocess.run([self.sshd, "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
        return out.returncode == 0, (out.stderr + out.stdout).strip()

    def _spawn(self, inst: _Instance) -> None:
        config = self._config_path(inst)
        config.write_text(self._config(inst))
        log = open(self._log_path(inst), "ab")
        try:
            inst.extra["log_offset"] = log.tell()
            argv = [self.sshd, "-D", "-e", "-f", str(config)]
            shells = {self.nodes[name].shell for name in inst.names} - {None}
            if len(shells) > 1:
                raise SshdError(f"sshd instance {inst.index} serves nodes of different shells")
            if shells:
                argv = testshells.sshd_argv(shells.pop(), argv)  # type: ignore[arg-type]
            inst.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            )
            self._started.append(inst.proc.pid)
        finally:
            log.close()

    def _log_tail(self, inst: _Instance) -> str:
        with contextlib.suppress(OSError):
            with open(self._log_path(inst), "rb") as f:
                f.seek(inst.extra.get("log_offset", 0))
                return f.read()[-2000:].decode("utf-8", "replace").strip()
        return ""

    def _launch(self, instances: list[_Instance], *, timeout: float, repick: bool) -> None:
        """Start instances and wait until each listens on all its pairs. With repick, nodes whose
        port was taken meanwhile get another port; otherwise their bind is retried."""
        pending = list(instances)
        deadline = time.monotonic() + timeout
        for attempt in range(8):
            for inst in pending:
                self._spawn(inst)
            failed = []
            for inst in pending:
                missing = self._wait_ready(inst, deadline)
                if missing:
                    failed.append((inst, missing))
            if not failed:
                return
            pending = []
            for inst, missing in failed:
                self._stop_instance(inst)
                if time.monotonic() >= deadline or attempt == 7:
                    raise SshdError(f"sshd instance {inst.index} does not listen on "
                                    f"{', '.join(f'{h}:{p}' for h, p in sorted(missing))}:\n{self._log_tail(inst)}")
                if repick:
                    taken = {(n.host, n.port) for n in self.nodes.values()}
                    for name in inst.names:
                        node = self.nodes[name]
                        if (node.host, node.port) in missing:
                            node.port = free_port(node.host, taken)
                            taken.add((node.host, node.port))
                else:
                    time.sleep(0.2)
                pending.append(inst)

    def _wait_ready(self, inst: _Instance, deadline: float) -> set[tuple[str, int]]:
        """Wait until the sshd listens on every pair; return the pairs still missing."""
        want = {(self.nodes[name].host, self.nodes[name].port) for name in inst.names}
        assert inst.proc is not None
        delay = 0.002
        while True:
            got = listening_sockets(inst.proc.pid)
            if want <= got:
                return set()
            exited = inst.proc.poll() is not None
            log = self._log_tail(inst)
            if exited or "Bind to port" in log or "Cannot bind" in log or time.monotonic() >= deadline:
                if exited and "Bind to port" not in log and "Cannot bind" not in log:
                    raise SshdError(f"sshd instance {inst.index} exited with status "
                                    f"{inst.proc.returncode}:\n{log}")
                return want - got
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # -- stop -----------------------------------------------------------------------------

    def _stop_instance(self, inst: _Instance, grace: float = 2.0) -> None:
        proc, inst.proc = inst.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # freeze the listener so it forks no new session while we list its family
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGSTOP)
            for _ in range(100):
                if _proc_state(proc.pid) in ("T", "t", "Z", ""):
                    break
                time.sleep(0.002)
            family = _descendants(proc.pid)  # per-connection sshd and the commands they run
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
                os.kill(proc.pid, signal.SIGCONT)
            kill_pids(family, grace=0.5)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        else:
            proc.wait()

    @property
    def pids(self) -> list[int]:
        """PIDs of the sshd processes running now."""
        return [i.proc.pid for i in self._instances.values() if i.proc is not None and i.proc.poll() is None]

    @property
    def all_pids(self) -> list[int]:
        """Every sshd PID this fleet ever started (for "did they all go?" checks)."""
        return list(self._started)

    def stop(self) -> None:
        """Stop every sshd this fleet started (SIGTERM, then SIGKILL), by PID, and wait; then
        kill leftovers of its sessions (marked processes) and remove the private share dir."""
        for inst in self._instances.values():
            self._stop_instance(inst)
        left = kill_marked(self.token)
        if left:
            warnings.warn(f"SshdFleet.stop: processes {left} did not die", RuntimeWarning, stacklevel=2)
        if self._own_share and not self._stopped:
            shutil.rmtree(self.share_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.base_dir / "nodes").unlink()
        self._stopped = True

    def __enter__(self) -> "SshdFleet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- planted faults ---------------------------------------------------------------------

    def isolate(self, name: str) -> None:
        """Give node `name` its own sshd (restarting the sshd it shared). No-op when alone."""
        node = self.nodes[name]
        inst = self._instances[node.instance]
        if len(inst.names) == 1:
            return
        self._stop_instance(inst)
        inst.names.remove(name)
        alone = self._new_instance([name], key=inst.key)
        self._launch([i for i in (inst, alone) if self._is_up(i)], timeout=20, repick=False)

    def _is_up(self, inst: _Instance) -> bool:
        return all(self.nodes[name].up for name in inst.names)

    def down(self, name: str) -> None:
        """Make the node unreachable (its sshd stops; connect gets ECONNREFUSED) and drop its
        open sessions."""
        node = self.nodes[name]
        self.isolate(name)
        node.up = False
        self._stop_instance(self._instances[node.instance])

    def up(self, name: str) -> None:
        """Bring a node taken down back, on the same address and port."""
        node = self.nodes[name]
        if node.up:
            return
        node.up = True
        self._launch([self._instances[node.instance]], timeout=20, repick=False)

    def set_host_key(self, name: str, key: asyncssh.SSHKey | None = None) -> asyncssh.SSHKey:
        """Restart the node's (own) sshd presenting another host key; known_hosts keeps the
        trusted one, so strict clients see a mismatch. Returns the key now presented."""
        node = self.nodes[name]
        self.isolate(name)
        old = self._instances[node.instance]
        self._stop_instance(old)
        del self._instances[old.index]
        new = self._new_instance([name], key=key or asyncssh.generate_private_key("ssh-ed25519"))
        if node.up:
            self._launch([new], timeout=20, repick=False)
        return node.host_key

    def restore_host_key(self, name: str) -> None:
        """Present the trusted (known_hosts) key again."""
        node = self.nodes[name]
        if node.host_key is not node.trusted_key:
            self.set_host_key(name, node.trusted_key)

    # -- files and clients ------------------------------------------------------------------

    @staticmethod
    def trusted_key(node: "SshdNode") -> asyncssh.SSHKey:
        return node.trusted_key  # what known_hosts holds, even while a node presents another key
