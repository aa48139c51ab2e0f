"""The embedder contract: reproducible embeddings, honest fingerprints, loud verification."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from detectors.embedding.contract import EmbedderSpec, EmbeddingError, TorchEmbedder, weights_digest
from detectors.embedding.device import DeviceError, select_device
from detectors.embedding.encoders import (
    DEFAULT_SPEC,
    DEFAULT_WEIGHTS,
    DEFAULT_WEIGHTS_SHA256,
    DefaultEncoder,
    ModelFeatures,
    default_encoder,
    generate_default_state,
    load_checkpoint,
    resnet18,
)

REPO = Path(__file__).resolve().parents[3]
SEED = 7


def _images(n: int = 6, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 224, 224), dtype=np.float32)


def test_same_input_same_embedding_bit_exact_across_processes(tmp_path: Path) -> None:
    here = default_encoder().embed(_images())
    assert here.dtype == np.float32 and here.shape == (6, DEFAULT_SPEC.output_dim)
    out = tmp_path / "other.npy"
    script = textwrap.dedent(
        f"""
        import numpy as np
        from detectors.embedding.encoders import default_encoder
        x = np.random.default_rng({SEED}).random((6, 224, 224), dtype=np.float32)
        np.save({str(out)!r}, default_encoder().embed(x))
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
    there = np.load(out)
    assert there.tobytes() == here.tobytes()  # bit-exact, not merely close


def test_committed_weights_are_regenerated_exactly_from_the_seed() -> None:
    # Every machine gets the same fingerprint: the file is the seed's weights, bit for bit.
    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert weights_digest(state) == DEFAULT_WEIGHTS_SHA256
    assert weights_digest(generate_default_state()) == DEFAULT_WEIGHTS_SHA256
    assert DEFAULT_WEIGHTS.stat().st_size < 8 * 2**20


def test_fingerprint_changes_iff_weights_or_spec_change() -> None:
    state = generate_default_state()

    def build(spec: EmbedderSpec, weights: dict[str, torch.Tensor]) -> TorchEmbedder:
        module = DefaultEncoder()
        module.load_state_dict(weights)
        return TorchEmbedder(module, spec, weights_sha256=weights_digest(module.state_dict()))

    base = build(DEFAULT_SPEC, state).fingerprint
    assert build(DEFAULT_SPEC, {k: v.clone() for k, v in state.items()}).fingerprint == base
    assert default_encoder().fingerprint == base
    nudged = {k: v.clone() for k, v in state.items()}
    nudged["features.0.bias"][0] += 1e-6
    assert build(DEFAULT_SPEC, nudged).fingerprint != base
    for change in ({"intensity": "unit"}, {"input_size": (256, 256)}, {"name": "other"},
                   {"modality": "CT"}):  # fmt: skip
        assert build(dataclasses.replace(DEFAULT_SPEC, **change), state).fingerprint != base
    assert generate_default_state(seed=1)["features.0.weight"].ne(state["features.0.weight"]).any()


def test_verify_rejects_a_checkpoint_with_the_wrong_output_shape(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.manual_seed(SEED)
    torch.save(resnet18().state_dict(), path)
    spec = EmbedderSpec("site-resnet", "DX", (64, 64), "imagenet", 3, output_dim=256)
    embedder = load_checkpoint(path, spec, arch="resnet18")
    with pytest.raises(EmbeddingError, match=r"returned shape \(2, 512\).*says \(2, 256\)"):
        embedder.verify()
    good = load_checkpoint(path, dataclasses.replace(spec, output_dim=512), arch="resnet18")
    good.verify()
    assert good.embed(_images(3)[:, :64, :64]).shape == (3, 512)


def test_torchscript_checkpoint_loads_and_is_verified(tmp_path: Path) -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, stride=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).flatten(1)  # no pooling: the output size depends on the input

    torch.manual_seed(SEED)
    path = tmp_path / "tiny.ts"
    torch.jit.script(Tiny()).save(str(path))
    spec = EmbedderSpec("tiny", "any", (32, 32), "unit", 1, output_dim=8)
    with pytest.raises(EmbeddingError, match=r"returned shape \(2, 512\)"):
        load_checkpoint(path, spec).verify()
    ok = load_checkpoint(path, dataclasses.replace(spec, input_size=(4, 4)))
    ok.verify()
    assert ok.embed(np.zeros((2, 4, 4), dtype=np.float32)).shape == (2, 8)


def test_checkpoints_are_local_files_in_known_formats(tmp_path: Path) -> None:
    spec = dataclasses.replace(DEFAULT_SPEC, name="user")
    with pytest.raises(EmbeddingError, match="local paths only"):
        load_checkpoint("https://example.org/model.pt", spec)
    with pytest.raises(EmbeddingError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt", spec)
    torch.save(generate_default_state(), tmp_path / "state.pt")
    with pytest.raises(EmbeddingError, match="not a TorchScript archive"):
        load_checkpoint(tmp_path / "state.pt", spec)
    with pytest.raises(EmbeddingError, match="not a resnet18 state dict"):
        load_checkpoint(tmp_path / "state.pt", spec, arch="resnet18")
    user = load_checkpoint(tmp_path / "state.pt", spec, arch="default-cnn")
    user.verify()
    assert user.fingerprint != default_encoder().fingerprint  # same weights, another spec


def test_altered_default_weights_are_refused(tmp_path: Path) -> None:
    state = generate_default_state()
    state["features.8.bias"][3] = 0.5
    torch.save(state, tmp_path / "altered.pt")
    with pytest.raises(EmbeddingError, match="does not hold the default encoder's weights"):
        default_encoder(weights=tmp_path / "altered.pt")


def test_embed_accepts_lists_of_any_size_and_resizes() -> None:
    encoder = default_encoder()
    x = _images(2)
    stacked = encoder.embed(x)
    listed = encoder.embed([x[0], x[1]])
    assert listed.tobytes() == stacked.tobytes()
    big = np.kron(x[0], np.ones((2, 2), dtype=np.float32))  # 448×448, resized down
    assert encoder.embed([big]).shape == (1, 256)
    assert encoder.embed(np.empty((0, 224, 224), dtype=np.float32)).shape == (0, 256)
    with pytest.raises(EmbeddingError, match="expected"):
        encoder.embed(np.zeros((224, 224), dtype=np.float32))


def test_model_features_passthrough() -> None:
    features = ModelFeatures("cxr-nodule", "1.4.2", 16)
    features.verify()
    x = np.random.default_rng(SEED).normal(size=(5, 16))
    assert np.array_equal(features.embed(x), x.astype(np.float32))
    assert features.fingerprint != ModelFeatures("cxr-nodule", "1.5.0", 16).fingerprint
    with pytest.raises(EmbeddingError, match=r"expected \[N, 16\]"):
        features.embed(np.zeros((2, 8)))


def test_device_selection() -> None:
    cpu = select_device("cpu")
    assert cpu.device == "cpu" and cpu.amp_dtype is None and not cpu.pin_memory
    assert not cpu.channels_last and not cpu.non_blocking and cpu.batch_size > 0
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
    auto = select_device(None)
    if torch.cuda.is_available():
        assert auto.is_cuda and auto.pin_memory and auto.channels_last
    else:
        assert auto.device == "cpu"
        with pytest.raises(DeviceError, match="CUDA is not available"):
            select_device("cuda")


def test_gpu_bench_refuses_without_cuda_and_its_cpu_path_runs(capsys) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_embed
    finally:
        sys.path.remove(str(REPO / "bench"))
    if not torch.cuda.is_available():
        assert gpu_embed.main([]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    # The same code on the CPU with tiny counts: decode workers, both encoders, the table.
    smoke = ["--device", "cpu", "--images", "4", "--batch-size", "2", "--size", "64",
             "--rows", "128", "--workers", "1"]  # fmt: skip
    assert gpu_embed.main(smoke) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "default" in out and "forward img/s" in out
