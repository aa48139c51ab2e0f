"""The /metrics web-config: basic auth and TLS the way Prometheus exporters configure them.

Sits at the HTTP edge (monitor.metrics.server): `RADWATCH_METRICS_WEB_CONFIG` names a YAML
file in the exporter-toolkit format (https://github.com/prometheus/exporter-toolkit/blob/
master/docs/web-configuration.md), so the same file a hospital writes for node_exporter
works here, and Prometheus scrapes with its usual `basic_auth` / `tls_config`:

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      # client_auth_type: RequireAndVerifyClientCert
      # client_ca_file: ca.crt
      # min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash (htpasswd -nBC 12 prometheus)

Anything this module does not implement is refused (ConfigError, exit 2) rather than
silently ignored: a setting the operator believes is on must be on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from monitor.errors import ConfigError

TOP_LEVEL = frozenset({"tls_server_config", "basic_auth_users", "http_server_config"})
TLS_KEYS = frozenset({"cert_file", "key_file", "client_ca_file", "client_auth_type",
                      "min_version"})  # fmt: skip
HTTP_KEYS = frozenset({"headers"})
# exporter-toolkit's names → what ssl can enforce. RequestClientCert and RequireAnyClientCert
# (a certificate asked for but not verified) have no ssl equivalent and are refused.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# The certificate, key and client-CA file keys, in server_tls_context's order.
TLS_FILES = ("cert_file", "key_file", "client_ca_file")
_PEM = {"certificate": b"CERTIFICATE-----", "private key": b"PRIVATE KEY-----"}
MIN_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_BCRYPT = re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$")
_CACHE_SIZE = 64  # successful checks remembered, so a scrape every 15 s costs no bcrypt


@dataclass(frozen=True)
class WebConfig:
    path: Path
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)  # user → bcrypt hash
    ssl_context: ssl.SSLContext | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def checker(self) -> BasicAuth | None:
        return BasicAuth(self.basic_auth_users) if self.basic_auth_users else None


class BasicAuth:
    """Checks `Authorization: Basic …` against bcrypt hashes (thread-safe, with a small cache)."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        # An unknown user is checked against a real hash too, so timing does not say which
        # user names exist.
        self._decoy = next(iter(self._users.values()))
        self._ok: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed or b""))).digest()
        with self._lock:
            if hashed is not None and key in self._ok:
                return True
        try:
            ok = bcrypt.checkpw(password, hashed or self._decoy) and hashed is not None
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._ok[key] = None
                while len(self._ok) > _CACHE_SIZE:
                    self._ok.pop(next(iter(self._ok)))
        return ok


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and check the web-config file; every problem is one ConfigError line."""
    source = Path(path)
    try:
        doc: Any = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read metrics web config {source}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"metrics web config {source} is not valid YAML") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"metrics web config {source} must be a mapping")
    _only(doc, TOP_LEVEL, "metrics web config")
    users = _users(doc.get("basic_auth_users"))
    context = _tls(doc.get("tls_server_config"), source.parent)
    http = doc.get("http_server_config") or {}
    if not isinstance(http, dict):
        raise ConfigError("http_server_config must be a mapping")
    _only(http, HTTP_KEYS, "http_server_config")
    headers = http.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v for k, v in headers.items()
    ):
        raise ConfigError("http_server_config.headers must map header names to strings")
    return WebConfig(path=source, basic_auth_users=users, ssl_context=context, headers=headers)


def _only(doc: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unsupported key(s) {', '.join(unknown)} "
                          f"(supported: {', '.join(sorted(allowed))})")  # fmt: skip


def _users(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("basic_auth_users must map user names to bcrypt hashes")
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError("basic_auth_users: a user name must be a non-empty string "
                              "without ':'")  # fmt: skip
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            # The user name is not secret; the value might be a password typed in clear.
            raise ConfigError(f"basic_auth_users: the value for {user!r} is not a bcrypt hash "
                              "(htpasswd -nBC 12 USER)")  # fmt: skip
        users[user] = hashed.encode()
    return users


def _tls(value: Any, base: Path) -> ssl.SSLContext | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError("tls_server_config must be a mapping")
    _only(value, TLS_KEYS, "tls_server_config")
    if not value.get("cert_file") or not value.get("key_file"):
        raise ConfigError("tls_server_config needs cert_file and key_file")
    cert, key = base / str(value["cert_file"]), base / str(value["key_file"])
    client_auth = str(value.get("client_auth_type") or "NoClientCert")
    if client_auth not in CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type must be one of "
                          f"{', '.join(CLIENT_AUTH)}, got {client_auth!r}")  # fmt: skip
    min_version = str(value.get("min_version") or "TLS12")
    if min_version not in MIN_VERSIONS:
        raise ConfigError(f"tls_server_config.min_version must be one of "
                          f"{', '.join(MIN_VERSIONS)}, got {min_version!r}")  # fmt: skip
    verify, ca = CLIENT_AUTH[client_auth], None
    if verify != ssl.CERT_NONE:
        if not value.get("client_ca_file"):
            raise ConfigError(f"tls_server_config: client_auth_type {client_auth} needs "
                              "client_ca_file")  # fmt: skip
        ca = base / str(value["client_ca_file"])
    return server_tls_context(cert, key, ca, verify=verify,
                              min_version=MIN_VERSIONS[min_version],
                              names=tuple(f"tls_server_config.{k}" for k in TLS_FILES))  # fmt: skip


def server_tls_context(
    cert: Path,
    key: Path,
    client_ca: Path | None = None,
    *,
    verify: ssl.VerifyMode = ssl.CERT_NONE,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    names: tuple[str, ...] = TLS_FILES,
) -> ssl.SSLContext:
    """A server's TLS context from PEM files; every problem is one ConfigError naming the file.

    Shared by /metrics (this web config) and hl7-listen's MLLP and FHIR ports
    (monitor/ingest/listener_tls.py). `names` are what the operator called the certificate,
    key and client-CA files (a YAML key, a RADWATCH_* variable). Client certificates are
    checked (`verify`) against `client_ca` only, never the system's CAs: a public CA's other
    customers are not the interface engine. TLS 1.2 at the least (`min_version`).
    """
    # Read first, so each problem names its file (ssl says only "PEM lib" for any of them).
    files = [(cert, names[0], "certificate"), (key, names[1], "private key")]
    files += [(client_ca, names[2], "certificate")] if client_ca is not None else []
    for path, name, kind in files:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot load {name} {path}: {exc.strerror}") from exc
        if kind == "private key" and b"ENCRYPTED" in text:
            # Loading it would ask for the passphrase on a terminal, which a service has not.
            raise ConfigError(f"cannot load {name} {path}: the key is encrypted "
                              "(decrypt it: openssl pkey -in KEY -out PLAIN.key)")  # fmt: skip
        if _PEM[kind] not in text:
            raise ConfigError(f"cannot load {name} {path}: no PEM {kind} in it")
    try:
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca) if client_ca else None
        )
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load {names[2]} {client_ca}: {exc.reason}") from exc
    context.minimum_version = min_version
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{names[1]} {key} is not the key of {names[0]} {cert}") from exc
        raise ConfigError(f"cannot load {names[0]} {cert} / {names[1]} {key}: not a usable "
                          f"certificate and key ({reason or exc})") from exc  # fmt: skip
    context.verify_mode = verify
    return context


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted")
