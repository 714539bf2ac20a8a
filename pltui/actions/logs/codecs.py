"""Codecs: how a copy is stored (zstd, gzip or as it is), and the verifiers that learn the
original's length and sha256 from the stored bytes as they arrive, so that no copy counts as
collected before its content is known to equal the node's file.

`FrameScanner` finds where each zstd frame ends without decompressing: every frame is one
transfer segment, and its end a resume point.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import zlib

COMPRESSIONS = ("auto", "zstd", "gzip", "none")
CODEC_EXT = {"zstd": ".zst", "gzip": ".gz", "none": ""}
COMPRESSOR = {"zstd": "zstd -1 -q -c", "gzip": "gzip -1 -c"}   # run on the node
# Names that are compressed already: stored byte for byte under their own name.
COMPRESSED_SUFFIXES = (".gz", ".tgz", ".z", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".lzma", ".lz", ".lz4",
                       ".zst", ".tzst", ".zstd", ".sz", ".br", ".zip", ".7z", ".rar")


def pick_codec(path: bytes, wanted: str, node_codecs: set[str], zstd: str | None) -> str:
    """The codec for one file: `wanted` (one of COMPRESSIONS) as far as the node's compressors
    and a local `zstd` (needed to verify a .zst copy) allow; "none" for compressed names."""
    if path.lower().endswith(tuple(s.encode() for s in COMPRESSED_SUFFIXES)):
        return "none"
    if wanted == "none":
        return "none"
    if wanted in ("auto", "zstd") and "zstd" in node_codecs and zstd:
        return "zstd"
    if wanted in ("auto", "gzip", "zstd") and "gzip" in node_codecs:
        return "gzip"
    return "none"


class VerifyError(Exception):
    """The stored bytes are not a valid copy (bad encoding, or not the node's length and sha256)."""


class PlainVerifier:
    """Bytes stored as they are: hashed and counted."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.raw = 0
        self.prefix_left = 0
        self.prefix_hash = None

    def watch_prefix(self, length: int) -> None:
        """Also hash the first `length` raw bytes (is an older version a prefix of this one?)."""
        self.prefix_left = length
        self.prefix_hash = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self.hash.update(data)
        self.raw += len(data)
        if self.prefix_left:
            head = data[:self.prefix_left]
            self.prefix_hash.update(head)
            self.prefix_left -= len(head)

    def finish(self) -> tuple[int, str]:
        return self.raw, self.hash.hexdigest()

    def close(self) -> None:
        pass


class GzipVerifier(PlainVerifier):
    """Concatenated gzip members, decompressed with zlib; a truncated last member is an error."""

    def __init__(self):
        super().__init__()
        self.d = zlib.decompressobj(31)
        self.pending = False  # bytes of an unfinished member were fed
        self.fed = 0
        self.ends: list[int] = []  # stored offsets where a member ended

    def feed(self, data: bytes) -> None:
        buf = data
        self.fed += len(data)
        try:
            while buf:
                self.pending = True
                out = self.d.decompress(buf, 4 << 20)
                if out:
                    super().feed(out)
                if self.d.eof:
                    buf = self.d.unused_data
                    self.ends.append(self.fed - len(buf))
                    self.d = zlib.decompressobj(31)
                    self.pending = False
                else:
                    buf = self.d.unconsumed_tail
        except zlib.error as exc:
            raise VerifyError(f"stored data is not valid gzip: {exc}") from None

    def finish(self) -> tuple[int, str]:
        if self.pending:
            raise VerifyError("stored gzip data ends in the middle of a member")
        return super().finish()


class ZstdVerifier(PlainVerifier):
    """Concatenated zstd frames, decompressed by a local `zstd -dc` child."""

    def __init__(self, zstd: str):
        super().__init__()
        self.proc = subprocess.Popen([zstd, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.error: BaseException | None = None
        self.reader = threading.Thread(target=self._read, name="pltui-zstd-verify", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.proc.stdout.read(1 << 20)
                if not data:
                    return
                PlainVerifier.feed(self, data)
        except BaseException as exc:  # pragma: no cover - pipe trouble
            self.error = exc

    def feed(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            raise VerifyError(f"stored data is not valid zstd (decoder stopped: {exc})") from None

    def finish(self) -> tuple[int, str]:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.reader.join()
        rc = self.proc.wait()
        if rc != 0 or self.error is not None:
            raise VerifyError(f"stored data is not valid zstd (zstd -d exit {rc})")
        return self.raw, self.hash.hexdigest()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def make_verifier(codec: str, zstd: str | None):
    if codec == "gzip":
        return GzipVerifier()
    if codec == "zstd":
        if zstd is None:
            raise VerifyError("no local zstd to verify a .zst copy")
        return ZstdVerifier(zstd)
    return PlainVerifier()


class FrameScanner:
    """Where each zstd frame ends in a stream of concatenated frames: reads the frame header and
    the 3-byte block headers only (RFC 8878), never decompresses. `feed` returns the stored
    offsets (from `base`) of the frames it saw end. Malformed input raises VerifyError."""

    MAGIC = b"\x28\xb5\x2f\xfd"

    def __init__(self, base: int = 0):
        self.pos = base          # stored offset of the next byte
        self.state = "magic"
        self.need = 4            # header bytes wanted for this state
        self.buf = bytearray()
        self.skip = 0            # content bytes to pass over
        self.checksum = False
        self.last = False

    def feed(self, data: bytes) -> list[int]:
        ends: list[int] = []
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self.skip:
                n = min(self.skip, len(view) - i)
                self.skip -= n
                i += n
                self.pos += n
                if not self.skip:
                    self._after_skip(ends)
                continue
            n = min(self.need - len(self.buf), len(view) - i)
            self.buf += view[i:i + n]
            i += n
            self.pos += n
            if len(self.buf) == self.need:
                header, self.buf = bytes(self.buf), bytearray()
                self._header(header, ends)
        return ends

    def _after_skip(self, ends: list[int]) -> None:
        if self.state == "content":
            if self.last:
                if self.checksum:
                    self.state, self.skip = "checksum", 4
                else:
                    self._frame_end(ends)
            else:
                self.state, self.need = "block", 3
        elif self.state in ("checksum", "rest"):
            if self.state == "checksum":
                self._frame_end(ends)
            else:
                self.state, self.need = "block", 3

    def _frame_end(self, ends: list[int]) -> None:
        ends.append(self.pos)
        self.state, self.need = "magic", 4

    def _header(self, header: bytes, ends: list[int]) -> None:
        if self.state == "magic":
            if header != self.MAGIC:
                raise VerifyError("stored data is not a zstd frame")
            self.state, self.need = "descriptor", 1
        elif self.state == "descriptor":
            fhd = header[0]
            if fhd & 0x08:
                raise VerifyError("zstd frame header uses a reserved bit")
            fcs_flag, single = fhd >> 6, bool(fhd & 0x20)
            self.checksum = bool(fhd & 0x04)
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 0x03]
            rest += (1 if single else 0, 2, 4, 8)[fcs_flag]
            self.state = "rest"
            if rest:
                self.skip = rest
            else:
                self.state, self.need = "block", 3
        elif self.state == "block":
            value = int.from_bytes(header, "little")
            self.last = bool(value & 1)
            kind = (value >> 1) & 3
            size = value >> 3
            if kind == 3:
                raise VerifyError("zstd block of a reserved type")
            self.state = "content"
            self.skip = 1 if kind == 1 else size
            if not self.skip:
                self._after_skip(ends)
