"""Safeguards for secrets and links: the checks run on the settings at every start, and masking.

Called by monitor/config.py (`load_settings`) and by the readers of key files (the audit
checkpoint's signing key, the embedded PostgreSQL's password): key files readable by their owner
only, pseudonym keys that are not placeholders, a Kafka security setup kafka-python can use, no
plaintext link to a remote broker or database unless allowed. They take plain values, not
`Settings`, so this module sits below config.py; a refusal is a ConfigError that names the
setting and never echoes a secret. `mask_secrets` hides passwords in text that is printed or
written to the audit trail.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import math
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

import psycopg.conninfo

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def check_kafka_security(
    protocol: str, mechanism: str | None, username: str | None, password: str | None
) -> None:
    """Reject a security setup kafka-python would only fail on at the first connection."""
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
        if not (username and password):
            raise ConfigError(f"{protocol} needs kafka_sasl_username and kafka_sasl_password")
    elif mechanism:
        raise ConfigError(f"kafka_sasl_mechanism is set but kafka_security_protocol is {protocol}")


# --- secrets --------------------------------------------------------------------------------

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


def binds_loopback(host: str) -> bool:
    """True when a server bound to `host` is reachable from this machine only (the listeners'
    --host). Not is_loopback: for a bind address "" means every interface, not a socket."""
    return bool(host.strip()) and is_loopback(host)


def _kafka_hosts(bootstrap: str) -> list[str]:
    hosts = []
    for server in (part.strip() for part in bootstrap.split(",") if part.strip()):
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


def check_kafka_transport(bootstrap: str | None, protocol: str, *, allowed: bool) -> None:
    """Refuse plaintext Kafka towards a non-loopback broker unless `allowed` (then warn once).

    An unset bootstrap is the embedded broker: loopback.
    """
    if bootstrap and protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        remote = [h for h in _kafka_hosts(bootstrap) if not is_loopback(h)]
        if remote:
            what = f"Kafka over {protocol} to a non-loopback broker"
            if not allowed:
                raise ConfigError(
                    f"{what} is refused (events and credentials travel unencrypted): use SSL or "
                    "SASL_SSL, or set RADWATCH_ALLOW_PLAINTEXT_KAFKA=true to accept the risk"
                )
            _warn_once(f"{what}: allowed by allow_plaintext_kafka, traffic is unencrypted")


def check_postgres_transport(url: str | None, env: Mapping[str, str], *, allowed: bool) -> None:
    """Refuse PostgreSQL without TLS towards a non-loopback host unless `allowed` (then warn
    once). An unset URL is the embedded PostgreSQL: loopback."""
    if url:
        hosts, sslmode = postgres_transport(url, env)
        if sslmode not in _PG_ENCRYPTED and not all(is_loopback(h) for h in hosts):
            what = f"PostgreSQL with sslmode={sslmode} to a non-loopback host"
            if not allowed:
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
