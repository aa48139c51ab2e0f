"""The embedders radwatch ships: the default fixed-weight CNN, user checkpoints, model features.

Behind detectors/embedding/contract.py's contract, in front of the drift detectors. The default
encoder is an untrained CNN with weights drawn from a fixed seed and committed in
detectors/embedding/weights/default_encoder.pt, so every machine computes the same fingerprint.
Untrained encoders are an effective representation for shift detection ("Failing Loudly",
Rabanser, Günnemann & Lipton, NeurIPS 2019, §3.1: randomly initialised autoencoders
performed on par with trained ones). Regenerate the file with `python -m detectors.embedding.encoders`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detectors.embedding.contract import (
    EmbedderSpec,
    EmbeddingError,
    TorchEmbedder,
    fingerprint,
    weights_digest,
)
from detectors.embedding.device import DeviceConfig

DEFAULT_SEED = 2019
DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "default_encoder.pt"
# weights_digest() of the committed file; a mismatch means the file was altered or corrupted.
DEFAULT_WEIGHTS_SHA256 = "7a83cf21a89a5cca9202a08bd56da307dc741cd9e8a2fe62cee230598e7b7e18"
DEFAULT_WIDTHS = (32, 64, 128, 256, 256)
DEFAULT_SPEC = EmbedderSpec(
    name="radwatch-default-cnn-v1",
    modality="any",
    input_size=(224, 224),
    intensity="standard",
    channels=1,
    output_dim=DEFAULT_WIDTHS[-1],
)


class DefaultEncoder(nn.Module):
    """1×224×224 → five stride-2 3×3 convs (ReLU between) → global average pool → 256.

    ~1 M parameters (4 MB float32) and ~0.2 GMAC per image: a tenth of a ResNet-50, so the
    CPU keeps up with a modest hospital's volume, and decoding hides behind it.
    """

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(c_in, width, 3, stride=2, padding=1))
            # No ReLU after the last stage: a unit that never fires would embed as a constant 0.
            if i < len(widths) - 1:
                layers.append(nn.ReLU())
            c_in = width
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def generate_default_state(seed: int = DEFAULT_SEED) -> dict[str, torch.Tensor]:
    """The default encoder's weights, drawn from numpy's PCG64 stream for `seed`.

    He-normal weights (He et al. 2015, std = sqrt(2 / fan_in)) keep activations' scale
    through ReLU stages without training; biases are zero. numpy's Generator, not torch's,
    because its stream is documented to be stable across versions and platforms.
    """
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}
    for name, param in DefaultEncoder().state_dict().items():
        if name.endswith(".weight"):
            fan_in = int(np.prod(param.shape[1:]))
            values = rng.standard_normal(tuple(param.shape)) * np.sqrt(2.0 / fan_in)
            state[name] = torch.from_numpy(values.astype(np.float32))
        else:
            state[name] = torch.zeros(param.shape, dtype=torch.float32)
    return state


def default_encoder(
    device: DeviceConfig | None = None, *, weights: Path = DEFAULT_WEIGHTS
) -> TorchEmbedder:
    """The default encoder with the committed weights (checked against their digest)."""
    state = _load_state(weights)
    digest = weights_digest(state)
    if digest != DEFAULT_WEIGHTS_SHA256:
        raise EmbeddingError(
            f"{weights} does not hold the default encoder's weights (digest {digest[:12]}…, "
            f"expected {DEFAULT_WEIGHTS_SHA256[:12]}…); regenerate it: python -m detectors.embedding.encoders"
        )
    module = DefaultEncoder()
    module.load_state_dict(state)
    return TorchEmbedder(module, DEFAULT_SPEC, weights_sha256=digest, device=device)


# -- torchvision-compatible ResNets (parameter names match torchvision's state dicts) -------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # Stride on the 3×3 conv (ResNet v1.5, as torchvision does).
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """He et al. 2016; `forward` returns the pooled features (the `fc` layer is kept only so
    torchvision checkpoints load, and is not applied: the embedding is the penultimate layer)."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        stages = []
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks: list[nn.Module] = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(c_in, width, stride))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet34() -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3))


def resnet50() -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3))


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "default-cnn": DefaultEncoder,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
}


# -- user-supplied checkpoints -------------------------------------------------------------


def load_checkpoint(
    path: str | Path,
    spec: EmbedderSpec,
    *,
    arch: str | None = None,
    device: DeviceConfig | None = None,
) -> TorchEmbedder:
    """A user checkpoint from a local file: TorchScript (arch None) or a state dict for `arch`.

    Never downloads: a URL is refused. Call `verify()` on the result before use; a
    checkpoint whose output does not match `spec.output_dim` fails there with the shapes.
    """
    text = str(path)
    if "://" in text:
        raise EmbeddingError(f"checkpoints are read from local paths only, got {text[:80]!r}")
    file = Path(text)
    if not file.is_file():
        raise EmbeddingError(f"checkpoint {file} does not exist")
    module: nn.Module
    if arch is None:
        try:
            module = torch.jit.load(str(file), map_location="cpu")
        except RuntimeError as exc:
            raise EmbeddingError(
                f"{file} is not a TorchScript archive; for a state dict name its architecture "
                f"(one of {sorted(ARCHITECTURES)})"
            ) from exc
    else:
        if arch not in ARCHITECTURES:
            raise EmbeddingError(f"unknown architecture {arch!r}: one of {sorted(ARCHITECTURES)}")
        module = ARCHITECTURES[arch]()
        state = _load_state(file)
        expected = set(module.state_dict())
        # A classifier head the embedding never uses may be absent or of another size.
        state = {k: v for k, v in state.items() if k in expected and not k.startswith("fc.")}
        missing = sorted(k for k in expected - set(state) if not k.startswith("fc."))
        if missing:
            raise EmbeddingError(
                f"{file} is not a {arch} state dict: {len(missing)} parameter(s) missing, "
                f"e.g. {missing[0]!r}"
            )
        try:
            module.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise EmbeddingError(f"{file} does not fit {arch}: {exc}") from exc
    digest = weights_digest(module.state_dict())
    return TorchEmbedder(module, spec, weights_sha256=digest, device=device)


def _load_state(file: Path) -> dict[str, torch.Tensor]:
    try:
        # weights_only: a checkpoint is data, never code to unpickle.
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise EmbeddingError(f"cannot read weights from {file}: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise EmbeddingError(f"{file} does not hold a state dict of tensors")
    # Checkpoints saved from nn.DataParallel prefix every name with "module.".
    return {k.removeprefix("module."): v for k, v in raw.items()}


# -- the deployed model's own features (no compute) ----------------------------------------


class ModelFeatures:
    """Passthrough for the feature vectors events carry (`embedding` in the wire contract).

    The deployed model is black-box here, so its name and version stand in for its weights
    in the fingerprint: a new version is a new feature space.
    """

    def __init__(self, model_name: str, model_version: str | None, dim: int) -> None:
        self._spec = EmbedderSpec(
            name=f"model-features:{model_name}", modality="any", input_size=(1, dim),
            intensity="unit", channels=1, output_dim=dim,
        )  # fmt: skip
        version = hashlib.sha256(f"{model_name}\x00{model_version or ''}".encode()).hexdigest()
        self._weights = version
        self._fingerprint = fingerprint(self._spec, version)

    @property
    def spec(self) -> EmbedderSpec:
        return self._spec

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, batch: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        out = np.asarray(batch, dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != self._spec.output_dim:
            raise EmbeddingError(
                f"{self._spec.name}: expected [N, {self._spec.output_dim}] features, "
                f"got {out.shape}"
            )
        if not np.isfinite(out).all():
            raise EmbeddingError(f"{self._spec.name}: features are not finite")
        return np.ascontiguousarray(out)

    def verify(self) -> None:
        self.embed(np.zeros((2, self._spec.output_dim), dtype=np.float32))


def _write_default_weights(seed: int = DEFAULT_SEED) -> None:
    state = generate_default_state(seed)
    DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, DEFAULT_WEIGHTS)
    print(f"wrote {DEFAULT_WEIGHTS} (weights_sha256 {weights_digest(state)})")


if __name__ == "__main__":
    _write_default_weights()
