"""Where embedders run: CUDA when present, else CPU, with the settings that go with each.

Used by detectors/embedding/contract.py (forward passes) and by the monitor's embedding stage and
backfill (pinned host buffers, batch size). `RADWATCH_DEVICE` reaches `select_device` as a
parameter; this module never reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detectors.errors import DetectorError


class DeviceError(DetectorError, ValueError):
    """The requested device does not exist or is not usable here."""


@dataclass(frozen=True)
class DeviceConfig:
    """How forward passes run on one device (all GPU-only options are off on CPU)."""

    device: str  # "cpu", "cuda:0", …
    amp_dtype: torch.dtype | None  # bf16 autocast on CUDA; None: full float32
    channels_last: bool  # NHWC memory format: faster cuDNN convolutions with tensor cores
    pin_memory: bool  # page-locked host buffers, so host→device copies can be asynchronous
    non_blocking: bool  # asynchronous host→device copies (only meaningful with pinned memory)
    batch_size: int

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


CPU_BATCH = 32
# Images per CPU lane and batch (detectors/embedding/contract.py runs one single-threaded
# forward pass per lane): a batch of 32 would leave most lanes of a 16-core machine idle.
CPU_IMAGES_PER_LANE = 8


def _cpu_batch() -> int:
    return max(CPU_BATCH, CPU_IMAGES_PER_LANE * torch.get_num_threads())


def _cuda_batch(device: torch.device) -> int:
    # A 224×224 float32 image is 0.2 MB; activations of the default encoder or a ResNet-50 in
    # bf16 stay well under 64 MB per image, so ~1 image per 128 MiB of memory is safe, capped
    # where larger batches stop raising throughput.
    total = torch.cuda.get_device_properties(device).total_memory
    per_image = 128 * 2**20
    size = max(32, min(512, total // per_image))
    return 1 << (int(size).bit_length() - 1)  # a power of two


def select_device(requested: str | None = None, *, batch_size: int | None = None) -> DeviceConfig:
    """The device to embed on: `requested` ("cpu", "cuda", "cuda:1"), else CUDA if available.

    Raises DeviceError with a one-line reason when the requested device is unusable.
    """
    name = (requested or "").strip().lower()
    if not name:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return DeviceConfig("cpu", None, False, False, False, batch_size or _cpu_batch())
    if not name.startswith("cuda"):
        raise DeviceError(f"unknown device {requested!r}: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {requested!r} requested but CUDA is not available here")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {requested!r}: use cpu, cuda or cuda:N") from exc
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {requested!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
        )
    device = torch.device("cuda", index)
    # bf16 needs compute capability ≥ 8.0 (Ampere); older GPUs run float32.
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return DeviceConfig(f"cuda:{index}", amp, True, True, True, batch_size or _cuda_batch(device))
