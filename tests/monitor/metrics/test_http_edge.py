"""The metrics server under hostile clients, and /metrics behind basic auth and TLS.

Real sockets against a real MetricsServer on a free loopback port: clients that send
nothing or trickle, a flood of idle connections (the review's 1,000 sockets held 1,003
threads), and the exporter-toolkit web-config with a self-signed certificate generated
here and a bcrypt hash, read by urllib over real TLS. The `radwatch metrics` process itself
is started to show its start-up line about the webhook and its exit 2 on a bad web config.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import selectors
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from conftest import REPO, radwatch_cmd, settings_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Counter

from monitor.errors import ConfigError
from monitor.metrics.server import WORKERS, MetricsServer
from monitor.metrics.web_config import load_web_config


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("radwatch_test_events", "A value to scrape.", registry=reg).inc(3)
    return reg


def connect(server: MetricsServer) -> socket.socket:
    host, port = server.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def scrape(url: str, **kw) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10, **kw) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_silent_and_trickling_clients_are_cut_at_the_deadline() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), read_timeout=1.0).start()
    try:
        silent = connect(server)
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed by the server, no answer
        assert 0.8 < time.monotonic() - started < 3
        # One header byte every 0.2 s: each read is quick, the request never completes;
        # the deadline is per request, not per read.
        trickle = connect(server)
        started = time.monotonic()
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > 5:
                break
        assert closed or trickle.recv(100) == b""
        assert time.monotonic() - started < 4
        silent.close()
        trickle.close()
    finally:
        server.stop()


def test_idle_connections_hold_no_threads_and_a_scrape_still_answers() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), max_connections=64).start()
    baseline = threading.active_count()
    idle = []
    try:
        for _ in range(500):
            idle.append(connect(server))
        time.sleep(0.5)
        # The server's own threads: its event loop (already counted) and at most WORKERS.
        assert threading.active_count() <= baseline + WORKERS
        assert server.connections <= 64
        started = time.monotonic()
        status, body = scrape(f"http://{server.address}/metrics")
        assert status == 200 and b"radwatch_test_events_total 3.0" in body
        assert time.monotonic() - started < 2
        assert threading.active_count() <= baseline + WORKERS
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_excess_connections_are_closed_at_once() -> None:
    server = MetricsServer("127.0.0.1:0", registry(), max_connections=8).start()
    socks = [connect(server) for _ in range(40)]
    try:
        time.sleep(0.3)
        # All but the newest 8 were dropped (the oldest idle ones first), without waiting
        # for the read timeout.
        sel = selectors.DefaultSelector()
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        ready = {key.fileobj for key, _ in sel.select(timeout=1)}
        closed = [s for s in ready if s.recv(1) == b""]
        assert len(closed) >= 40 - 8
        assert set(socks[-8:]).isdisjoint(closed)
    finally:
        for sock in socks:
            sock.close()
        server.stop()


# -- /metrics behind the exporter-toolkit web-config ------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radwatch-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_metrics_with_basic_auth_and_tls(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    # Relative paths are relative to the web-config file, as in exporter-toolkit.
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                      f"basic_auth_users:\n  prometheus: '{hashed}'\n")  # fmt: skip
    server = MetricsServer("127.0.0.1:0", registry(), web_config=load_web_config(config)).start()
    client = ssl.create_default_context(cafile=str(cert))
    base = f"https://{server.address}"
    try:
        assert server.scheme == "https"
        ok = urllib.request.Request(base + "/metrics", headers=basic("prometheus", "scrape-secret"))
        status, body = scrape(ok, context=client)  # type: ignore[arg-type]
        assert status == 200 and b"radwatch_test_events_total 3.0" in body
        for headers in ({}, basic("prometheus", "wrong"), basic("nobody", "scrape-secret"),
                        {"Authorization": "Basic !!!"}):  # fmt: skip
            request = urllib.request.Request(base + "/metrics", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=10, context=client)
                raise AssertionError("served without valid credentials")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401 and exc.headers["WWW-Authenticate"].startswith("Basic")
        # Health stays open for probes; plain HTTP and unverified TLS get nowhere.
        assert scrape(base + "/healthz", context=client)[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{server.address}/healthz", timeout=5).read()
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(base + "/healthz", timeout=5)
    finally:
        server.stop()


@pytest.mark.parametrize("text,message", [
    ("basic_auth_users:\n  prometheus: plain-password\n", "not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: server.crt\n", "needs cert_file and key_file"),
    ("tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n", "cannot load"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert: x\n",
     "unsupported key"),
    ("basic_auth_users: {}\nrate_limit: 5\n", "unsupported key"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  min_version: TLS10\n", "min_version"),
    ("- a list\n", "must be a mapping"),
])  # fmt: skip
def test_web_config_problems_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    self_signed(tmp_path)
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_web_config(tmp_path / "web.yml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(tmp_path / "missing.yml")


# -- the `radwatch metrics` process -----------------------------------------------------------


def test_metrics_command_says_the_webhook_is_off_and_refuses_a_bad_web_config(settings,
                                                                             tmp_path) -> None:  # fmt: skip
    env = settings_env(settings)
    proc = subprocess.Popen(radwatch_cmd("metrics", "--addr", "127.0.0.1:0"), env=env,
                            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "webhook OFF" in line:
                break
        assert any("webhook OFF" in x and "RADWATCH_WEBHOOK_TOKEN" in x for x in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (tmp_path / "web.yml").write_text("basic_auth_users: {}\ntypo_key: 1\n")
    env["RADWATCH_METRICS_WEB_CONFIG"] = str(tmp_path / "web.yml")
    started = time.monotonic()
    result = subprocess.run(radwatch_cmd("metrics", "--addr", "127.0.0.1:0"), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "radwatch: metrics web config: unsupported key(s) typo_key "
        "(supported: basic_auth_users, http_server_config, tls_server_config)"
    ]
    assert time.monotonic() - started < 30
