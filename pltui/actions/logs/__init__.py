"""Log collection: pull every node's log files into ``DEST/<node>/...``, verified, resumable,
never overwriting, and (``--prune``) delete a node's file only once a verified copy is on disk.

Per node, in order:

1. **List** (`listing`): every regular file matching the fleet's ``logs`` globs (a directory
   match takes the files below it; symlinks are never followed) with its size, mtime, ctime,
   inode and the sha256 of its first SIZE bytes, computed on the node. On a re-run (a manifest
   exists) the node first only stats the files, and a second exec hashes just the versions --
   (size, mtime, ctime, inode); any write changes ctime -- that the manifest does not hold with
   its copy present. A name is mapped below ``DEST/<node>/`` only when it is harmless (`names`):
   anything else is rejected and reported, so a hostile node cannot write outside its own
   directory. Directories below ``DEST/<node>`` are created as plain directories; a symlink met
   on the way is refused.

2. **Transfer** (`segments`, `stream`), one file at a time per node, nodes in parallel
   (``parallel``), one exec per file on the pooled connection. The node reads the file in
   segments of 64 MiB with ``dd`` and **compresses on the node** each segment on its own
   (``nice -n 10 zstd -1`` where the node and this machine both have zstd, else ``gzip -1``;
   the niceness keeps the service's CPU, ``nice=0`` for none; names already ending in
   .gz/.zst/.xz/... travel and are stored as they are). Each segment's end is a resume point
   (`partials`). One exec per file, not per segment: a new channel costs a few round trips,
   which over a long link is worth seconds per segment.

   Why compress on the node, measured on this 2-core loopback (real sshd; nodes, client and
   other work sharing the cores): a prototype pulling 4 x 150 MiB of access-log text reached
   ~300 MB/s with raw asyncssh SFTP and no compression at all, 160-240 MB/s with local zlib
   level 1 (deflate is the bottleneck), ~150 MB/s with node ``gzip -1``, and 330-380 MB/s with
   node ``zstd -1`` + local ``zstd -d`` at a fifth of the client CPU (the channel carries ~1/5 of
   the bytes). bench/bench_logs.py, 4 nodes x 300 MiB, everything included (listing and hashing
   on the nodes, verification, Python start-up): scp -r 440 MB/s at 3.4 ms CPU per MB (nodes +
   client); pltui 250 MB/s (0.57 of scp) at 6.5 ms/MB with zstd, 130 MB/s with gzip; the same
   result by hand (scp, sha256sum on both ends, zstd -1) 133 MB/s at 10.3 ms/MB. On a shared
   2-core box every tool is CPU-bound, and zstd -1 alone (~2.3 ms/MB) plus the two sha256 passes
   and the local decompression (~2 ms/MB) cost more than scp's whole transfer: 80% of scp is
   out of reach there for any design that compresses and verifies. On a real fleet the node's
   CPU is its own and the link is the limit, and compressing there moves ~5x fewer bytes.

3. **Verify** (`codecs`): while bytes arrive they are decompressed locally and hashed; the file
   counts as collected only when the decompressed length and sha256 equal the node's listing. A
   resumed file re-reads its kept prefix through the same decoder first, so the whole file is
   always verified. A mismatch (the file was rewritten or truncated during the transfer)
   discards the partial and fails that file; a re-run retries.

4. **Store** (`partials`, `localstore`): the verified partial is hard-linked to its final name
   (``link`` fails rather than replace an existing file, so nothing is ever clobbered), then a
   record is appended to the node's manifest. The final name is ``PATH.zst`` / ``PATH.gz`` /
   ``PATH``; when that name exists and is not this very file, ``PATH.~1~.zst``,
   ``PATH.~2~.zst``... (GNU numbered-backup style). A re-run skips a file whose (path, sha256)
   the manifest lists with its stored file present (same size; with ``--prune`` also the same
   stored sha256, else it is collected again under a new name). A crash between link and
   record is repaired on the next run (the idx names the final file; same inode => adopted).
   **A log that grew** (same inode, longer than a stored copy of the same codec) is continued
   from that copy's last resume point on a BLOCK boundary (every copy has one at most 1 MiB
   before its end: the last segment is split there): the partial starts as the stored copy's
   bytes up to that point, only the rest is fetched, and the whole file is verified as always.
   When the earlier version is this one's prefix (hashed on the way), the grown copy replaces
   it under the same name (record first, then rename): one copy per log, not one per run. A
   file rewritten in place fails that check and is fetched whole, as a copy of its own.
   Durability: with ``--prune`` every copy, its directories and its record are fsynced before
   anything is deleted (copies made by earlier runs are re-hashed and fsynced first); without
   it nothing is fsynced as it goes (a killed process loses no page cache, the node keeps the
   original, and a copy damaged by a power cut fails the stored sha256 check before any later
   prune). That keeps a plain collection as fast as scp's.

5. **Prune** (`prune`, ``prune=True``), one exec per node, only for files with a re-checked
   copy; the node checks each file again before ``rm``. Nothing is pruned in a run stopped by a
   full disk.

Failures: a dropped connection or an idle stream (no byte for the command timeout from a node
that still answers) retries the file twice (after 1 s, 3 s) from its last finished segment,
then fails the node; a node that stopped answering (frozen: no reply to a keepalive either,
`pltui.ssh.Transport.stalled`) fails at once, its other files "not attempted", so it costs
the command timeout plus ANSWER_GRACE, not a connect timeout per retry; a full
local disk (ENOSPC/EDQUOT) stops the whole collection with one line naming the DEST path (every
node writes to the same disk), keeping the partials (trimmed to their last finished segment)
for the next run; other local errors fail that file only. A killed collection loses nothing:
the partials and the manifest are the state, and a re-run continues. ``DEST/.pltui-lock``
(flock) keeps two collections out of one DEST; the kernel drops it with the process.

Modules: `collect` (the action: order, retries, report), `names`, `listing`, `stream`,
`segments`, `codecs`, `partials`, `localstore`, `prune`, `results`.
"""

from pltui.actions.logs.codecs import (COMPRESSIONS, FrameScanner, GzipVerifier, PlainVerifier, VerifyError,
                                       ZstdVerifier, make_verifier)
from pltui.actions.logs.collect import CollectLogs
from pltui.actions.logs.listing import ListError, Listing, ListParser, RemoteFile, node_script
from pltui.actions.logs.localstore import (LOCK_FILE, MANIFEST, DiskFull, FileSink, LocalError, Manifest, ensure_dirs,
                                           file_sha256, fsync_dir, local_error, write_all)
from pltui.actions.logs.names import PARTIAL_DIR, display, normalize, pct, sh_quote, unpct
from pltui.actions.logs.results import FileResult
from pltui.actions.logs.stream import stream_exec

__all__ = [
    "COMPRESSIONS", "FrameScanner", "GzipVerifier", "PlainVerifier", "VerifyError", "ZstdVerifier", "make_verifier",
    "CollectLogs",
    "ListError", "Listing", "ListParser", "RemoteFile", "node_script",
    "LOCK_FILE", "MANIFEST", "DiskFull", "FileSink", "LocalError", "Manifest", "ensure_dirs", "file_sha256",
    "fsync_dir", "local_error", "write_all",
    "PARTIAL_DIR", "display", "normalize", "pct", "sh_quote", "unpct",
    "FileResult",
    "stream_exec",
]
