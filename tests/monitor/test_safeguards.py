"""monitor/safeguards.py on its own: key files private (PostgreSQL's rule for its TLS key),
plaintext links and their allowances, passwords masked in text. (The same checks reached
through `load_settings`, with the settings that trigger them: test_config.py.)"""

from __future__ import annotations

import pytest

from monitor import safeguards
from monitor.errors import ConfigError

GOOD_KEY = "9f1c3a5e7b2d4f6081a3c5e7092b4d6f8a1c3e5f7b9d2f4a"  # 48 hex characters


def test_a_root_owned_group_readable_secret_volume_is_accepted_for_a_non_root_user(
    tmp_path, monkeypatch
):
    """A Kubernetes Secret mounted with `defaultMode: 0440` and `fsGroup` arrives root-owned and
    group-readable; the pod runs as a non-root member of that group. PostgreSQL's rule for its
    TLS key accepts that shape (0640 when root owns the file); others' bits are still refused.
    The tests run as root, so the process is made to see itself as uid 10001 (the image's user)."""
    key_file = tmp_path / "pseudonym-key"
    key_file.write_text(GOOD_KEY)
    assert key_file.stat().st_uid == 0
    key_file.chmod(0o440)
    with pytest.raises(ConfigError):  # read by its owner (root), the file is held to 0600
        safeguards.check_private_file(key_file, "key")
    monkeypatch.setattr(safeguards.os, "getuid", lambda: 10001)
    safeguards.check_private_file(key_file, "key")
    for mode in (0o444, 0o460, 0o404):  # others may read, or the group may write: refused
        key_file.chmod(mode)
        with pytest.raises(ConfigError, match=f"mode {mode:04o}"):
            safeguards.check_private_file(key_file, "key")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("/var/run/postgresql", True), ("", True), ("db.localhost", True),
     ("10.0.0.5", False), ("db.example.org", False), ("2001:db8::1", False)],
)  # fmt: skip
def test_loopback_hosts(host, loopback):
    assert safeguards.is_loopback(host) is loopback


def test_plaintext_links_refused_to_remote_hosts_unless_allowed():
    safeguards.check_kafka_transport(None, "PLAINTEXT", allowed=False)  # embedded broker
    safeguards.check_kafka_transport("kafka.example.org:9093", "SSL", allowed=False)
    with pytest.raises(ConfigError, match="Kafka over PLAINTEXT"):
        safeguards.check_kafka_transport("kafka.example.org:9092", "PLAINTEXT", allowed=False)
    safeguards.check_kafka_transport("kafka.example.org:9092", "PLAINTEXT", allowed=True)
    url = "postgresql://svc:pw@db.example.org/rw"
    with pytest.raises(ConfigError, match="sslmode=prefer") as caught:
        safeguards.check_postgres_transport(url, {}, allowed=False)
    assert "pw" not in str(caught.value).replace("password", "")
    safeguards.check_postgres_transport(url, {"PGSSLMODE": "verify-full"}, allowed=False)
    safeguards.check_postgres_transport(None, {}, allowed=False)  # embedded PostgreSQL


@pytest.mark.parametrize(
    ("text", "masked"),
    [("postgresql://svc:s3cret@db/rw", "postgresql://svc:***@db/rw"),
     ("postgresql://svc@db/rw?password=s3cret&sslmode=require",
      "postgresql://svc@db/rw?password=***&sslmode=require"),
     ("host=db user=svc password='s 3cret' dbname=rw", "host=db user=svc password=*** dbname=rw"),
     ("no secret here", "no secret here")],
)  # fmt: skip
def test_passwords_are_masked_in_text(text, masked):
    assert safeguards.mask_secrets(text) == masked
