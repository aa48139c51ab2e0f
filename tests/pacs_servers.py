"""Real servers for image-path tests: an Orthanc PACS with DICOMweb, and a PACS that stalls.

Used by tests/collectors/test_image_resolver.py and tests/monitor/test_image_stage.py
(importable as `pacs_servers`: tests/ is on sys.path through the root conftest).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    url: str  # http://127.0.0.1:PORT

    def upload(self, raw: bytes) -> str:
        """STOW through Orthanc's REST API (POST /instances); returns the WADO-RS URL."""
        request = urllib.request.Request(
            f"{self.url}/instances", data=raw, method="POST",
            headers={"Content-Type": "application/dicom"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["Status"] in ("Success", "AlreadyStored")
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        return self.wado_url(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    def wado_url(self, study: str, series: str, sop: str) -> str:
        return f"{self.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"


@contextmanager
def orthanc(workdir: Path) -> Iterator[Orthanc]:
    """Start Orthanc on free ports with its DICOMweb plugin and a temporary storage dir."""
    http_port, dicom_port = free_port(), free_port()
    storage = workdir / "orthanc-storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "radwatch-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("w")
    process = subprocess.Popen([ORTHANC, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/system", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Orthanc did not start: {(workdir / 'orthanc.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield Orthanc(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def stalling_server() -> Iterator[str]:
    """An HTTP 'PACS' that accepts connections and never answers; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
