"""Decoding in worker processes that are killed when an image runs past its time budget.

Between the fetch and the stages that use pixels: the collector's image stage hands each
fetched object to a `DecodePool` (through `ImageFetcher.load(decoder=...)`), which decodes it
with `collectors.images.dicom_reader` in a separate process. A thread cannot be stopped in the
middle of a C decoder (JPEG 2000, zlib), a process can: a worker still busy when the budget
ends is killed and replaced, and the image is dead-lettered `image_decode_timeout`. A worker
that dies (out of memory, a crash in a codec) costs its image, never the collector.

Workers come from a forkserver with the decoder preloaded: a replacement starts in tens of
milliseconds, and no worker is forked from the multi-threaded collector itself.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from collectors.errors import DecodeError, ImageError, Reason
from collectors.images.dicom_reader import LoadedImage, Pseudonym, read_image_bytes
from collectors.images.pixels import DecodeLimits

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["collectors.images.dicom_reader"])


def _serve(conn: Connection) -> None:
    """A worker: (params) then the raw bytes in, a LoadedImage or an ImageError out."""
    while True:
        try:
            size, media_type, limits, pseudonym = conn.recv()
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            result: Any = read_image_bytes(raw, media_type, size=size, limits=limits,
                                           pseudonym=pseudonym)  # fmt: skip
        except ImageError as exc:
            result = exc
        except MemoryError:
            result = DecodeError(Reason.DICOM_BAD_DIMENSIONS, "decoding ran out of memory")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which dead-letters
            result = DecodeError(Reason.DICOM_INVALID, f"unexpected {type(exc).__name__}")
        del raw
        conn.send(result)


class _Worker:
    def __init__(self) -> None:
        parent, child = _CONTEXT.Pipe()
        self.conn = parent
        self.process: BaseProcess = _CONTEXT.Process(
            target=_serve, args=(child,), name="radwatch-decode", daemon=True
        )
        self.process.start()
        child.close()

    def stop(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class DecodePool:
    """`workers` decoding processes, started on first use; thread-safe."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._started = 0
        self._lock = threading.Lock()
        self.replaced = 0  # workers killed for their budget or lost (tests and logs)

    def _take(self) -> _Worker:
        while True:
            with self._lock:
                if self._idle.empty() and self._started < self.workers:
                    self._started += 1
                    break
            try:
                return self._idle.get(timeout=0.1)  # polls: a killed worker frees a slot
            except queue.Empty:
                continue
        try:
            return _Worker()
        except BaseException:
            with self._lock:
                self._started -= 1
            raise

    def decode(self, raw: bytes, media_type: str, *, size: int, limits: DecodeLimits,
               pseudonym: Pseudonym | None = None) -> LoadedImage:  # fmt: skip
        worker = self._take()
        healthy = False
        try:
            worker.conn.send((size, media_type, limits, pseudonym))
            worker.conn.send_bytes(raw)
            if not worker.conn.poll(limits.time_budget_s):
                raise DecodeError(Reason.IMAGE_DECODE_TIMEOUT,
                                  f"decoding ran past its {limits.time_budget_s:g} s budget")  # fmt: skip
            result = worker.conn.recv()
            healthy = True
        except (EOFError, OSError) as exc:
            raise DecodeError(
                Reason.DICOM_INVALID, "the decoding process died on this image"
            ) from exc
        finally:
            if healthy:
                self._idle.put(worker)
            else:
                worker.stop()  # abandoned: killed mid-step, its memory returned at once
                with self._lock:
                    self._started -= 1
                    self.replaced += 1
        if isinstance(result, ImageError):
            raise result
        return result

    def close(self) -> None:
        with self._lock:
            while True:
                try:
                    self._idle.get_nowait().stop()
                except queue.Empty:
                    break
            self._started = 0
