"""Login shells for real-sshd test nodes: one node per shell, so node scripts are proven portable.

pltui runs every node script as ``/bin/sh -s`` or ``/bin/sh FILE`` (an absolute path, on purpose:
a node's login shell may be anything), and the login shell only interprets the short wrapper
command sshd hands it (``SHELL -c 'cd ROOT && exec timeout ... /bin/sh -c ...'``). A node "whose
shell is X" must therefore have X as *both* its login shell and its ``/bin/sh``, as on real
systems (Debian: dash, RHEL: bash as sh, Alpine: busybox ash, Android: mksh). The rig does both:

- each shell has its own login user ``pltui-sh-KEY`` (``useradd``, password ``*``) whose login
  shell is that shell, invoked under the name ``sh`` where the shell has a POSIX mode keyed on its
  name (bash as ``sh`` is bash's POSIX mode);
- the node's sshd runs in its own mount namespace (``unshare --mount``) with that shell
  bind-mounted over ``/bin/sh`` (which follows Debian's symlink to dash: inside the namespace
  ``/usr/bin/dash`` is the shell too, nothing else changes);
- where the shell needs its own ``PATH`` (busybox: only a directory of busybox applet symlinks;
  ``nosha``: dash with every system tool but ``sha256sum``), the login shell is a small wrapper
  that sets ``PATH`` and execs the shell. sshd's ``SetEnv`` cannot do it per user: only the first
  ``SetEnv`` line counts and the fleet's global one (the process marker) comes first.

Everything shared lives in ``/usr/local/lib/pltui-test/`` (rebuilt idempotently, atomically,
under a lock: parallel test workers share it). Building it needs root; `prepare` raises
`ShellUnavailable` with a one-line reason otherwise, or when a shell is not installed, and the
tests turn that into a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LIB = Path("/usr/local/lib/pltui-test")
SYSTEM_BIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
USER_PREFIX = "pltui-sh-"


class ShellUnavailable(RuntimeError):
    """This shell node cannot be built here (message: why, in one line)."""


@dataclass(frozen=True)
class NodeShell:
    """One kind of node shell.

    key: short name (``dash``), also in the user name; binary: the shell executable (must be
    installed; bind-mounted over /bin/sh unless bind_sh is False); path_dir: the login PATH's
    directory under LIB (None: sshd's default PATH), holding symlinks to every system tool but
    `hidden`, or with `applets` to busybox applets only.
    """

    key: str
    binary: str
    note: str
    path_dir: str | None = None  # name of the PATH directory under LIB (None: sshd's default PATH)
    hidden: tuple[str, ...] = ()
    applets: bool = False
    as_sh: bool = False  # log in through a symlink named `sh` (POSIX mode keyed on argv[0])
    bind_sh: bool = True  # make it the node's /bin/sh too (False: login shell only, /bin/sh stays)

    @property
    def user(self) -> str:
        return USER_PREFIX + self.key

    @property
    def path(self) -> str | None:
        return str(LIB / self.path_dir) if self.path_dir else None

    @property
    def login(self) -> str:
        """The login shell registered for the user."""
        if self.path_dir:
            return str(LIB / f"login-{self.key}")
        if self.as_sh:
            return str(LIB / f"as-sh-{self.key}" / "sh")
        return self.binary


SHELLS: dict[str, NodeShell] = {s.key: s for s in (
    NodeShell("dash", "/bin/dash", "Debian's /bin/sh"),
    NodeShell("bash", "/bin/bash", "bash invoked as sh (POSIX mode), RHEL's /bin/sh", as_sh=True),
    NodeShell("busybox", "/bin/busybox", "busybox ash with only busybox applets on PATH (Alpine)",
              path_dir="busybox-bin", applets=True),
    NodeShell("mksh", "/bin/mksh", "mksh invoked as sh (Android's /system/bin/sh)", as_sh=True),
    # posh as /bin/sh cannot run pltui: it rejects `sh -s` ("posh: -s: unknown option"), which
    # is how pltui feeds every node script (probe, release, logs, capture). No system ships posh
    # as /bin/sh; its node is a posh *login* shell (it runs pltui's command wrappers) over dash.
    NodeShell("posh", "/bin/posh", "posh as the login shell (/bin/sh stays dash: posh has no -s)",
              bind_sh=False),
    NodeShell("yash", "/usr/bin/yash", "yash invoked as sh (POSIX mode)", as_sh=True),
    NodeShell("nosha", "/bin/dash", "dash with GNU tools but no sha256sum on PATH",
              path_dir="nosha-bin", hidden=("sha256sum",)),
)}


def _write_atomic(path: Path, text: str, mode: int) -> None:
    with contextlib.suppress(OSError):
        if path.read_text() == text and (os.stat(path).st_mode & 0o777) == mode:
            return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _symlink(target: str, link: Path) -> None:
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _busybox_applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise ShellUnavailable(f"{busybox} --list failed: {out.stderr.strip()[:200]}")
    return [a for a in out.stdout.split() if a and "/" not in a]


def system_tools(hidden: tuple[str, ...]) -> dict[str, str]:
    """name -> path of every executable in the system PATH, first one wins, minus `hidden`."""
    tools: dict[str, str] = {}
    for d in SYSTEM_BIN:
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(d)):
                path = os.path.join(d, entry)
                if entry not in tools and entry not in hidden and os.access(path, os.X_OK) \
                        and not os.path.isdir(path):
                    tools[entry] = path
    return tools


def _build_path_dir(shell: NodeShell) -> None:
    d = LIB / (shell.path_dir or "")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    if shell.applets:
        wanted = {a: shell.binary for a in _busybox_applets(shell.binary)}
    else:
        wanted = system_tools(shell.hidden)
    for name in set(os.listdir(d)) - set(wanted):
        with contextlib.suppress(OSError):
            os.unlink(d / name)
    for name, target in wanted.items():
        _symlink(target, d / name)


def _build_login(shell: NodeShell) -> None:
    if shell.path_dir:
        _build_path_dir(shell)
        run = f"exec {shell.binary} ash \"$@\"" if shell.applets else f"exec {shell.binary} \"$@\""
        interp = f"{shell.binary} ash" if shell.applets else shell.binary
        _write_atomic(Path(shell.login), f"#!{interp}\n# pltui test node login shell ({shell.note})\n"
                                         f"PATH={shell.path}\nexport PATH\n{run}\n", 0o755)
    elif shell.as_sh:
        d = Path(shell.login).parent
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        _symlink(shell.binary, Path(shell.login))


def _ensure_user(shell: NodeShell) -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(shell.user)
    except KeyError:
        # '*' (not '!'): sshd without PAM refuses accounts whose password is locked
        out = subprocess.run(["useradd", "-m", "-s", shell.login, "-p", "*", shell.user],
                             capture_output=True, text=True, timeout=30)
        try:
            return pwd.getpwnam(shell.user)
        except KeyError:
            raise ShellUnavailable(f"cannot create user {shell.user}: {out.stderr.strip()[:200]}") from None
    if pw.pw_shell != shell.login:
        subprocess.run(["usermod", "-s", shell.login, shell.user], capture_output=True, timeout=30)
        pw = pwd.getpwnam(shell.user)
    return pw


@functools.lru_cache(maxsize=1)
def namespaces_work() -> str:
    """"" when this process may run a command in a new mount namespace with a bind mount over
    /bin/sh, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (useradd, and a mount namespace to make the node's /bin/sh its shell)"
    if shutil.which("unshare") is None:
        return "unshare(1) (util-linux) is not installed"
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                          'mount --bind "$0" /bin/sh', "/bin/sh"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return f"cannot bind-mount over /bin/sh in a mount namespace: {out.stderr.strip()[:200]}"
    return ""


def prepare(key: str) -> tuple[NodeShell, pwd.struct_passwd]:
    """Build shell `key`'s login shell, PATH directory and user. ShellUnavailable says why not."""
    shell = SHELLS.get(key)
    if shell is None:
        raise ShellUnavailable(f"unknown test shell {key!r} (known: {', '.join(SHELLS)})")
    if not os.access(shell.binary, os.X_OK):
        raise ShellUnavailable(f"{shell.key}: {shell.binary} is not installed (scripts/test.sh installs it)")
    reason = namespaces_work()
    if reason:
        raise ShellUnavailable(f"{shell.key}: {reason}")
    LIB.mkdir(parents=True, exist_ok=True)
    os.chmod(LIB, 0o755)
    lock_path = os.path.join(tempfile.gettempdir(), "pltui-test-shells.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers share LIB and the users
        try:
            _build_login(shell)
            pw = _ensure_user(shell)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return shell, pw


def sshd_argv(shell: NodeShell, argv: list[str]) -> list[str]:
    """`argv` (an sshd command line) run in a new mount namespace where /bin/sh is the shell."""
    if not shell.bind_sh:
        return argv
    script = 'mount --bind "$0" /bin/sh || exit 1; exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, shell.binary, *argv]
