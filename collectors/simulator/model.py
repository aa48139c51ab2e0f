"""The deployed model the synthetic hospital runs: a small CNN nodule detector ("cxr-nodule").

Inference side of the synthetic hospital: the simulator feeds it what a typical inference
service would (stored values ÷ the bit range, resized — PhotometricInterpretation ignored,
the classic pipeline bug the inversion scenario exposes) and puts its score and its
penultimate-layer embedding in each event. Weights are plain-torch state dicts whose SHA-256
is recorded beside them and checked at every load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from collectors.errors import CollectorError

MODEL_NAME = "cxr-nodule"
MODEL_VERSION = "1.4.2"
INPUT_SIZE = 128
EMBEDDING_DIM = 32
THRESHOLD = 0.5
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS = WEIGHTS_DIR / "cxr_nodule.pt"
CARD = WEIGHTS_DIR / "cxr_nodule.json"  # sha256, training provenance and validation AUROC


class WeightsError(CollectorError, RuntimeError):
    """The weights file is missing or does not match its recorded SHA-256."""


class NoduleNet(nn.Module):
    """A small fully-convolutional nodule detector (~25 k parameters, trains on a CPU).

    Strided 5×5 stem and three conv blocks → a 16×16 map of per-location features →
    a 1×1 "embedding" layer (the penultimate layer) → a 1×1 logit per location. The image
    score is the maximum location logit (a nodule is small and anywhere: multiple-instance
    pooling); the image embedding is the global max pool of the penultimate layer.
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True)]  # fmt: skip

        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            *block(8, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            *block(32, 32),
        )
        self.embed = nn.Sequential(nn.Conv2d(32, embedding_dim, 1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(embedding_dim, 1, 1)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit map [N, 1, 16, 16], penultimate features [N, D, 16, 16])."""
        emb = self.embed(self.features(x))
        return self.head(emb), emb

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [N], embeddings [N, D]) for inputs [N, 1, 128, 128]."""
        logit_map, emb = self.maps(x)
        return torch.amax(logit_map, dim=(1, 2, 3)), torch.amax(emb, dim=(2, 3))


def service_input(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """What the inference service feeds the model: stored / (2^bits − 1), resized.

    Deliberately naive: no Modality/VOI LUT, and MONOCHROME1 is *not* inverted.
    """
    scaled = stored.astype(np.float32) * np.float32(1.0 / (2**bits_stored - 1))
    h, w = scaled.shape
    side = max(h, w)
    if h != w:
        square = np.zeros((side, side), dtype=np.float32)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = (
            scaled
        )
        scaled = square
    if side == INPUT_SIZE:
        return scaled
    # The service's own resize (antialiased bilinear), fixed with the weights it was trained
    # with; radwatch's reader resizes its own way.
    tensor = torch.from_numpy(np.ascontiguousarray(scaled))[None, None]
    out = F.interpolate(tensor, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                        antialias=side > INPUT_SIZE, align_corners=False)  # fmt: skip
    return np.clip(out[0, 0].numpy(), 0.0, 1.0)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DeployedModel:
    """The loaded network plus its identity; `predict` is a pure function of its inputs."""

    net: NoduleNet
    sha256: str
    name: str = MODEL_NAME
    version: str = MODEL_VERSION
    threshold: float = THRESHOLD

    @torch.no_grad()
    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs [N, H, W] float32 → (scores [N] in [0, 1], embeddings [N, D] float32)."""
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[:, None]
        logits, emb = self.net(tensor)
        return torch.sigmoid(logits).numpy(), emb.numpy()


def load_deployed(path: Path = WEIGHTS, card: Path = CARD) -> DeployedModel:
    """Load the state dict after checking its SHA-256 against the model card."""
    try:
        expected = json.loads(card.read_text())["sha256"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"model card {card} is missing or unreadable") from exc
    if not path.exists():
        raise WeightsError(f"weights {path} are missing: run scripts/train_deployed_model.py")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"weights {path.name} have SHA-256 {actual}, the card says {expected}")
    net = NoduleNet()
    # weights_only: a state dict of tensors, never arbitrary pickled objects.
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()
    return DeployedModel(net=net, sha256=actual)
