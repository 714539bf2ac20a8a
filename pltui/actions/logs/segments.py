"""How one file travels: in segments of SEGMENT raw bytes, all in one exec, each compressed on
the node on its own. So each segment is one zstd frame / gzip member, the concatenation is a
valid .zst / .gz file, and each segment's end, found in the stored stream itself (`FrameScanner`
for zstd; zlib reports gzip member ends), is a resume point noted in the partial's idx.
"""

from __future__ import annotations

from pathlib import Path

from pltui.actions.logs.codecs import COMPRESSOR, FrameScanner, VerifyError
from pltui.actions.logs.names import node_word
from pltui.actions.logs.partials import append_idx
from pltui.probe import shell_path

SEGMENT = 64 << 20            # raw bytes per transfer exec (a resume point); multiple of BLOCK
BLOCK = 1 << 20               # dd block size
SEND_RATE = 32 << 10          # slowest transfer the node-side bound allows (bytes/s)


def segment_plan(size: int, start: int, segment: int) -> list[tuple[int, int]]:
    """(raw offset, length) of each segment still to send; a 0-byte file is one empty segment.

    The last segment is split at the file's last BLOCK boundary, so that a stored copy always
    has a resume point (a frame end) at most one BLOCK before its end: a log that grows is later
    continued from there (`Manifest.base_for`), instead of being fetched again from the start
    (`dd` can only start reading at a BLOCK boundary)."""
    if size == 0:
        return [(0, 0)] if start == 0 else []
    out = []
    offset = start
    while offset < size:
        length = min(segment, size - offset)
        aligned = (size // BLOCK) * BLOCK
        if offset + length == size and offset < aligned < size:
            out.append((offset, aligned - offset))
            offset, length = aligned, size - aligned
        out.append((offset, length))
        offset += length
    return out


def read_marks(idx: Path) -> list[list[int]]:
    """The resume points ("RAW STORED" lines) noted in a partial's idx."""
    marks = []
    for line in idx.read_bytes().splitlines()[1:]:
        if line and not line.startswith(b"{"):
            raw, stored = line.split()
            marks.append([int(raw), int(stored)])
    return marks


def send_script(root: str, path: bytes, segments: list[tuple[int, int]], codec: str, nice: int) -> bytes:
    """One exec for the rest of the file: each segment read with dd (the last bounded by
    head -c to the listed size, so a growing log yields exactly the listed bytes) and compressed
    on its own at niceness `nice` (0: not reniced), so that each is one zstd frame / gzip member
    and its end a resume point."""
    word = node_word(path)
    lines = [b"cd " + shell_path(root).encode() + b" || exit 3", b"[ -f " + word + b" ] || exit 4"]
    for offset, length in segments:
        count = -(-length // BLOCK)
        src = b"dd if=" + word + b" bs=%d skip=%d count=%d 2>/dev/null" % (BLOCK, offset // BLOCK, count)
        if length % BLOCK:
            src += b" | head -c %d" % length
        if codec != "none":
            src += b" | " + (b"nice -n %d " % nice if nice else b"") + COMPRESSOR[codec].encode()
        lines.append(src + b" || exit 5")
    return b"\n".join(lines) + b"\n"


class ResumeMarks:
    """Resume points: notes in the idx each time a segment's frame / member / bytes end in the
    stored stream (called in the sink's worker thread, after the bytes are written)."""

    def __init__(self, codec: str, verifier, segments: list[tuple[int, int]], base: int, idx: Path):
        self.codec = codec
        self.verifier = verifier
        self.segments = segments
        self.idx = idx
        self.done = 0
        self.stored = base
        self.scanner = FrameScanner(base) if codec == "zstd" else None
        if codec == "gzip":
            verifier.ends.clear()

    def after(self, chunk: bytes) -> None:
        self.stored += len(chunk)
        if self.scanner is not None:
            ends = self.scanner.feed(chunk)
        elif self.codec == "gzip":
            ends, self.verifier.ends[:] = list(self.verifier.ends), []
        else:
            ends = []
            while self.done + len(ends) < len(self.segments):
                offset, length = self.segments[self.done + len(ends)]
                end = offset + length  # raw: stored offset == raw offset
                if end > self.stored:
                    break
                ends.append(end)
        lines = []
        for end in ends:
            if self.done >= len(self.segments):
                raise VerifyError("the node sent more segments than asked for")
            offset, length = self.segments[self.done]
            self.done += 1
            lines.append(f"{offset + length} {end}\n")
        if lines:
            append_idx(self.idx, "".join(lines))
