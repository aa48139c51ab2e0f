"""Decoding images in worker processes, ahead of the forward pass (backfill and benchmarks).

Between the fenced `ImageFetcher` (collectors/images/resolver.py) and the embedder
(detectors/embedding/contract.py): `radwatch embed` (monitor/ingest/backfill.py) and
bench/embed.py, bench/gpu_embed.py read images through `decoded_batches`, which decodes them
in DataLoader worker processes while the caller runs the forward pass of the batch before,
and `stack_pixels` hands a batch to the embedder. Each worker stacks its batch into one tensor
that crosses to this process in shared memory (no pickled copy), page-locked by the loader's
pinning thread when CUDA is there, so the host side of a GPU pass is one copy to the device.

This module needs torch, numpy and the image readers only (no PostgreSQL, no key material):
monitor.ingest.embedding_stage re-exports it for the collector and the backfill.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from detectors.embedding.image_features import ImageFeatureError, image_features, spacing_from_tags


def features_of(image: Any) -> dict[str, Any]:
    """Image-quality features of a `LoadedImage` (pixels, original_shape, tags)."""
    return image_features(
        image.pixels,
        original_shape=getattr(image, "original_shape", None),
        spacing=spacing_from_tags(getattr(image, "tags", None)),
    ).as_dict()


@dataclass(frozen=True)
class Decoded:
    """One image decoded by a worker: pixels and features, or the reason it failed."""

    index: int
    pixels: np.ndarray | None
    features: dict[str, Any] | None
    error: str | None
    parkable: bool = False  # the PACS failed, not the image: keep it queued
    # Where `pixels` lives: row `row` of its batch's stacked tensor (so stack_pixels can hand
    # the batch over without copying it again).
    stacked: torch.Tensor | None = field(default=None, repr=False, compare=False)
    row: int = -1


def decode_workers(cores: int | None = None, *, cuda: bool = False) -> int:
    """Decoding processes for a machine of `cores` cores.

    On CPU the forward pass's lanes already use every core and decoding is about a third of
    the CPU per image (bench/embed.py: 3.4 vs 6.2 ms for a 512² DX on the default encoder).
    A decoding process gets a fair share of a core among the lanes, so it must need less
    than that: one on 2 cores got two thirds of a core against the 0.72 it needed, the
    lanes waited, and end-to-end ran at 0.88-0.92 of the cores limit; two ran at 0.91-0.94
    (decoders that get ahead sleep on the loader's bounded prefetch, taking no CPU). Hence
    one per two cores, at least two (one on a single core). On a GPU the cores have nothing
    else to do: all but one (the one that drives the GPU) decode.
    """
    cores = cores or os.cpu_count() or 1
    if cuda:
        return max(1, cores - 1)
    return max(min(2, cores), cores // 2)


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, uris: Sequence[str], fetcher: Any, size: int, with_features: bool) -> None:
        self.uris = list(uris)
        self.fetcher = fetcher  # an ImageFetcher: pickled into each worker process
        self.size = size
        self.with_features = with_features

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, index: int) -> Decoded:
        from collectors.errors import ImageError, ResolveError

        try:
            # Decoded in this (worker) process with the time budget checked between steps:
            # DataLoader workers are daemonic and cannot start a decode pool of their own.
            image = self.fetcher.load(self.uris[index], size=self.size)
            feats = features_of(image) if self.with_features else None
        except (ImageError, ImageFeatureError) as exc:
            # The reason code only: an ImageError message never carries the URI.
            parkable = isinstance(exc, ResolveError) and exc.parkable
            return Decoded(index, None, None, str(exc), parkable)
        return Decoded(index, image.pixels, feats, None)


@dataclass(frozen=True)
class _Wire:
    """A worker's batch on its way to the caller: items without pixels, pixels stacked."""

    items: list[Decoded]
    stacked: torch.Tensor | None  # [n_ok, H, W] float32, the decoded items in order

    def pin_memory(self) -> _Wire:  # called by the DataLoader's pinning thread (CUDA)
        if self.stacked is None:
            return self
        return _Wire(self.items, self.stacked.pin_memory())


def _stack_in_worker(items: list[Decoded]) -> _Wire:
    # A tensor is what travels through shared memory (numpy arrays would be pickled and
    # copied); allocating it runs no parallel torch op in the worker.
    ok = [d.pixels for d in items if d.pixels is not None]
    stacked = None
    if ok:
        stacked = torch.empty((len(ok), *ok[0].shape), dtype=torch.float32)
        if torch.utils.data.get_worker_info() is not None:
            stacked.share_memory_()  # stacked straight into what crosses: one copy, not two
        np.stack(ok, out=stacked.numpy())
    return _Wire([replace(d, pixels=None) for d in items], stacked)


def _unwire(wire: _Wire) -> list[Decoded]:
    out, row = [], 0
    for d in wire.items:
        if d.error is None and wire.stacked is not None:
            # A view of the stacked row: no copy, and stack_pixels recognises it.
            pixels = wire.stacked[row].numpy()
            out.append(replace(d, pixels=pixels, stacked=wire.stacked, row=row))
            row += 1
        else:
            out.append(d)
    return out


def decoded_batches(
    uris: Sequence[str],
    fetcher: Any,
    *,
    size: int,
    batch_size: int,
    workers: int,
    with_features: bool = True,
    prefetch: int = 4,
    pin: bool | None = None,
) -> Iterator[list[Decoded]]:
    """Decode `uris` in `workers` processes, `prefetch` batches per worker ahead of the caller.

    The caller runs forward passes on batch k while the workers decode k+1…; order is kept.
    `pin`: page-lock the stacked pixels in a background thread (default: when CUDA is
    available), so the host→device copy is asynchronous and nothing is pinned in the loop.
    """
    dataset = _ImageDataset(uris, fetcher, size, with_features)
    pin = torch.cuda.is_available() if pin is None else pin
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_stack_in_worker, prefetch_factor=prefetch if workers > 0 else None,
        persistent_workers=False, pin_memory=pin,
    )  # fmt: skip
    for wire in loader:
        yield _unwire(wire)


def stack_pixels(items: Sequence[Decoded], pin: bool) -> torch.Tensor:
    """[N, H, W] host tensor of the decoded items (page-locked when the device is CUDA).

    Items that are consecutive rows of one worker's stacked batch (every decoded item of a
    `decoded_batches` batch, in order) are handed over as a view: no copy.
    """
    ok = [d for d in items if d.pixels is not None]
    first = ok[0] if ok else None
    if first is not None and first.stacked is not None:
        base, start = first.stacked, first.row
        if all(d.stacked is base and d.row == start + i for i, d in enumerate(ok)):
            tensor = base[start : start + len(ok)]
            return tensor.pin_memory() if pin and not tensor.is_pinned() else tensor
    arr = np.stack([d.pixels for d in ok])  # type: ignore[misc]  # None filtered above
    tensor = torch.from_numpy(arr)
    return tensor.pin_memory() if pin else tensor
