"""CPU benchmark: DICOM file → embedding throughput beside what the cores allow.

Forward-only embeds pre-decoded pixels (TorchEmbedder.embed: CPU lanes); decode-only reads and
decodes the files in this process (collectors.images.dicom_reader through the fenced
ImageFetcher); end-to-end goes from files to vectors through
monitor.ingest.embedding_stage.decoded_batches and stack_pixels, exactly as `radwatch embed`
does. Forward and decode are CPU work that cannot overlap beyond the cores, so the limit is

    cores / (forward CPU-seconds per image + decode CPU-seconds per image)

with both CPU times measured in this run (time.process_time; the DataLoader workers'
CPU from getrusage(RUSAGE_CHILDREN) is printed beside it). Target (issue 19): end-to-end ≥ 0.9
of that limit. On a loaded machine the wall-clock rates drop and the CPU times rise; the
"CPU efficiency" line (useful CPU / CPU the end-to-end run spent) stays meaningful there.

    python bench/embed.py [--images 768] [--files 128] [--rows 512] [--workers N] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.9  # end-to-end / cores limit


def write_dicoms(folder: Path, n: int, rows: int, cols: int, seed: int = 0) -> list[str]:
    """`n` synthetic 12-bit DX objects (a soft body over noise); returns file:// URIs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = 1500 + 1200 * np.exp(
        -(((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - cols / 2) / (cols / 4)) ** 2)
    )
    uris = []
    for i in range(n):
        pixels = np.clip(body + rng.normal(0, 40, body.shape), 0, 4095).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")  # DX for Presentation
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
        ds.Modality, ds.Rows, ds.Columns = "DX", rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.tobytes()
        path = folder / f"img-{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        uris.append(path.as_uri())
    return uris


def _cpu() -> tuple[float, float]:
    """(this process's CPU seconds, its reaped children's CPU seconds)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def end_to_end(
    embedder, uris: list[str], fetcher=None, *, batch_size: int, workers: int,
    forward: bool = True,
) -> float:  # fmt: skip
    """Seconds to go from files to embeddings (or, without `forward`, to pixels only)."""
    from collectors.images.resolver import FetchPolicy, ImageFetcher
    from monitor.ingest.decoding import decoded_batches, stack_pixels

    if fetcher is None:  # the files' own folder is the one root (bench/gpu_embed.py)
        folders = {str(Path(urllib.request.url2pathname(u[len("file://") :])).parent) for u in uris}
        fetcher = ImageFetcher(FetchPolicy.create(roots=sorted(folders)))

    start = time.perf_counter()
    done = 0
    size = embedder.spec.input_size[0]
    for items in decoded_batches(uris, fetcher, size=size, batch_size=batch_size, workers=workers,
                                 with_features=False):  # fmt: skip
        ok = [d for d in items if d.pixels is not None]
        if len(ok) != len(items):
            raise SystemExit(f"bench: {len(items) - len(ok)} image(s) failed to decode")
        host = stack_pixels(ok, embedder.device.pin_memory)
        done += len(embedder.embed(host)) if forward else len(host)
    assert done == len(uris)
    return time.perf_counter() - start


def forward_only(embedder, pixels: np.ndarray, *, batch_size: int) -> float:
    """Seconds to embed pre-decoded [N, H, W] pixels (no file reading, no decoding)."""
    import torch

    tensor = torch.from_numpy(pixels)
    start = time.perf_counter()
    for i in range(0, len(tensor), batch_size):
        embedder.embed(tensor[i : i + batch_size])
    return time.perf_counter() - start


def decode_only(fetcher, uris: list[str], size: int) -> np.ndarray:
    """Read and decode every file in this process, one after another: [N, size, size].

    With one intra-op thread, as a DataLoader worker decodes (its resize is a torch op).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return np.stack([fetcher.load(u, size=size).pixels for u in uris])
    finally:
        torch.set_num_threads(threads)


def _timed(fn, *args, **kwargs) -> tuple[float, float, float, object]:
    """(wall s, own CPU s, children's CPU s, result) of one call."""
    cpu0, wall0 = _cpu(), time.perf_counter()
    result = fn(*args, **kwargs)
    wall, cpu1 = time.perf_counter() - wall0, _cpu()
    return wall, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], result


def main(argv: list[str] | None = None) -> int:
    from monitor.ingest.decoding import decode_workers

    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Enough images that the pipeline's fill (the first batch decoded before any forward
    # pass, the workers' start) weighs a few per cent, as in a backfill of thousands.
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--files", type=int, default=128, help="distinct DICOM files (cycled)")
    parser.add_argument("--rows", type=int, default=512, help="stored image size (square)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=decode_workers(cores),
                        help="decoding processes (default: monitor.ingest.decoding.decode_workers)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repetitions; the best of each is reported")  # fmt: skip
    args = parser.parse_args(argv)

    import torch

    from collectors.images.resolver import FetchPolicy, ImageFetcher
    from detectors.embedding.contract import cpu_lanes
    from detectors.embedding.device import select_device
    from detectors.embedding.encoders import default_encoder

    embedder = default_encoder(select_device("cpu", batch_size=args.batch_size))
    n = args.images
    with tempfile.TemporaryDirectory(prefix="radwatch-bench-") as tmp:
        files = write_dicoms(Path(tmp), min(n, args.files), args.rows, args.rows)
        uris = [files[i % len(files)] for i in range(n)]
        fetcher = ImageFetcher(FetchPolicy.create(roots=[tmp]))  # the fence, as in production
        size = embedder.spec.input_size[0]
        pixels = decode_only(fetcher, uris, size)
        embedder.embed(pixels[: args.batch_size])  # warm-up (allocator, oneDNN primitives)
        end_to_end(embedder, uris[: args.batch_size], fetcher, batch_size=args.batch_size,
                   workers=args.workers)  # fmt: skip
        # Interleaved and best-of-N: on a shared machine, other load only ever slows a run
        # down (and adds CPU time: cache misses, preemptions), so the fastest repetition and
        # the least CPU per image are the closest to the code's own cost.
        fwd = dec = e2e = (float("inf"),) * 3
        for _ in range(args.repeats):
            t = _timed(forward_only, embedder, pixels, batch_size=args.batch_size)
            fwd = min(fwd, t[:3], key=lambda r: r[1])  # least CPU: the work itself
            t = _timed(decode_only, fetcher, uris, size)
            dec = min(dec, t[:3], key=lambda r: r[1])
            t = _timed(end_to_end, embedder, uris, fetcher, batch_size=args.batch_size,
                       workers=args.workers)  # fmt: skip
            e2e = min(e2e, t[:3], key=lambda r: r[0])  # fastest wall clock
    fwd_cpu, dec_cpu = fwd[1] / n, dec[1] / n
    limit = cores / (fwd_cpu + dec_cpu)
    rate = n / e2e[0]
    ratio = rate / limit
    e2e_cpu = (e2e[1] + e2e[2]) / n
    print(f"default encoder on CPU: {cpu_lanes()} forward lane(s) of 1 thread "
          f"({torch.get_num_threads()} intra-op threads allowed), {args.workers} decoding "
          f"process(es), {cores} cores; {n} DICOM files ({len(files)} distinct) {args.rows}×{args.rows} 12-bit → "
          f"{size}×{size}, batch {args.batch_size}, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")  # fmt: skip
    print(f"{'path':<40} {'seconds':>8} {'images/s':>9} {'CPU ms/img':>11}")
    print(f"{'forward-only (pre-decoded pixels)':<40} {fwd[0]:>8.2f} {n / fwd[0]:>9.1f} "
          f"{fwd_cpu * 1e3:>11.2f}")  # fmt: skip
    print(f"{'decode-only (1 process, in order)':<40} {dec[0]:>8.2f} {n / dec[0]:>9.1f} "
          f"{dec_cpu * 1e3:>11.2f}")  # fmt: skip
    print(f"{'end-to-end (DICOM file → vector)':<40} {e2e[0]:>8.2f} {rate:>9.1f} "
          f"{e2e_cpu * 1e3:>11.2f}  (this process {e2e[1] / n * 1e3:.2f} + decoders "
          f"{e2e[2] / n * 1e3:.2f})")  # fmt: skip
    print(f"{'cores limit: cores / (fwd + dec CPU)':<40} {'':>8} {limit:>9.1f} "
          f"{(fwd_cpu + dec_cpu) * 1e3:>11.2f}")  # fmt: skip
    print(f"end-to-end / cores limit = {ratio:.2f} (target ≥ {TARGET}: "
          f"{'met' if ratio >= TARGET else 'NOT met'}); end-to-end / forward-only = "
          f"{rate * fwd[0] / n:.2f}; CPU efficiency (useful / spent) = "
          f"{(fwd_cpu + dec_cpu) / e2e_cpu:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
