"""TLS for `radwatch hl7-listen`'s two doors: MLLP (report_listener.py) and FHIR (fhir_http.py).

Sits at the hospital edge, before any byte of a report is read: report text (PHI) and the FHIR
bearer token must not cross the hospital network in clear. The certificate loading is the
/metrics web config's (monitor.metrics.web_config.server_tls_context, one piece of code for
every server radwatch runs); this module adds the settings that name the files and the
per-connection handshake both servers use.

Settings, rather than a web-config file: three PEM paths (a Kubernetes TLS Secret's tls.crt,
tls.key and ca.crt, or what the hospital's PKI issues), as the Kafka and DICOMweb TLS
settings are. A client CA file means client certificates are required (mutual TLS): a CA
given and not enforced would be a check the operator believes is on.

The handshake runs in the connection's own thread, never the accept loop, so a slow or
silent client holds up no one. A handshake that fails (a plaintext client, a client without
a certificate, one the CA did not issue, a timeout) closes that connection only, is counted
as `radwatch_listener_events_total{listener="reports", outcome="refused", reason=...}` and
logged as one line with the peer's address and OpenSSL's reason code: no traceback, and
nothing the client sent.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable

from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.metrics.web_config import server_tls_context

log = logging.getLogger(__name__)

# Seconds a client has to finish the handshake: an interface engine takes milliseconds; a
# connection that says nothing gives its slot back soon.
HANDSHAKE_TIMEOUT_S = 10.0
SETTINGS = ("RADWATCH_HL7_TLS_CERT_FILE", "RADWATCH_HL7_TLS_KEY_FILE",
            "RADWATCH_HL7_TLS_CLIENT_CA_FILE")  # fmt: skip
# OpenSSL's reason codes → the refusal reasons counted (a closed set: a metric label).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                      "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
                      "RECORD_LENGTH_MISMATCH"})  # fmt: skip
_NO_CERTIFICATE = frozenset({"PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"})


def listener_tls(settings: Settings) -> ssl.SSLContext | None:
    """The server context hl7-listen's ports use, or None when TLS is not configured.

    Raises ConfigError (one line, exit 2) for a half configuration or a file that does not
    load: at start, never at the first connection."""
    cert, key = settings.hl7_tls_cert_file, settings.hl7_tls_key_file
    client_ca = settings.hl7_tls_client_ca_file
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        raise ConfigError(f"TLS needs both {SETTINGS[0]} and {SETTINGS[1]}")
    return server_tls_context(
        cert, key, client_ca,
        verify=ssl.CERT_REQUIRED if client_ca is not None else ssl.CERT_NONE,
        min_version=ssl.TLSVersion.TLSv1_2, names=SETTINGS,
    )  # fmt: skip


def refusal_reason(exc: BaseException) -> str:
    """Why a handshake failed: not_tls, no_client_certificate, client_certificate_untrusted,
    tls_timeout or tls_handshake (anything else, e.g. the client refusing our certificate)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "tls_timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "client_certificate_untrusted"
    reason = getattr(exc, "reason", None)
    if reason in _NOT_TLS:
        return "not_tls"
    if reason in _NO_CERTIFICATE:
        return "no_client_certificate"
    return "tls_handshake"


def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    count: Callable[[str], None],
    door: str,
    timeout: float = HANDSHAKE_TIMEOUT_S,
) -> ssl.SSLSocket | None:
    """The server side of the handshake on an accepted socket: the TLS socket, or None when
    refused (counted as `refused:<reason>`, logged, the connection closed). Never raises."""
    try:
        peer = sock.getpeername()[0]
    except OSError:
        peer = "?"
    try:
        sock.settimeout(timeout)
        return context.wrap_socket(sock, server_side=True)  # the handshake happens here
    except (OSError, ValueError) as exc:
        reason = refusal_reason(exc)
        count(f"refused:{reason}")
        # OpenSSL's reason code (e.g. WRONG_VERSION_NUMBER), never the bytes received.
        detail = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("hl7-listen: %s connection from %s refused: %s (%s)", door, peer, reason,
                    detail)  # fmt: skip
        sock.close()
        return None
