"""Benchmark: DICOM file → model-ready array (radwatch) beside a bare pydicom decode.

Images per second for 512×512 and 2048×2048 16-bit DX objects (12 bits stored), stored
uncompressed and as JPEG 2000 lossless, and the ratio of the two (radwatch's overhead:
parsing checks, tag allow-list, rescale/VOI/polarity, pad and resize to 224×224).
Both sides read the same files from disk, interleaved, within the same time budget.

    python bench/dicom.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.images.dicom_reader import read_dicom_bytes  # noqa: E402
from collectors.simulator.phantom import render  # noqa: E402
from collectors.simulator.study import dicom_bytes, plan_study  # noqa: E402

SIZES = {512: 3, 2048: 2}  # image side → distinct files


def make_files(folder: Path) -> dict[tuple[int, str], list[Path]]:
    files: dict[tuple[int, str], list[Path]] = {}
    for side, count in SIZES.items():
        for i in range(count):
            plan = plan_study(1, i)
            display = render(plan.anatomy, side)
            rng = np.random.default_rng(i)
            noisy = display + rng.normal(0, 0.01, display.shape).astype(np.float32)
            stored = np.clip(np.rint(noisy * 4095), 0, 4095).astype(np.uint16)
            raw = dicom_bytes(plan, stored)
            plain = folder / f"{side}-{i}-native.dcm"
            plain.write_bytes(raw)
            ds = pydicom.dcmread(io.BytesIO(raw))
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
            j2k = folder / f"{side}-{i}-j2k.dcm"
            ds.save_as(j2k, enforce_file_format=True)
            files.setdefault((side, "native"), []).append(plain)
            files.setdefault((side, "JPEG 2000"), []).append(j2k)
    return files


def radwatch_decode(path: Path) -> None:
    image = read_dicom_bytes(path.read_bytes(), 224)
    assert image.pixels.shape == (224, 224)


def bare_decode(path: Path) -> None:
    arr = pydicom.dcmread(path).pixel_array
    assert arr.ndim == 2


def measure(paths: list[Path], seconds: float) -> tuple[float, float, int]:
    """Interleave the two decoders over the files until the budget is spent; images/s each."""
    for path in paths:  # warm the page cache and the plugins
        radwatch_decode(path)
        bare_decode(path)
    ours = bare = 0.0
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or n < 2 * len(paths):
        path = paths[n % len(paths)]
        t0 = time.perf_counter()
        radwatch_decode(path)
        t1 = time.perf_counter()
        bare_decode(path)
        t2 = time.perf_counter()
        ours += t1 - t0
        bare += t2 - t1
        n += 1
    return n / ours, n / bare, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="budget per row (both sides)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        files = make_files(Path(tmp))
        print(f"made {sum(len(v) for v in files.values())} files in "
              f"{time.perf_counter() - started:.1f} s\n")  # fmt: skip
        header = ("| image | syntax | file size | radwatch → 224² float32 (img/s) | "
                  "bare pydicom decode (img/s) | radwatch time / bare time | n |")  # fmt: skip
        print(header)
        print("|---|---|---|---|---|---|---|")
        for (side, syntax), paths in files.items():
            ours, bare, n = measure(paths, args.seconds)
            size_kb = np.mean([p.stat().st_size for p in paths]) / 1024
            print(f"| {side}×{side} 16-bit | {syntax} | {size_kb:,.0f} KiB | {ours:,.1f} | "
                  f"{bare:,.1f} | {bare / ours:.2f}× | {n} |")  # fmt: skip
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
