"""Typed settings for every radwatch command (DESIGN.md §9).

Sits at the top of the data flow: the CLI builds one `Settings` from RADWATCH_* variables
and an optional TOML file, and hands the pieces each layer needs down to it.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import math
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg.conninfo

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting is missing or malformed; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None = None  # None: the embedded broker
    database_url: str | None = None  # None: the embedded PostgreSQL
    data_dir: Path = Path(".radwatch")
    inference_topic: str = "radwatch.inferences"
    label_topic: str = "radwatch.labels"
    deadletter_topic: str = "radwatch.deadletter"
    group_id: str = "radwatch-collectors"
    pseudonym_key: str | None = None  # None: generated once into the data dir
    metrics_addr: str = "127.0.0.1:9108"
    device: str | None = None  # None: cuda if available
    max_event_bytes: int = 1_048_576
    batch_size: int = 500
    poll_timeout_ms: int = 500
    topic_partitions: int = 4
    # Short group timeouts: a join takes seconds, not tens of seconds (DESIGN.md §7).
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # Client certificate for mutual TLS (SSL / SASL_SSL); PostgreSQL TLS is set in the URL
    # itself (`?sslmode=verify-full&sslrootcert=...`), see deploy/README.md.
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    actor: str = "radwatch"
    # --- the fenced image fetcher (DESIGN.md §5a) -----------------------------------------
    # Directories file:// image URIs may read, separated by commas; None: DATA_DIR/images.
    image_roots: str | None = None
    # DICOMweb base URLs http(s):// image URIs may call, separated by commas; None: none.
    dicomweb_urls: str | None = None
    # DICOMweb authentication: a bearer token (best from RADWATCH_DICOMWEB_TOKEN_FILE), or
    # basic auth, or a client certificate; TLS is verified unless dicomweb_tls_verify=false.
    dicomweb_token: str | None = None
    dicomweb_username: str | None = None
    dicomweb_password: str | None = None
    dicomweb_client_cert: str | None = None
    dicomweb_client_key: str | None = None
    dicomweb_ca_bundle: str | None = None
    dicomweb_tls_verify: bool = True
    # --- the HTTP edge --------------------------------------------------------------------
    # Bearer token the Alertmanager webhook requires; None: the webhook is off.
    webhook_token: str | None = None
    # An exporter-toolkit web-config YAML (basic auth and/or TLS) protecting /metrics.
    metrics_web_config: str | None = None
    # --- what is kept of an event -----------------------------------------------------------
    # Top-level extra fields kept on stored events, comma-separated; None: none kept.
    extra_fields_allow: str | None = None
    # occurred_at outside [now - max_past_days, now + max_future_hours] is bad_timestamp.
    event_max_past_days: int = 3650
    event_max_future_hours: int = 24
    # --- transport safety -------------------------------------------------------------------
    # Plaintext Kafka (PLAINTEXT/SASL_PLAINTEXT) or PostgreSQL sslmode=disable towards a
    # non-loopback host are refused unless allowed here (and then logged as a warning).
    allow_plaintext_kafka: bool = False
    allow_insecure_postgres: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key_bytes(self) -> bytes:
        """The HMAC key for pseudonyms: configured, or generated once and kept in the data dir."""
        if self.pseudonym_key:
            return self.pseudonym_key.encode()
        path = self.data_dir / "pseudonym.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 so the demo key is not world-readable.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it between our check and open: use theirs
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
        # A key someone loosened (or copied in with a umask of 022) is refused, not used.
        check_private_file(path, "the generated pseudonym key")
        key = path.read_text().strip()
        check_pseudonym_key(key, str(path))
        return key.encode()

    def image_root_paths(self) -> tuple[Path, ...]:
        """Directories file:// image URIs may read (resolved; the data dir's images/ by default)."""
        if self.image_roots is None:
            return ((self.data_dir / "images").resolve(),)
        return tuple(Path(p).resolve() for p in _split(self.image_roots))

    def dicomweb_base_urls(self) -> tuple[str, ...]:
        """DICOMweb base URLs http(s):// image URIs may call (none by default)."""
        return tuple(u.rstrip("/") for u in _split(self.dicomweb_urls or ""))

    def extra_fields_allowed(self) -> frozenset[str]:
        """Top-level extra event fields kept in storage (none by default)."""
        return frozenset(_split(self.extra_fields_allow or ""))

    def kafka_client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for security (SASL/TLS), shared by every client."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        if self.kafka_ssl_certfile:
            options["ssl_certfile"] = self.kafka_ssl_certfile
        if self.kafka_ssl_keyfile:
            options["ssl_keyfile"] = self.kafka_ssl_keyfile
        return options


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_INT_FIELDS = {f.name for f in dataclasses.fields(Settings) if f.type in ("int",)}
_BOOL_FIELDS = {f.name for f in dataclasses.fields(Settings) if f.type in ("bool",)}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KNOWN = {f.name for f in dataclasses.fields(Settings)} - {"extra"}


def _coerce(name: str, value: Any) -> Any:
    if name in _INT_FIELDS:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from exc
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if name == "data_dir":
        return Path(value)
    return value


def load_settings(
    config_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file, then RADWATCH_* variables (and RADWATCH_X_FILE secrets)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    path = config_file or env.get("RADWATCH_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        section = doc.get("radwatch", doc)
        for key, value in section.items():
            (values if key in _KNOWN else extra)[key] = value
    for name in _KNOWN:
        var = "RADWATCH_" + name.upper()
        if var + "_FILE" in env:
            if name in _KEY_FILE_FIELDS:
                check_private_file(Path(env[var + "_FILE"]), var + "_FILE")
            try:
                values[name] = Path(env[var + "_FILE"]).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read {var}_FILE: {exc.strerror}") from exc
        elif var in env and env[var] != "":
            values[name] = env[var]
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    settings = Settings(**coerced, extra=extra)
    if settings.max_event_bytes <= 0 or settings.batch_size <= 0:
        raise ConfigError("max_event_bytes and batch_size must be positive")
    _check_kafka_security(settings)
    if settings.pseudonym_key is not None:
        check_pseudonym_key(settings.pseudonym_key, "pseudonym_key")
    check_transport(settings, env)
    _check_audit_key_file(settings, env)
    return settings


def _check_kafka_security(settings: Settings) -> None:
    """Reject a security setup kafka-python would only fail on at the first connection."""
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(
            f"kafka_security_protocol must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
            f"got {protocol!r}"
        )
    if protocol.startswith("SASL_"):
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigError(
                f"{protocol} needs kafka_sasl_mechanism in {', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        if not (settings.kafka_sasl_username and settings.kafka_sasl_password):
            raise ConfigError(f"{protocol} needs kafka_sasl_username and kafka_sasl_password")
    elif mechanism:
        raise ConfigError(f"kafka_sasl_mechanism is set but kafka_security_protocol is {protocol}")


# --- secrets --------------------------------------------------------------------------------

# Settings read from RADWATCH_X_FILE whose file must be private (0600 or tighter).
_KEY_FILE_FIELDS = frozenset({"pseudonym_key"})
# The example secrets file's value (deploy/k8s/secrets.example.yaml) and the words every
# placeholder there carries: a key copied from an example is public, so it pseudonymises nothing.
PLACEHOLDER_KEY = "CHANGE-ME-64-hex-characters-from-openssl-rand-hex-32"
_PLACEHOLDER = re.compile(r"change[-_ ]?me|placeholder|example|xxxxxxxx", re.IGNORECASE)
MIN_KEY_CHARS = 32
# Empirical Shannon entropy (bits per character x length) of the key text. Random keys score
# well above it (32 hex characters: ~96-128 bits; `openssl rand -hex 32`: ~240); a repeated or
# patterned phrase does not. An estimate, not a proof: it catches the obvious mistakes.
MIN_KEY_BITS = 80.0


def check_private_file(path: Path, what: str) -> None:
    """Refuse a key file that others may read, or that its group may read or write.

    The rule PostgreSQL applies to its TLS key (src/backend/libpq/be-secure-common.c): 0600
    or stricter, or, for a file owned by root, 0640 or stricter. The second form is how a
    Kubernetes Secret volume arrives in a pod running as a non-root user with `fsGroup`
    (root-owned, group-readable by the pod's group).
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} ({path}): {exc.strerror}") from exc
    mode = stat.S_IMODE(info.st_mode)
    # Group read is fine only for a root-owned file read by another user (the Secret volume).
    group_may_read = info.st_uid == 0 and os.getuid() != 0
    if mode & (0o037 if group_may_read else 0o077):
        raise ConfigError(
            f"{what} ({path}) has mode {mode:04o}: a key file must be readable by its owner "
            f"only (or by the group too when root owns it); run `chmod 600 {path}`"
        )


def _entropy_bits(text: str) -> float:
    counts = collections.Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) * n


def check_pseudonym_key(key: str, where: str) -> None:
    """Refuse a placeholder, short or low-entropy pseudonym key (never echoing the key)."""
    if key == PLACEHOLDER_KEY or _PLACEHOLDER.search(key):
        raise ConfigError(
            f"{where} is the placeholder from the example secrets file; generate a key with "
            "`openssl rand -hex 32`"
        )
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{where} is too short ({len(key)} characters, at least {MIN_KEY_CHARS}); generate "
            "one with `openssl rand -hex 32`"
        )
    if _entropy_bits(key) < MIN_KEY_BITS:
        raise ConfigError(
            f"{where} looks too regular to be random; generate one with `openssl rand -hex 32`"
        )


def _check_audit_key_file(settings: Settings, env: Mapping[str, str]) -> None:
    """The audit signing key, when it already exists: private, like every key file."""
    configured = env.get("RADWATCH_AUDIT_KEY_FILE") or settings.extra.get("audit_key_file")
    path = Path(configured) if configured else settings.data_dir / "audit-signing.key"
    if path.exists():
        check_private_file(path, "the audit signing key")


# --- transport ------------------------------------------------------------------------------

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8, ::1, or a unix-socket directory (a path, or empty for libpq)."""
    host = host.strip().strip("[]")
    if host == "" or host.startswith("/") or host.startswith("@"):
        return True  # unix socket (libpq: a directory; @ is the Linux abstract namespace)
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a DNS name: we do not resolve it here, so it counts as remote


def _kafka_hosts(bootstrap: str) -> list[str]:
    hosts = []
    for server in _split(bootstrap):
        server = server.split("://", 1)[-1]
        if server.startswith("["):
            hosts.append(server[1 : server.find("]")])
        else:
            hosts.append(server.rsplit(":", 1)[0] if server.count(":") == 1 else server)
    return hosts


# libpq sslmode values that never send a byte unencrypted; `prefer` and `allow` fall back to
# plaintext silently when the server offers no TLS, so they count as plaintext here.
_PG_ENCRYPTED = ("require", "verify-ca", "verify-full")


def postgres_transport(url: str, env: Mapping[str, str]) -> tuple[list[str], str]:
    """(hosts, effective sslmode) of a libpq URL or key=value string, libpq's defaults applied."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError("database_url is not a valid PostgreSQL URL or DSN") from exc
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "")
    if params.get("hostaddr") and params.get("host"):
        host = f"{params['host']},{params['hostaddr']}"
    sslmode = str(params.get("sslmode") or env.get("PGSSLMODE") or "prefer")
    return host.split(","), sslmode


def check_transport(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Refuse plaintext Kafka and PostgreSQL towards a non-loopback host unless allowed.

    Embedded services (bootstrap or URL unset) are loopback. When a setting allows it, the
    plaintext link is logged as a warning once per process.
    """
    env = os.environ if env is None else env
    protocol = settings.kafka_security_protocol
    if settings.kafka_bootstrap and protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        remote = [h for h in _kafka_hosts(settings.kafka_bootstrap) if not is_loopback(h)]
        if remote:
            what = f"Kafka over {protocol} to a non-loopback broker"
            if not settings.allow_plaintext_kafka:
                raise ConfigError(
                    f"{what} is refused (events and credentials travel unencrypted): use SSL or "
                    "SASL_SSL, or set RADWATCH_ALLOW_PLAINTEXT_KAFKA=true to accept the risk"
                )
            _warn_once(f"{what}: allowed by allow_plaintext_kafka, traffic is unencrypted")
    if settings.database_url:
        hosts, sslmode = postgres_transport(settings.database_url, env)
        if sslmode not in _PG_ENCRYPTED and not all(is_loopback(h) for h in hosts):
            what = f"PostgreSQL with sslmode={sslmode} to a non-loopback host"
            if not settings.allow_insecure_postgres:
                raise ConfigError(
                    f"{what} is refused (it may send data and the password unencrypted): add "
                    "sslmode=verify-full (or require) to the URL, or set "
                    "RADWATCH_ALLOW_INSECURE_POSTGRES=true to accept the risk"
                )
            _warn_once(f"{what}: allowed by allow_insecure_postgres, traffic may be unencrypted")


# --- masking secrets in text --------------------------------------------------------------

MASK = "***"
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|credential|api[_-]?key)[A-Za-z0-9_.-]*"
)
# scheme://user:PASSWORD@host — the password ends at the last @ of the authority, so an
# unencoded @ or / inside it is masked too (over-masking a path is the safe way to be wrong).
_URL_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#\s]*:)(?P<pw>[^\s?#]*)@")
_QUERY_SECRET = re.compile(rf"(?P<pre>[?&;]{_SECRET_KEY}=)(?P<pw>[^&#\s]*)", re.IGNORECASE)
_DSN_SECRET = re.compile(
    rf"(?P<pre>(?<![A-Za-z0-9_.-]){_SECRET_KEY}\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s'&]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """`text` with passwords in URLs (user:pw@, ?password=) and key=value DSNs masked."""
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: m["pre"] + MASK + "@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m["pre"] + MASK, text)
        text = _DSN_SECRET.sub(lambda m: m["pre"] + MASK, text)
    return text
