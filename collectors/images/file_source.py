"""`file://` image URIs → the file's bytes, read only under the configured roots.

One source of collectors.images.resolver's `ImageFetcher` (the simulator writes its DICOM
files there; so may a hospital's export share). A refusal is a `ResolveError` whose message
names the rule, the same whether or not the file exists, never the path itself.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
import urllib.request
from pathlib import Path

from collectors.errors import Reason, ResolveError
from collectors.images.byte_budget import Lease, read_capped

# The refusal messages: one per rule, the same whether or not the file exists.
OUTSIDE_ROOTS = "file:// path outside RADWATCH_IMAGE_ROOTS"
NOT_A_FILE = "file:// path under RADWATCH_IMAGE_ROOTS is missing or not a readable regular file"
REMOTE_FILE = "file:// URI names a remote host"


def read_file(uri: str, roots: tuple[Path, ...], max_bytes: int, lease: Lease) -> bytes:
    """The regular file `uri` names under one of `roots` (resolved); raises ResolveError."""
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ResolveError(Reason.IMAGE_FORBIDDEN, REMOTE_FILE)
    # realpath resolves '..' and every symlink, so the containment test is on the path
    # the kernel will open; the roots were resolved the same way.
    path = os.path.realpath(urllib.request.url2pathname(parts.path))
    real = Path(path)
    if not os.path.isabs(path) or not any(real.is_relative_to(r) for r in roots):
        raise ResolveError(Reason.IMAGE_FORBIDDEN, OUTSIDE_ROOTS)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a symlink
        # swapped in after realpath is refused. The type and size are then read from the
        # open descriptor (fstat), not the path: a device reports size 0 to stat().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ResolveError(Reason.IMAGE_UNREADABLE, NOT_A_FILE) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResolveError(Reason.IMAGE_UNREADABLE, NOT_A_FILE)
        if info.st_size > max_bytes:
            raise ResolveError(Reason.TOO_LARGE, f"file is over the {max_bytes}-byte limit")
        lease.reserve(info.st_size)
        # Read with the cap: a file growing while read stops at the limit.
        return read_capped(lambda n: os.read(fd, n), max_bytes, "file")
    except OSError as exc:
        raise ResolveError(Reason.IMAGE_UNREADABLE, NOT_A_FILE) from exc
    finally:
        os.close(fd)
