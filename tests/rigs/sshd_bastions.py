"""Real OpenSSH bastions on loopback in front of an sshd fleet whose nodes refuse direct
connections, for jump-host (ProxyJump) tests.

::

    nodes = GatedSshdFleet.start(200, tmp / "nodes")      # AllowUsers USER@127.0.0.1 only
    rig = Bastions(nodes, tmp / "bastions")
    b1 = rig.add("b1", "127.0.9.1"); b6 = rig.add("b6", "::1")
    rig.write_known_hosts()                                 # nodes' and bastions' keys
    rig.write_ssh_config(tmp / "ssh_config", {"sshd001": "b1"})
    rig.accepted("b1")                                      # client logins the bastion saw
    rig.down("b1"); rig.up("b1"); rig.freeze("b1"); rig.thaw("b1")
    rig.set_host_key("b1"); rig.stop()

How "nodes refuse direct connections" is made real on one loopback: a bastion's forwarded
(direct-tcpip) connection to a node comes from the bastion sshd itself, and the kernel gives
it the source address 127.0.0.1. The nodes accept their login user only from 127.0.0.1
(`AllowUsers user@127.0.0.1`), while the client's ssh_config binds its own connections to
CLIENT_SOURCE (`BindAddress`): a connection the client makes straight to a node is refused
(authentication denied), one forwarded by a bastion is accepted. Bastions log at INFO, so
every client login they accept is counted from their log ("Accepted publickey ...").

Every process is started here and ended by PID (stop()); nothing else is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from pltui.demo.nodesim import known_hosts_entry, kill_pids, write_private_key
from rigs.sshd_fleet import SshdError, SshdFleet, _descendants, free_port, _proc_state, listening_rows

CLIENT_SOURCE = "127.0.0.254"  # the client's own source address (node addresses end at .251)
BASTION_SOURCE = "127.0.0.1"   # where a bastion's forwarded connections come from


class GatedSshdFleet(SshdFleet):
    """An SshdFleet whose nodes let the login user in only from BASTION_SOURCE."""

    def _config(self, inst, *args, **kwargs) -> str:
        text = super()._config(inst, *args, **kwargs)
        gated = text.replace(f"\nAllowUsers {self.user}\n", f"\nAllowUsers {self.user}@{BASTION_SOURCE}\n")
        if gated == text:
            raise SshdError("cannot restrict the nodes' AllowUsers line")
        return gated


@dataclass
class Bastion:
    name: str
    host: str  # "127.0.9.1" or "::1"
    port: int
    key: asyncssh.SSHKey  # presented now
    trusted_key: asyncssh.SSHKey  # what known_hosts lists
    proc: subprocess.Popen | None = None
    log_offset: int = 0

    @property
    def spec(self) -> str:
        """OpenSSH form for ProxyJump (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _listening(pid: int) -> set[int]:
    """Ports on which process `pid` holds a listening TCP socket (IPv4 or IPv6)."""
    return {port for table in ("tcp", "tcp6") for _, port in listening_rows(pid, table)}


class Bastions:
    """Bastion sshd processes (one each) sharing the node fleet's login user and client key."""

    def __init__(self, fleet: SshdFleet, base_dir: str | os.PathLike):
        self.fleet = fleet
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.bastions: dict[str, Bastion] = {}

    def add(self, name: str, host: str) -> Bastion:
        key = asyncssh.generate_private_key("ssh-ed25519")
        bastion = Bastion(name, host, free_port(host), key, key)
        self.bastions[name] = bastion
        self.up(name)
        return bastion

    def _config(self, b: Bastion) -> Path:
        key_path = self.base_dir / f"{b.name}.key"
        write_private_key(b.key, key_path)
        listen = f"[{b.host}]:{b.port}" if ":" in b.host else f"{b.host}:{b.port}"
        lines = [
            f"ListenAddress {listen}",
            f"HostKey {key_path}",
            f"PidFile {self.base_dir / (b.name + '.pid')}",
            f"AuthorizedKeysFile {self.fleet.authorized_keys_path}",
            f"AllowUsers {self.fleet.user}",
            "PermitRootLogin no", "StrictModes no", "UsePAM no", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "HostbasedAuthentication no",
            "MaxStartups 1000:30:1000", "LoginGraceTime 30", "LogLevel INFO", "UseDNS no",
            "AllowTcpForwarding local", "PermitListen none", "X11Forwarding no", "AllowAgentForwarding no",
            "PermitTTY no", "ForceCommand /bin/false",  # a bastion forwards; it runs nothing
            *self.fleet._options,
        ]
        path = self.base_dir / f"{b.name}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _log(self, b: Bastion) -> Path:
        return self.base_dir / f"{b.name}.log"

    def up(self, name: str, timeout: float = 20.0) -> None:
        """Start (or restart) the bastion's sshd and wait until it listens (read from /proc)."""
        b = self.bastions[name]
        self.down(name)
        config = self._config(b)
        with open(self._log(b), "ab") as log:
            b.log_offset = log.tell()
            b.proc = subprocess.Popen([self.fleet.sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while b.port not in _listening(b.proc.pid):
            if b.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._log(b).read_bytes()[b.log_offset:][-1500:].decode("utf-8", "replace")
                self.down(name)
                raise SshdError(f"bastion {name} sshd does not listen on {b.spec}:\n{tail}")
            time.sleep(0.01)

    def down(self, name: str) -> None:
        """Stop the bastion's sshd and its sessions (connections get ECONNREFUSED from now)."""
        b = self.bastions[name]
        proc, b.proc = b.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGSTOP)  # no new sessions while its family is listed
            for _ in range(100):
                if _proc_state(proc.pid) in ("T", "t", "Z", ""):
                    break
                time.sleep(0.002)
            family = _descendants(proc.pid)
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            kill_pids(family, grace=0.5)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
                os.kill(proc.pid, signal.SIGCONT)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2)
        else:
            proc.wait()

    def _signal(self, name: str, sig: int) -> None:
        b = self.bastions[name]
        if b.proc is None:
            return
        for pid in [b.proc.pid, *_descendants(b.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def freeze(self, name: str) -> None:
        """SIGSTOP the bastion (listener and sessions): TCP stays open, nothing answers."""
        self._signal(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)

    def set_host_key(self, name: str, key: asyncssh.SSHKey | None = None) -> None:
        """Restart the bastion presenting another key; known_hosts keeps the trusted one."""
        b = self.bastions[name]
        b.key = key or asyncssh.generate_private_key("ssh-ed25519")
        self.up(name)

    def accepted(self, name: str) -> int:
        """Client logins this bastion's sshd has accepted since it was (re)started."""
        b = self.bastions[name]
        with contextlib.suppress(OSError):
            return self._log(b).read_bytes()[b.log_offset:].count(b"Accepted publickey")
        return 0

    def write_known_hosts(self) -> Path:
        """The fleet's known_hosts plus every bastion's trusted key."""
        path = self.fleet.write_known_hosts()
        with open(path, "a") as f:
            for b in self.bastions.values():
                f.write(known_hosts_entry(b.host, b.port, b.trusted_key))
        return path

    def write_ssh_config(self, path: str | os.PathLike, jumps: dict[str, str] | None = None) -> Path:
        """An ssh_config binding the client to CLIENT_SOURCE for IPv4 loopback, with a
        `Host ... / ProxyJump SPEC` block per spec in `jumps` (node name -> ProxyJump)."""
        by_spec: dict[str, list[str]] = {}
        for name, spec in (jumps or {}).items():
            by_spec.setdefault(spec, []).append(self.fleet.nodes[name].host)
        lines = []
        for spec, hosts in by_spec.items():
            lines += [f"Host {' '.join(hosts)}", f"  ProxyJump {spec}", ""]
        lines += ["Host 127.*", f"  BindAddress {CLIENT_SOURCE}", ""]
        path = Path(path)
        path.write_text("\n".join(lines))
        return path

    def stop(self) -> None:
        for name in self.bastions:
            self.down(name)
