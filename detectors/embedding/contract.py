"""The embedder contract: a spec, `embed(batch) -> float32 [N, D]`, `verify()`, a fingerprint.

Between decoded images (float32 [H, W] in [0, 1], from collectors/images/dicom_reader.py) and the
drift detectors: every embedding stored, and every result computed from embeddings, names
the embedder's fingerprint, SHA-256 of its weights and its spec (DESIGN.md §6).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detectors.embedding.device import DeviceConfig, select_device
from detectors.errors import DetectorError

Intensity = Literal["unit", "standard", "imagenet"]
# How [0, 1] pixels are mapped before the forward pass:
#   unit     — as they are;
#   standard — (x − 0.5) / 0.25, a fixed affine map (not per image: a brightness or contrast
#              shift is exactly what the embedding must still see);
#   imagenet — the per-channel mean/std torchvision models were trained with.
_INTENSITY: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "unit": ((0.0,), (1.0,)),
    "standard": ((0.5,), (0.25,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
NO_WEIGHTS = "0" * 64
# Fewer images than this per lane and a batch is not split (the split would cost more than
# the second core gives back).
MIN_LANE_IMAGES = 4


class EmbeddingError(DetectorError, ValueError):
    """An embedder is misconfigured, fails verification, or got input of the wrong shape."""


@dataclass(frozen=True)
class EmbedderSpec:
    """What an embedder expects and returns; part of its fingerprint."""

    name: str
    modality: str  # DICOM Modality it is meant for (PS3.3 C.7.3.1.1.1), or "any"
    input_size: tuple[int, int]  # (rows, columns) the network sees; inputs are resized to it
    intensity: Intensity
    channels: int  # 1, or 3 (grayscale replicated, as for ImageNet-trained networks)
    output_dim: int

    def __post_init__(self) -> None:
        if self.intensity not in _INTENSITY:
            raise EmbeddingError(f"unknown intensity handling {self.intensity!r}")
        if self.channels not in (1, 3):
            raise EmbeddingError(f"channels must be 1 or 3, got {self.channels}")
        if self.intensity == "imagenet" and self.channels != 3:
            raise EmbeddingError("imagenet intensity handling needs 3 channels")
        if min(self.input_size) <= 0 or self.output_dim <= 0:
            raise EmbeddingError("input_size and output_dim must be positive")

    def canonical(self) -> dict[str, object]:
        doc = asdict(self)
        doc["input_size"] = list(self.input_size)
        return doc


def fingerprint(spec: EmbedderSpec, weights_sha256: str) -> str:
    """SHA-256 over the weights digest and the canonical JSON of the spec."""
    doc = {"spec": spec.canonical(), "weights_sha256": weights_sha256}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (name, dtype, shape, bytes) in name order.

    Hashing the tensors rather than the file makes the digest independent of how torch
    happens to serialise them, so the same weights give the same fingerprint everywhere.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\x00{tensor.dtype}\x00{tuple(tensor.shape)}\x00".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@runtime_checkable
class Embedder(Protocol):
    """What the monitor needs from any embedder."""

    @property
    def spec(self) -> EmbedderSpec: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, batch: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray: ...

    def verify(self) -> None: ...


class TorchEmbedder:
    """A torch module behind the contract: resize, intensity map, batched inference.

    `embed` accepts [N, H, W] or [N, C, H, W] pixels in [0, 1] (or a list of [H, W] arrays
    of any sizes); it returns float32 [N, output_dim] on the host. Forward passes run in
    chunks of the device's batch size under `torch.inference_mode`, with bf16 autocast and
    channels-last on CUDA.
    """

    def __init__(
        self,
        module: nn.Module,
        spec: EmbedderSpec,
        *,
        weights_sha256: str,
        device: DeviceConfig | None = None,
    ) -> None:
        self._spec = spec
        self._weights = weights_sha256
        self._fingerprint = fingerprint(spec, weights_sha256)
        self.device = device or select_device("cpu")
        module = module.eval().to(self.device.torch_device)
        if self.device.channels_last:
            # Module.to accepts memory_format at run time; its type stubs do not say so.
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module = module
        mean, std = _INTENSITY[spec.intensity]
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def spec(self) -> EmbedderSpec:
        return self._spec

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def weights_sha256(self) -> str:
        return self._weights

    def prepare(self, batch: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Host float32 [N, C, H, W] at the spec's size and channels (before intensity map)."""
        tensor = self._host(batch)
        if tensor.shape[1] != self._spec.channels:
            tensor = tensor.expand(-1, self._spec.channels, -1, -1)
        return tensor.contiguous()

    def _host(self, batch: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """As `prepare`, but a grayscale batch stays 1-channel for a 3-channel model: the
        copies to the device move a third of the bytes and `forward` expands it there."""
        rows, cols = self._spec.input_size
        if isinstance(batch, torch.Tensor | np.ndarray):
            tensor = torch.as_tensor(batch, dtype=torch.float32)
            if tensor.ndim == 3:
                tensor = tensor.unsqueeze(1)
            if tensor.ndim != 4:
                raise EmbeddingError(
                    f"{self._spec.name}: expected [N, H, W] or [N, C, H, W], got {tuple(tensor.shape)}"
                )
            if tuple(tensor.shape[-2:]) != (rows, cols):
                tensor = _resize(tensor, rows, cols)
        else:
            images = [torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in batch]
            if any(t.ndim != 2 for t in images):
                raise EmbeddingError(f"{self._spec.name}: list items must be [H, W] images")
            resized = [
                t if tuple(t.shape) == (rows, cols) else _resize(t[None, None], rows, cols)[0, 0]
                for t in images
            ]
            tensor = (
                torch.stack(resized).unsqueeze(1)
                if resized
                else torch.empty((0, 1, rows, cols), dtype=torch.float32)
            )
        if tensor.shape[1] not in (1, self._spec.channels):
            raise EmbeddingError(
                f"{self._spec.name}: input has {tensor.shape[1]} channels, "
                f"the spec says {self._spec.channels}"
            )
        # Contiguous already for a stacked batch (no copy): a pinned one stays pinned.
        return tensor.contiguous()

    def forward(self, host: torch.Tensor) -> torch.Tensor:
        """One forward pass of a prepared host batch; returns float32 [N, D] on the host.

        A 1-channel batch for a 3-channel model is expanded on the device, after the copy.
        """
        cfg = self.device
        if cfg.pin_memory and not host.is_pinned():
            host = host.pin_memory()
        x = host.to(cfg.torch_device, non_blocking=cfg.non_blocking)
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        if x.shape[1] != self._spec.channels:
            x = x.expand(-1, self._spec.channels, -1, -1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if cfg.amp_dtype is not None:
                with torch.autocast(device_type="cuda", dtype=cfg.amp_dtype):
                    out = self.module(x)
            else:
                out = self.module(x)
        out = out.float().reshape(out.shape[0], -1)
        return out.to("cpu")

    def embed(self, batch: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
        """float32 [N, D]; on CPU the chunks run in `cpu_lanes()` single-threaded lanes."""
        host = self._host(batch)
        dim = self._spec.output_dim
        if host.shape[0] == 0:
            return np.empty((0, dim), dtype=np.float32)
        step = self.device.batch_size
        lanes = 1 if self.device.is_cuda else cpu_lanes()
        if lanes > 1 and host.shape[0] >= 2 * MIN_LANE_IMAGES:
            # Two pieces per lane from each device batch, taken in turn by whichever lane is
            # free: a lane slowed by a decoder leaves its second piece to the other lane, so
            # the batch's last piece, not its last half, is what the lanes wait for.
            per_piece = math.ceil(min(step, host.shape[0]) / (2 * lanes))
            step = min(step, max(MIN_LANE_IMAGES, per_piece))
        pieces = [host[start : start + step] for start in range(0, host.shape[0], step)]
        if lanes > 1 and len(pieces) > 1:
            outs = list(_lane_pool(lanes).map(self.forward, pieces))
        else:
            outs = [self.forward(piece) for piece in pieces]
        for piece, out in zip(pieces, outs, strict=True):
            _check_output(self._spec, out, piece.shape[0])
        return np.ascontiguousarray(np.concatenate([o.numpy() for o in outs]), dtype=np.float32)

    def verify(self) -> None:
        """Run a dummy batch through at start-up; raise EmbeddingError on a wrong output shape."""
        rows, cols = self._spec.input_size
        dummy = torch.full((2, self._spec.channels, rows, cols), 0.5)
        try:
            out = self.forward(dummy)
        except EmbeddingError:
            raise
        except Exception as exc:  # a foreign checkpoint can fail in any way; say which one
            raise EmbeddingError(
                f"embedder {self._spec.name!r} failed on a dummy {tuple(dummy.shape)} batch: {exc}"
            ) from exc
        _check_output(self._spec, out, 2)


# -- CPU lanes: independent single-threaded forward passes instead of one OpenMP team --------
#
# An OpenMP team meets at a barrier after every operator; when anything else on the machine
# (the decoding processes that feed it) takes one of its cores, the team's other threads spin
# at the barrier and the forward pass slows by more than the CPU it lost. Lanes share nothing:
# each runs whole chunks on one thread, the scheduler gives an idle core to whichever lane or
# decoder is runnable, and no CPU is spent waiting (measured in bench/embed.py).

_lanes_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _forget_pools_in_child() -> None:
    # A forked child has none of the parent's threads: it starts its own lanes if it embeds.
    global _lanes_lock
    _lanes_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def cpu_lanes() -> int:
    """Lanes for CPU forward passes: the intra-op threads torch was given (torch.set_num_threads,
    OMP_NUM_THREADS, else the cores), so the process never runs more forward threads than it
    was allowed."""
    return max(1, torch.get_num_threads())


def _lane_pool(lanes: int) -> ThreadPoolExecutor:
    """`lanes` threads, each with one intra-op thread; the process's own setting is kept."""
    with _lanes_lock:
        pool = _pools.get(lanes)
        if pool is not None:
            return pool
        saved = torch.get_num_threads()
        ready = threading.Barrier(lanes + 1)

        def single_threaded() -> None:
            # torch.get_num_threads() first: it runs the thread's one lazy initialisation,
            # which would otherwise later copy the process-wide count back into this thread.
            torch.get_num_threads()
            torch.set_num_threads(1)  # this thread's OpenMP and MKL settings
            ready.wait()

        pool = ThreadPoolExecutor(lanes, thread_name_prefix="radwatch-lane",
                                  initializer=single_threaded)  # fmt: skip
        # Start every lane now (each blocks in the barrier until all have set their count),
        # then give the process its own count back: set_num_threads also sets a global.
        started = [pool.submit(lambda: None) for _ in range(lanes)]
        ready.wait()
        for future in started:
            future.result()
        torch.set_num_threads(saved)
        _pools[lanes] = pool
        return pool


def _check_output(spec: EmbedderSpec, out: torch.Tensor, n: int) -> None:
    if tuple(out.shape) != (n, spec.output_dim):
        raise EmbeddingError(
            f"embedder {spec.name!r} returned shape {tuple(out.shape)} for {n} input(s); "
            f"its spec says ({n}, {spec.output_dim}): the checkpoint does not match the spec"
        )
    if not torch.isfinite(out).all():
        raise EmbeddingError(f"embedder {spec.name!r} returned non-finite values")


def _resize(tensor: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    # Antialiased bilinear, so downsampling a large radiograph does not alias fine texture.
    return F.interpolate(tensor, size=(rows, cols), mode="bilinear", antialias=True,
                         align_corners=False)  # fmt: skip
