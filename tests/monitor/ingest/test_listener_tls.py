"""TLS on `radwatch hl7-listen`'s two doors (monitor/ingest/listener_tls.py): MLLP inside TLS
and FHIR over HTTPS, with real ssl clients, the real listener and the embedded broker.

A throwaway PKI is made here (the `cryptography` package): a CA, the listener's certificate
(127.0.0.1), a client certificate from the same CA, and a stranger CA with its own client.
Checks: an ORU^R01 over MLLP-in-TLS gets its ACK; a plaintext client, a silent one, a client
without a certificate or from another CA are refused, counted and logged in one line (no
traceback, no PHI), and the listener serves the next TLS client; FHIR POST over HTTPS with the
token works and plain HTTP is refused; the command serves both doors over TLS and exits 2 with
one line, in seconds, when a file is missing, unreadable, encrypted or does not match.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, radwatch_cmd, settings_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY
from report_messages import MARKERS, diagnostic_report, oru
from test_hl7_listener import msa, serving, start_command

from collectors.reports_in import FhirLimits, MllpDecoder, frame
from monitor.config import Settings
from monitor.ingest.fhir_http import FhirEndpoint
from monitor.ingest.listener_tls import listener_tls
from monitor.ingest.report_labels import ModelFindings, SinkResources
from monitor.ingest.report_listener import ListenerConfig, ReportListener

MODELS = (ModelFindings("cxr-nodule", ("nodule",)),)
TOKEN = "fhir-tls-token-0123456789"
FAST_S = 10.0  # "in seconds", Python start-up included (as tests/monitor/test_misconfiguration.py)


# -- a throwaway PKI --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the listener does not trust
    stranger_key: Path
    other_key: Path  # a key that is not the server certificate's

    def client(self, *, certificate: str | None = "client") -> ssl.SSLContext:
        """A client that trusts the CA, with the named client certificate (or none)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if certificate == "client":
            context.load_cert_chain(self.client_cert, self.client_key)
        elif certificate == "stranger":
            context.load_cert_chain(self.stranger_cert, self.stranger_key)
        return context


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate | None,
           key: ec.EllipticCurvePrivateKey | None) -> tuple[Path, Path]:  # fmt: skip
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    if cert is not None:
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    keys = {n: ec.generate_private_key(ec.SECP256R1())
            for n in ("ca", "server", "client", "stranger-ca", "stranger", "other")}  # fmt: skip
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radwatch test CA")])
    stranger_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    ca, _ = _write(folder, "ca", _certificate("radwatch test CA", keys["ca"], ca_name,
                                              keys["ca"], ca=True), None)  # fmt: skip
    server = _write(folder, "server", _certificate("radwatch listener", keys["server"], ca_name,
                                                   keys["ca"], ca=False), keys["server"])  # fmt: skip
    client = _write(folder, "client", _certificate("interface engine", keys["client"], ca_name,
                                                   keys["ca"], ca=False), keys["client"])  # fmt: skip
    stranger = _write(folder, "stranger", _certificate("stranger", keys["stranger"],
                                                       stranger_name, keys["stranger-ca"],
                                                       ca=False), keys["stranger"])  # fmt: skip
    _, other_key = _write(folder, "other", None, keys["other"])
    return Pki(ca, *server, *client, *stranger, other_key)


# -- helpers ----------------------------------------------------------------------------------


def tls_settings(settings: Settings, pki: Pki, *, mutual: bool = False) -> Settings:
    return settings.replace(hl7_tls_cert_file=pki.server_cert, hl7_tls_key_file=pki.server_key,
                            hl7_tls_client_ca_file=pki.ca if mutual else None)  # fmt: skip


def tls_ack(address: tuple[str, int], context: ssl.SSLContext, message: bytes) -> bytes | None:
    """One message over MLLP inside TLS: its ACK, or None when the listener hung up on us."""
    raw = socket.create_connection(address, timeout=30)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        try:
            sock.sendall(frame(message))
            decoder = MllpDecoder()
            while chunk := sock.recv(65536):
                for block in decoder.feed(chunk):
                    return block.content
        except (ssl.SSLError, ConnectionError):
            pass  # TLS 1.3: a refused client certificate shows at the first read
    return None


def plaintext_reply(address: tuple[str, int], message: bytes) -> bytes:
    """What a client speaking MLLP without TLS gets back before the listener hangs up."""
    received = b""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(frame(message))
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionError:
            pass
    return received


def refused(reason: str) -> float:
    """radwatch_listener_events_total{listener="reports",outcome="refused",reason} now."""
    labels = {"listener": "reports", "outcome": "refused", "reason": reason}
    return REGISTRY.get_sample_value("radwatch_listener_events_total", labels) or 0.0


# -- MLLP inside TLS --------------------------------------------------------------------------


def test_mllp_over_tls_acks_and_a_plaintext_or_silent_client_does_not_stop_it(
    settings: Settings, pki: Pki, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="kafka")
    context = listener_tls(tls_settings(settings, pki))
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    resources = SinkResources(settings, MODELS)
    before = refused("not_tls")
    try:
        with serving(
            ReportListener(resources.sink, ListenerConfig(port=0, tls=context))
        ) as listener:
            client = pki.client(certificate=None)  # no client CA configured: none needed
            ack = tls_ack(listener.address, client, oru(control_id="T1"))
            assert ack is not None and msa(ack)[1:3] == ["AA", "T1"]
            # A client that connects and says nothing waits in its own thread: the next is served.
            with socket.create_connection(listener.address, timeout=30):
                ack = tls_ack(listener.address, client, oru(control_id="T2"))
                assert ack is not None and msa(ack)[1:3] == ["AA", "T2"]
            # MLLP in clear: no ACK, the report never read; the listener carries on.
            assert b"MSA|" not in plaintext_reply(listener.address, oru(control_id="P1"))
            ack = tls_ack(listener.address, client, oru(control_id="T3"))
            assert ack is not None and msa(ack)[1:3] == ["AA", "T3"]
        assert refused("not_tls") == before + 1
        assert resources.sink.snapshot()["refused:not_tls"] == 1
        assert resources.sink.snapshot()["accepted"] == 3
    finally:
        resources.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and r.name.startswith("monitor")]  # fmt: skip
    assert any("MLLP connection from 127.0.0.1 refused: not_tls (WRONG_VERSION_NUMBER)" in w
               for w in warnings), warnings  # fmt: skip
    err = capfd.readouterr().err
    assert "Traceback" not in caplog.text + err
    for marker in MARKERS:
        assert marker.lower() not in (caplog.text + err).lower(), marker


def test_mutual_tls_refuses_a_client_without_a_certificate_or_from_another_ca(
    settings: Settings, pki: Pki
) -> None:
    context = listener_tls(tls_settings(settings, pki, mutual=True))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    resources = SinkResources(settings, MODELS)
    try:
        with serving(
            ReportListener(resources.sink, ListenerConfig(port=0, tls=context))
        ) as listener:
            address = listener.address
            ack = tls_ack(address, pki.client(), oru(control_id="M1"))
            assert ack is not None and msa(ack)[1:3] == ["AA", "M1"]
            assert tls_ack(address, pki.client(certificate=None), oru(control_id="M2")) is None
            assert (
                tls_ack(address, pki.client(certificate="stranger"), oru(control_id="M3")) is None
            )
            ack = tls_ack(address, pki.client(), oru(control_id="M4"))
            assert ack is not None and msa(ack)[1:3] == ["AA", "M4"]
        counts = resources.sink.snapshot()
    finally:
        resources.close()
    assert counts["accepted"] == 2
    assert counts["refused:no_client_certificate"] == 1
    assert counts["refused:client_certificate_untrusted"] == 1


# -- FHIR over HTTPS --------------------------------------------------------------------------


def post(url: str, context: ssl.SSLContext | None, token: str = TOKEN) -> int:
    request = urllib.request.Request(url, data=json.dumps(diagnostic_report()).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_fhir_over_https_with_the_token_and_plain_http_refused(
    settings: Settings, pki: Pki
) -> None:
    resources = SinkResources(settings, (ModelFindings("cxr-effusion", ("pleural_effusion",)),))
    endpoint = FhirEndpoint(resources.sink, TOKEN, "127.0.0.1", 0, FhirLimits(),
                            listener_tls(tls_settings(settings, pki)))  # fmt: skip
    client = pki.client(certificate=None)
    try:
        with serving(endpoint):
            assert endpoint.url.startswith("https://127.0.0.1:")
            assert post(endpoint.url, client) == 200
            assert post(endpoint.url, client, token="wrong-token-0123456789") == 401
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                post(endpoint.url.replace("https://", "http://"), None)
            assert post(endpoint.url, client) == 200
        counts = resources.sink.snapshot()
    finally:
        resources.close()
    assert counts["refused:not_tls"] == 1 and counts["label_events"] == 2


# -- the command ------------------------------------------------------------------------------


def tls_env(settings: Settings, pki: Pki, **overrides: str | Path) -> dict[str, str]:
    env = {**settings_env(settings), "RADWATCH_FHIR_TOKEN": TOKEN,
           "RADWATCH_HL7_TLS_CERT_FILE": str(pki.server_cert),
           "RADWATCH_HL7_TLS_KEY_FILE": str(pki.server_key),
           "RADWATCH_HL7_TLS_CLIENT_CA_FILE": str(pki.ca)}  # fmt: skip
    for name, value in overrides.items():
        if value == "":
            del env[name]
        else:
            env[name] = str(value)
    return env


def test_command_serves_both_doors_over_mutual_tls(settings: Settings, pki: Pki) -> None:
    proc, port, fhir_url = start_command(tls_env(settings, pki), "--model", "cxr-nodule=nodule",
                                         "--json")  # fmt: skip
    try:
        assert fhir_url.startswith("https://")
        ack = tls_ack(("127.0.0.1", port), pki.client(), oru(control_id="C1"))
        assert ack is not None and msa(ack)[1:3] == ["AA", "C1"]
        assert post(fhir_url, pki.client()) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            post(fhir_url, pki.client(certificate=None))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors[-2000:]
    counts = json.loads(out)
    assert counts["label_events"] == 2 and counts["refused:no_client_certificate"] == 1
    assert "Traceback" not in errors


def _fails_fast(env: dict[str, str]) -> str:
    started = time.monotonic()
    result = subprocess.run(radwatch_cmd("hl7-listen", "--port", "0", "--model", "cxr-nodule"),
                            env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=3 * FAST_S)  # fmt: skip
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("radwatch") and elapsed < FAST_S, (elapsed, lines)
    return lines[0]


def test_misconfigured_tls_exits_2_with_one_line(settings: Settings, pki: Pki,
                                                 tmp_path: Path) -> None:  # fmt: skip
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))  # fmt: skip
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    cases: dict[str, tuple[dict[str, str | Path], str]] = {
        "RADWATCH_HL7_TLS_CERT_FILE": ({"RADWATCH_HL7_TLS_CERT_FILE": tmp_path / "missing.crt"},
                                       "No such file or directory"),
        "is not the key of": ({"RADWATCH_HL7_TLS_KEY_FILE": pki.other_key}, "other.key"),
        # Running as root, a 0000 file is still readable: a directory is what cannot be read.
        "Is a directory": ({"RADWATCH_HL7_TLS_KEY_FILE": tmp_path}, "RADWATCH_HL7_TLS_KEY_FILE"),
        "encrypted": ({"RADWATCH_HL7_TLS_KEY_FILE": encrypted}, "RADWATCH_HL7_TLS_KEY_FILE"),
        "no PEM certificate": ({"RADWATCH_HL7_TLS_CLIENT_CA_FILE": not_pem}, "ca.txt"),
        "needs both": ({"RADWATCH_HL7_TLS_KEY_FILE": ""}, "RADWATCH_HL7_TLS_CERT_FILE"),
    }  # fmt: skip
    for expected, (overrides, also) in cases.items():
        line = _fails_fast(tls_env(settings, pki, **overrides))
        assert expected in line and also in line, line
