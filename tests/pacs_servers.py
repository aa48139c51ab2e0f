"""Real servers for image-path tests: an Orthanc PACS with DICOMweb (optionally with HTTP
authentication, and restartable on the same port and storage), a PACS that stalls, one that
trickles, one that redirects, and a listener that records every connection made to it.

Used by tests/collectors/images/test_dicomweb.py and tests/monitor/ingest/test_image_stage.py
(importable as `pacs_servers`: tests/ is on sys.path through the root conftest). Ports come
from tests/support.py; the module-scoped `pacs` fixture (one Orthanc per test module) is in
tests/conftest.py.
"""

from __future__ import annotations

import base64
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
from support import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@dataclass(frozen=True)
class Orthanc:
    url: str  # http://127.0.0.1:PORT
    user: tuple[str, str] | None = None  # basic-auth credentials when authentication is on

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def _auth(self) -> dict[str, str]:
        if self.user is None:
            return {}
        token = base64.b64encode(f"{self.user[0]}:{self.user[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def upload(self, raw: bytes) -> str:
        """STOW through Orthanc's REST API (POST /instances); returns the WADO-RS URL."""
        request = urllib.request.Request(
            f"{self.url}/instances", data=raw, method="POST",
            headers={"Content-Type": "application/dicom", **self._auth()},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["Status"] in ("Success", "AlreadyStored")
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        return self.wado_url(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    def wado_url(self, study: str, series: str, sop: str) -> str:
        return f"{self.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"


class OrthancProcess:
    """One Orthanc, stoppable and restartable on the same ports and storage (outage tests)."""

    def __init__(self, workdir: Path, user: tuple[str, str] | None = None) -> None:
        self.workdir = workdir
        self.http_port, dicom_port = free_port(), free_port()
        storage = workdir / "orthanc-storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "radwatch-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": dicom_port,
            "RemoteAccessAllowed": False,
            # Orthanc's HTTP basic authentication (Orthanc Book, "Configuration").
            "AuthenticationEnabled": user is not None,
            "RegisteredUsers": {user[0]: user[1]} if user else {},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config))
        self.server = Orthanc(f"http://127.0.0.1:{self.http_port}", user)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Orthanc:
        log = (self.workdir / "orthanc.log").open("a")
        self.process = subprocess.Popen(
            [ORTHANC, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(
                    f"{self.server.url}/system", headers=self.server._auth()
                )
                with urllib.request.urlopen(request, timeout=2):
                    return self.server
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "Orthanc did not start: "
                        f"{(self.workdir / 'orthanc.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextmanager
def orthanc(workdir: Path, user: tuple[str, str] | None = None) -> Iterator[Orthanc]:
    """Start Orthanc on free ports with its DICOMweb plugin and a temporary storage dir."""
    process = OrthancProcess(workdir, user)
    try:
        yield process.start()
    finally:
        process.stop()


class RecordingListener:
    """A TCP listener that accepts, records and closes every connection (SSRF canary)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()


@contextmanager
def recording_listener() -> Iterator[RecordingListener]:
    listener = RecordingListener()
    try:
        yield listener
    finally:
        listener.close()


@contextmanager
def scripted_server(answer: bytes, *, trickle_s: float = 0.0) -> Iterator[str]:
    """An HTTP server sending `answer` to every request (one byte per `trickle_s` if set)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)
                if not trickle_s:
                    conn.sendall(answer)
                    return
                for byte in answer:
                    if stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(trickle_s)
            except OSError:
                return  # the client gave up: that is what the tests want

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


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
