"""file:// through the fenced fetcher (collectors.images.file_source).

Only regular files under the roots are read. The attempts outside the roots run against a
canary that would notice being touched: a FIFO whose writer only wakes if someone opens it
for reading.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_support import bundled, fence, refused

from collectors.errors import Reason
from collectors.images.file_source import NOT_A_FILE, OUTSIDE_ROOTS


@pytest.fixture
def canary_fifo(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A FIFO outside the roots; the event is set if anyone opens it for reading."""
    fifo = tmp_path / "outside" / "canary.fifo"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the FIFO
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield fifo, opened
    if not opened.is_set():  # release the writer
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    thread.join(5)


def test_file_reads_outside_the_roots_are_refused_without_opening(
    tmp_path: Path, canary_fifo: tuple[Path, threading.Event]
) -> None:
    fifo, opened = canary_fifo
    root = tmp_path / "images"
    root.mkdir()
    (root / "to-fifo.dcm").symlink_to(fifo)
    (root / "to-passwd.dcm").symlink_to("/etc/passwd")
    (root / "sub").mkdir()
    fetcher = fence(roots=[root])
    for uri in [
        "file:///etc/passwd", "file:///proc/self/environ", "file:///dev/zero",
        fifo.as_uri(), (root / "to-fifo.dcm").as_uri(), (root / "to-passwd.dcm").as_uri(),
        f"file://{root}/../outside/canary.fifo", f"file://{root}/sub/../../outside/canary.fifo",
        f"file://{root}/%2e%2e/outside/canary.fifo", "file:///nonexistent/secret.dcm",
    ]:  # fmt: skip
        error = refused(fetcher, uri)
        assert (error.reason, error.message) == (Reason.IMAGE_FORBIDDEN, OUTSIDE_ROOTS), uri
    remote = refused(fetcher, "file://otherhost/a.dcm")
    assert remote.reason == Reason.IMAGE_FORBIDDEN
    time.sleep(0.2)
    assert not opened.is_set(), "a file outside the roots was opened"


def test_inside_the_roots_only_regular_files_are_read(tmp_path: Path) -> None:
    raw = bundled("CT_small.dcm")
    root = tmp_path / "images"
    path = root / "dir with space" / "a.dcm"
    path.parent.mkdir(parents=True)
    path.write_bytes(raw)
    os.mkfifo(root / "pipe.dcm")  # nobody writes: opening it must not hang
    (root / "link.dcm").symlink_to(path)  # a symlink that stays inside is fine
    fetcher = fence(roots=[root])
    assert fetcher.fetch(path.as_uri()).data == raw
    assert fetcher.fetch((root / "link.dcm").as_uri()).data == raw
    for uri in [(root / "missing.dcm").as_uri(), (root / "pipe.dcm").as_uri(), root.as_uri()]:
        error = refused(fetcher, uri)
        # One message for missing, not a file, unreadable: nothing about what is there.
        assert (error.reason, error.message) == (Reason.IMAGE_UNREADABLE, NOT_A_FILE), uri
    large = refused(fence(roots=[root], max_bytes=100), path.as_uri())
    assert large.reason == Reason.TOO_LARGE
    assert fetcher.budget.used == 0  # every lease released
