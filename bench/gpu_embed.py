"""GPU benchmark: images/s for the default encoder and a ResNet-50 at 224×224 with bf16 AMP.

Forward-only (device-resident batches, the model alone), decode-only (DICOM files decoded by
the worker processes, no forward) and end to end (DICOM files decoded by worker processes
into pinned shared-memory batches, non-blocking copies, forward, vectors back on the host),
through monitor.ingest.decoding and TorchEmbedder.embed as `radwatch embed` runs them.
Target (issue 19): end-to-end ≥ 0.9 of forward-only; where decode-only is below forward-only,
the decoding processes are the ceiling and the table says so. Needs CUDA; made to finish in
< 3 min on one H200. Needs torch, numpy and pydicom only (bench/gpu_run.sh installs the carried
pydicom wheel). `--device cpu` runs the same code on the CPU with tiny counts (a smoke test,
not a result). The ResNet-50 is detectors.embedding.encoders.resnet50 (torchvision-compatible,
written here, since torchvision is not a dependency), with random weights: speed does not
depend on them.

    python bench/gpu_embed.py [--images 4096] [--batch-size 256] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = 0.9  # end-to-end / forward-only


def _forward_only(embedder, n: int, batch_size: int) -> float:
    """Seconds for `n` images through the model alone, input already on the device."""
    import torch

    cfg = embedder.device
    rows, cols = embedder.spec.input_size
    x = torch.rand(batch_size, embedder.spec.channels, rows, cols, device=cfg.torch_device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    steps = max(1, n // batch_size)

    def run(k: int) -> None:
        with torch.inference_mode():
            for _ in range(k):
                if cfg.amp_dtype is not None:
                    with torch.autocast(device_type="cuda", dtype=cfg.amp_dtype):
                        embedder.module(x)
                else:
                    embedder.module(x)
        if cfg.is_cuda:
            torch.cuda.synchronize(cfg.torch_device)

    run(min(3, steps))  # warm-up: cuDNN autotuning, allocator
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) * n / (steps * batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (smoke run)")
    parser.add_argument("--images", type=int, default=4096, help="images per measurement")
    parser.add_argument("--files", type=int, default=512, help="distinct DICOM files (cycled)")
    parser.add_argument("--rows", type=int, default=512, help="stored image size (square)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="network input (smoke runs: less)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: monitor.ingest.decoding.decode_workers)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2, help="best of N end-to-end runs")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_embed: CUDA is not available on this machine; this benchmark needs an "
              "NVIDIA GPU (use --device cpu --images 8 for a smoke run of the same code)",
              file=sys.stderr)  # fmt: skip
        return 2

    from dataclasses import replace

    from embed import end_to_end, write_dicoms

    from detectors.embedding.contract import EmbedderSpec, TorchEmbedder, weights_digest
    from detectors.embedding.device import select_device
    from detectors.embedding.encoders import default_encoder, resnet50
    from monitor.ingest.decoding import decode_workers

    torch.backends.cudnn.benchmark = True
    # A batch never larger than the run: a 16-image smoke run is one batch of 16, not 256.
    args.batch_size = min(args.batch_size, args.images)
    cfg = select_device(args.device, batch_size=args.batch_size)
    cores = len(os.sched_getaffinity(0))
    workers = args.workers if args.workers is not None else decode_workers(cores, cuda=cfg.is_cuda)
    torch.manual_seed(0)
    resnet = resnet50()
    size = (args.size, args.size)
    spec = EmbedderSpec("resnet50-random", "any", size, "imagenet", 3, 2048)
    default = default_encoder(cfg)
    if size != default.spec.input_size:
        default = TorchEmbedder(default.module, replace(default.spec, input_size=size),
                                weights_sha256=default.weights_sha256, device=cfg)  # fmt: skip
    embedders = {
        f"default (1×{args.size}², 256-d)": default,
        f"resnet50 (3×{args.size}², 2048-d)": TorchEmbedder(
            resnet, spec, weights_sha256=weights_digest(resnet.state_dict()), device=cfg
        ),
    }
    for embedder in embedders.values():
        embedder.verify()
    n_files = min(args.files, args.images)
    rows = []
    with tempfile.TemporaryDirectory(prefix="radwatch-gpu-bench-") as tmp:
        files = write_dicoms(Path(tmp), n_files, args.rows, args.rows)
        uris = [files[i % n_files] for i in range(args.images)]
        for name, embedder in embedders.items():
            params = sum(p.numel() for p in embedder.module.parameters())
            t_fwd = _forward_only(embedder, args.images, args.batch_size)
            # Warm-up: the workers' first imports, cuDNN autotuning for the host path.
            end_to_end(embedder, uris[: args.batch_size], batch_size=args.batch_size,
                       workers=workers)  # fmt: skip
            t_e2e = min(end_to_end(embedder, uris, batch_size=args.batch_size, workers=workers)
                        for _ in range(max(1, args.repeats)))  # fmt: skip
            t_dec = end_to_end(embedder, uris, batch_size=args.batch_size, workers=workers,
                               forward=False)  # fmt: skip
            n = args.images
            rows.append((name, params, n / t_fwd, n / t_dec, n / t_e2e))
    amp = str(cfg.amp_dtype).removeprefix("torch.") if cfg.amp_dtype else "float32"
    gpu = torch.cuda.get_device_name(cfg.torch_device) if cfg.is_cuda else "CPU (smoke run)"
    print(f"{gpu}, {amp + ' autocast' if cfg.amp_dtype else amp}, channels_last={cfg.channels_last}, batch {args.batch_size}, "
          f"{args.images} images ({n_files} files cycled), {workers} decoding processes on "
          f"{cores} cores, DICOM {args.rows}×{args.rows} 12-bit → {args.size}×{args.size}, "
          f"torch {torch.__version__}")  # fmt: skip
    print(f"{'encoder':<28} {'params':>11} {'forward img/s':>14} {'decode img/s':>13} "
          f"{'end-to-end img/s':>17} {'ratio':>6}  bound")  # fmt: skip
    for name, params, fwd, dec, e2e in rows:
        bound = "decoding" if dec < fwd else "forward"
        print(f"{name:<28} {params:>11,} {fwd:>14.1f} {dec:>13.1f} {e2e:>17.1f} "
              f"{e2e / fwd:>6.2f}  {bound}")  # fmt: skip
    print(f"ratio = end-to-end / forward-only; target ≥ {TARGET} (where decoding is the bound, "
          f"the best possible is decode / forward)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
