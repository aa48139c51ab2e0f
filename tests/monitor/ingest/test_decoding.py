"""The image path's throughput machinery: batches decoded in workers cross to the forward pass
without a copy, CPU forward passes run in single-threaded lanes that leave the process's own
thread setting alone, and the GPU benchmark runs on a machine without PostgreSQL or crypto
packages (bench/gpu_run.sh carries pydicom only)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_embedding_stage import write_dicom

from collectors.images.resolver import FetchPolicy, ImageFetcher
from detectors.embedding import contract
from detectors.embedding.encoders import default_encoder
from monitor.ingest.decoding import decode_workers, decoded_batches, stack_pixels

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    uris = [write_dicom(tmp_path / f"{i}.dcm", seed=i) for i in range(7)]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a DICOM object")
    uris.insert(2, bad.as_uri())  # a failed item in the middle of the first batch
    return uris


def test_worker_batches_cross_without_a_copy_and_match_in_process_decoding(tmp_path, files):
    fetcher = ImageFetcher(FetchPolicy.create([tmp_path]))
    batches = list(decoded_batches(files, fetcher, size=64, batch_size=4, workers=1,
                                   with_features=False, pin=False))  # fmt: skip
    items = [d for batch in batches for d in batch]
    assert [d.index for d in items] == list(range(len(files)))
    assert items[2].pixels is None and items[2].error is not None
    for d in items:
        if d.pixels is not None:
            expected = fetcher.load(files[d.index], size=64).pixels
            np.testing.assert_array_equal(d.pixels, expected)  # the right row for each item
    first = batches[0]
    host = stack_pixels(first, pin=False)
    ok = [d for d in first if d.pixels is not None]
    assert host.shape == (3, 64, 64)
    # The worker's stacked tensor itself (shared memory), not a copy of it.
    assert host.data_ptr() == ok[0].stacked.data_ptr()
    np.testing.assert_array_equal(host.numpy(), np.stack([d.pixels for d in ok]))
    # Out of order: no view can serve it, so the pixels are copied, still right.
    reordered = stack_pixels([ok[2], ok[0]], pin=False)
    assert reordered.data_ptr() != ok[0].stacked.data_ptr()
    np.testing.assert_array_equal(reordered.numpy(), np.stack([ok[2].pixels, ok[0].pixels]))


def test_cpu_lanes_match_one_thread_and_keep_the_process_setting() -> None:
    embedder = default_encoder()
    x = np.random.default_rng(0).random((24, 224, 224), dtype=np.float32)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one lane: the batch in order, on this thread
        one = embedder.embed(x)
        torch.set_num_threads(2)
        lanes = embedder.embed(x)
        # The process keeps the count it set; each lane thread runs one intra-op thread.
        assert torch.get_num_threads() == 2
        pool = contract._lane_pool(2)
        assert set(pool.map(lambda _: torch.get_num_threads(), range(8))) == {1}
        names = {t.name.rsplit("_", 1)[0] for t in threading.enumerate()}
        assert "radwatch-lane" in names
    finally:
        torch.set_num_threads(saved)
    # Same images, chunks of 12 on two lanes vs 24 in one: oneDNN's per-image results agree
    # to float32 rounding (tolerance 1e-5 on unit-scale embeddings).
    np.testing.assert_allclose(lanes, one, rtol=0, atol=1e-5)


def test_decode_workers_fill_the_cores_the_forward_pass_leaves() -> None:
    assert decode_workers(2) == 2 and decode_workers(1) == 1 and decode_workers(16) == 8
    assert decode_workers(16, cuda=True) == 15 and decode_workers(1, cuda=True) == 1


_BLOCKED = ("psycopg", "psycopg_binary", "cryptography", "pydantic", "pydantic_settings",
            "msgspec", "orjson")  # fmt: skip
_RUN_WITHOUT = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")
sys.meta_path.insert(0, Refuse())
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_bench_runs_without_database_or_crypto_packages() -> None:
    argv = [str(REPO / "bench" / "gpu_embed.py"), "--device", "cpu", "--images", "4",
            "--batch-size", "2", "--size", "64", "--rows", "128", "--workers", "1"]  # fmt: skip
    code = _RUN_WITHOUT.format(blocked=set(_BLOCKED), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decode img/s" in proc.stdout and "resnet50" in proc.stdout
