"""Release bundles: a directory or a .tar.gz holding the service files and a VERSION file.

`Bundle.open(path, workdir)` validates the bundle and writes it once, locally, as a normalised,
deterministic .tar.gz (the same input always gives the same bytes, hence the same sha256):

- members sorted by name, owner 0:0 with no user/group names, permission bits kept (& 0o777),
  integer mtimes kept, gzip header without name or time, GNU tar format (busybox tar reads it);
- a tarball whose files all sit under one top-level directory that holds the VERSION file
  (``myservice-1.2/VERSION``) is unwrapped: that directory's contents become the release;
- only regular files, directories and symbolic links are allowed; a hard link in a tarball is
  stored as a copy of its target;
- refused, with one line naming the path and the member: absolute names, ``..`` components,
  symbolic links that are absolute or lead outside the bundle, devices and FIFOs, duplicate
  names, a top-level ``.pltui`` (pltui's own directory on the node) and top-level names outside
  ``[A-Za-z0-9._+@%,=~-]`` (the node-side script handles top-level entries by name);
- the version is the first line of the version file (``VERSION``, or the fleet's
  ``[service].version_file``), stripped: non-empty, printable, at most 120 characters.

The node extracts the tarball (`pltui/node/release.sh prepare`), which is why every member is
checked here; the sha256 is verified on the node before anything is touched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pltui.sanitize import clean_line

MAX_VERSION = 120
TOP_NAME = re.compile(r"^[A-Za-z0-9._+@%,=~-]+$")
RESERVED = {".pltui"}


class BundleError(Exception):
    """The bundle cannot be used; the message is one line naming the path."""


@dataclass(frozen=True)
class Bundle:
    source: str            # what the operator gave (directory or tarball)
    tarball: Path          # the normalised .tar.gz pltui uploads
    sha256: str
    size: int
    version: str
    entries: tuple[str, ...]   # top-level entries of the release
    files: int

    def to_json(self) -> dict:
        return {"source": self.source, "tarball": str(self.tarball), "sha256": self.sha256, "size": self.size,
                "version": self.version, "entries": list(self.entries), "files": self.files}

    @classmethod
    def from_json(cls, data: dict) -> "Bundle":
        return cls(source=data["source"], tarball=Path(data["tarball"]), sha256=data["sha256"], size=int(data["size"]),
                   version=data["version"], entries=tuple(data["entries"]), files=int(data.get("files", 0)))

    def check(self) -> None:
        """The local tarball is still there with the recorded sha256 (before a resume)."""
        try:
            digest, size = _digest(self.tarball)
        except OSError as exc:
            raise BundleError(f"{self.tarball}: bundle tarball of this rollout is gone ({exc.strerror or exc})") from None
        if digest != self.sha256:
            raise BundleError(f"{self.tarball}: bundle tarball changed since the rollout started (sha256 {digest[:12]}..., "
                              f"expected {self.sha256[:12]}...)")

    @classmethod
    def open(cls, path: str | os.PathLike, workdir: str | os.PathLike, *, version_file: str = "VERSION") -> "Bundle":
        """Validate a bundle and write its normalised tarball into `workdir` (named by sha256)."""
        src = Path(path).expanduser()
        label = str(path)
        version_file = posixpath.normpath(version_file.strip("/"))
        if not src.exists():
            raise BundleError(f"{label}: no such bundle (give a directory or a .tar.gz)")
        if src.is_dir():
            members = _from_directory(src, label)
        elif src.is_file():
            members = _from_tarball(src, label)
        else:
            raise BundleError(f"{label}: not a directory or a .tar.gz file")
        members = _unwrap(members, version_file)
        _validate(members, label)
        version = _version(members, version_file, label)
        final, digest, size = _store_tarball(members, Path(workdir), label)
        entries = tuple(sorted({m.name.split("/", 1)[0] for m in members}))
        return cls(source=str(src.resolve()), tarball=final, sha256=digest, size=size, version=version,
                   entries=entries, files=sum(1 for m in members if m.kind == "file"))


# --------------------------------------------------------------------------------------------
# Members: a neutral form of what goes into the tarball


@dataclass
class _Member:
    name: str            # relative, normalised, no leading ./
    kind: str            # file, dir, link
    mode: int
    mtime: int
    data: bytes | None = None          # file contents (read lazily for directories)
    path: Path | None = None           # file on disk (directory bundles)
    target: str | None = None          # symlink target

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def _norm(name: str, label: str) -> str:
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise BundleError(f"{label}: member {clean_line(name, 80)!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError(f"{label}: member {clean_line(name, 80)!r} climbs out of the bundle ('..')")
    return "/".join(parts)


def _from_directory(src: Path, label: str) -> list[_Member]:
    members: list[_Member] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = base / name
            rel = full.relative_to(src).as_posix()
            try:
                st = os.lstat(full)
            except OSError as exc:
                raise BundleError(f"{label}: cannot read {rel}: {exc.strerror or exc}") from None
            mode = stat.S_IMODE(st.st_mode) & 0o777
            if stat.S_ISLNK(st.st_mode):
                members.append(_Member(rel, "link", 0o777, int(st.st_mtime), target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                members.append(_Member(rel, "dir", mode, int(st.st_mtime)))
            elif stat.S_ISREG(st.st_mode):
                if not os.access(full, os.R_OK):
                    raise BundleError(f"{label}: cannot read {rel}: permission denied")
                members.append(_Member(rel, "file", mode, int(st.st_mtime), path=full))
            else:
                raise BundleError(f"{label}: {rel} is not a regular file, directory or symbolic link")
        # symlinked directories are listed (as links) but never walked into: followlinks=False
    return members


def _from_tarball(src: Path, label: str) -> list[_Member]:
    try:
        with open(src, "rb") as f:
            magic = f.read(2)
    except OSError as exc:
        raise BundleError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if magic != b"\x1f\x8b" and not tarfile.is_tarfile(src):
        raise BundleError(f"{label}: not a directory or a .tar.gz bundle (no gzip/tar header)")
    members: list[_Member] = []
    try:
        with tarfile.open(src, "r:*") as tar:
            infos = tar.getmembers()
            by_name = {}
            for info in infos:
                by_name[_norm(info.name, label)] = info
            for info in infos:
                name = _norm(info.name, label)
                if not name:
                    continue  # "./" itself
                mode = info.mode & 0o777
                if info.isdir():
                    members.append(_Member(name, "dir", mode, int(info.mtime)))
                elif info.issym():
                    members.append(_Member(name, "link", 0o777, int(info.mtime), target=info.linkname))
                elif info.islnk():
                    target = _norm(info.linkname, label)
                    real = by_name.get(target)
                    if real is None or not real.isfile():
                        raise BundleError(f"{label}: hard link {clean_line(name, 80)!r} points to "
                                          f"{clean_line(info.linkname, 80)!r}, not a file in the bundle")
                    data = tar.extractfile(real).read()
                    members.append(_Member(name, "file", real.mode & 0o777, int(real.mtime), data=data))
                elif info.isfile():
                    members.append(_Member(name, "file", mode, int(info.mtime), data=tar.extractfile(info).read()))
                else:
                    raise BundleError(f"{label}: member {clean_line(name, 80)!r} is a device or FIFO; only files, "
                                      f"directories and symbolic links are allowed")
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile, ValueError) as exc:
        raise BundleError(f"{label}: not a readable .tar.gz bundle: {clean_line(str(exc), 120)}") from None
    return members


def _unwrap(members: list[_Member], version_file: str) -> list[_Member]:
    """`name-1.2/VERSION ...` -> `VERSION ...` when everything sits under one directory."""
    names = {m.name for m in members}
    if version_file in names:
        return members
    tops = {m.name.split("/", 1)[0] for m in members}
    if len(tops) != 1:
        return members
    top = tops.pop()
    if f"{top}/{version_file}" not in names:
        return members
    out = []
    for m in members:
        if m.name == top:
            continue
        m.name = m.name[len(top) + 1:]
        out.append(m)
    return out


def _validate(members: list[_Member], label: str) -> None:
    if not members:
        raise BundleError(f"{label}: the bundle is empty")
    seen: set[str] = set()
    kinds = {m.name: m.kind for m in members}
    for m in members:
        if m.name in seen:
            raise BundleError(f"{label}: member {clean_line(m.name, 80)!r} appears twice")
        seen.add(m.name)
        top = m.name.split("/", 1)[0]
        if top in RESERVED:
            raise BundleError(f"{label}: the bundle may not hold {top!r} (pltui's own directory on the node)")
        if not TOP_NAME.match(top) or top in (".", ".."):
            raise BundleError(f"{label}: top-level name {clean_line(top, 80)!r} is not allowed "
                              f"(letters, digits and . _ + @ % , = ~ - only)")
        if "\n" in m.name or "\r" in m.name:
            raise BundleError(f"{label}: member {clean_line(m.name, 80)!r} has a newline in its name")
        parent = m.name.rsplit("/", 1)[0] if "/" in m.name else None
        while parent:
            if kinds.get(parent) == "link":
                raise BundleError(f"{label}: member {clean_line(m.name, 80)!r} lies under the symbolic link {parent!r}")
            parent = parent.rsplit("/", 1)[0] if "/" in parent else None
        if m.kind == "link":
            target = m.target or ""
            if not target or target.startswith("/"):
                raise BundleError(f"{label}: symbolic link {clean_line(m.name, 80)!r} -> {clean_line(target, 80)!r} "
                                  f"is absolute; only relative links inside the bundle are allowed")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), target))
            if resolved == ".." or resolved.startswith("../"):
                raise BundleError(f"{label}: symbolic link {clean_line(m.name, 80)!r} -> {clean_line(target, 80)!r} "
                                  f"points outside the bundle")


def _version(members: list[_Member], version_file: str, label: str) -> str:
    for m in members:
        if m.name == version_file:
            if m.kind != "file":
                raise BundleError(f"{label}: {version_file} is not a regular file")
            raw = m.content()[:4096]
            first = raw.split(b"\n", 1)[0].strip()
            try:
                text = first.decode("utf-8")
            except UnicodeDecodeError:
                raise BundleError(f"{label}: {version_file} is not UTF-8 text") from None
            if not text:
                raise BundleError(f"{label}: {version_file} has an empty first line (it must name the version)")
            if clean_line(text, MAX_VERSION + 1) != text or len(text) > MAX_VERSION:
                raise BundleError(f"{label}: the version in {version_file} must be printable text of at most "
                                  f"{MAX_VERSION} characters")
            return text
    raise BundleError(f"{label}: no {version_file} file in the bundle (its first line names the release version)")


def _store_tarball(members: list[_Member], workdir: Path, label: str) -> tuple[Path, str, int]:
    """Write the normalised tarball into `workdir` (a full or read-only state directory is a
    BundleError naming it, never a traceback); returns (path, sha256, size)."""
    tmp: Path | None = None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".bundle-", suffix=".tmp", dir=workdir)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as raw:
            _write_tarball(members, raw)
        digest, size = _digest(tmp)
        final = workdir / f"{digest}.tar.gz"
        os.replace(tmp, final)
        return final, digest, size
    except OSError as exc:
        raise BundleError(f"{label}: cannot write the bundle's tarball into {workdir}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _write_tarball(members: list[_Member], raw) -> None:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for m in sorted(members, key=lambda m: m.name):
                info = tarfile.TarInfo(m.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = max(0, m.mtime)
                info.mode = m.mode
                if m.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif m.kind == "link":
                    info.type = tarfile.SYMTYPE
                    info.linkname = m.target or ""
                    tar.addfile(info)
                else:
                    data = m.content()
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size
