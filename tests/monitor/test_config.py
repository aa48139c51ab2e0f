"""Settings from defaults, a TOML file, RADWATCH_* variables and *_FILE secrets."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from monitor import safeguards
from monitor.config import Settings, load_settings
from monitor.errors import ConfigError


def test_defaults_match_the_design_contract():
    s = load_settings(environ={})
    assert s.kafka_bootstrap is None and s.database_url is None  # embedded services
    assert s.data_dir == Path(".radwatch")
    assert (s.inference_topic, s.label_topic, s.deadletter_topic) == (
        "radwatch.inferences", "radwatch.labels", "radwatch.deadletter")  # fmt: skip
    assert s.group_id == "radwatch-collectors"
    assert s.metrics_addr == "127.0.0.1:9108"  # loopback by default
    assert s.session_timeout_ms == 6000 and s.heartbeat_interval_ms == 1000


def test_toml_then_environment_then_file_secrets(tmp_path):
    config = tmp_path / "radwatch.toml"
    config.write_text('[radwatch]\ngroup_id = "from-toml"\nbatch_size = 50\n')
    secret = tmp_path / "key"
    secret.write_text("file-secret-0123456789abcdef-0123456789\n")
    secret.chmod(0o600)
    env = {"RADWATCH_BATCH_SIZE": "75", "RADWATCH_PSEUDONYM_KEY_FILE": str(secret),
           "RADWATCH_DATA_DIR": str(tmp_path / "d")}  # fmt: skip
    s = load_settings(config, environ=env)
    assert s.group_id == "from-toml"
    assert s.batch_size == 75
    assert s.pseudonym_key == "file-secret-0123456789abcdef-0123456789"
    assert s.data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"RADWATCH_BATCH_SIZE": "many"}, "batch_size must be an integer"),
     ({"RADWATCH_BATCH_SIZE": "0"}, "must be positive"),
     ({"RADWATCH_CONFIG": "/nonexistent.toml"}, "cannot read config file")],
)  # fmt: skip
def test_bad_settings_raise_config_error(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_generated_key_is_kept_private_and_stable(tmp_path):
    s = Settings(data_dir=tmp_path)
    key = s.key_bytes()
    assert len(key) >= 32 and s.key_bytes() == key
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600


# -- secrets ---------------------------------------------------------------------------------

GOOD_KEY = "9f1c3a5e7b2d4f6081a3c5e7092b4d6f8a1c3e5f7b9d2f4a"  # 48 hex characters


def placeholder_from_example() -> str:
    example = Path(__file__).resolve().parents[2] / "deploy/k8s/secrets.example.yaml"
    for line in example.read_text().splitlines():
        if line.strip().startswith("pseudonym-key:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("no pseudonym-key in the example secrets file")


@pytest.mark.parametrize(
    ("key", "message"),
    [(placeholder_from_example(), "placeholder from the example secrets file"),
     ("CHANGE-ME", "placeholder"),
     ("0123456789abcdef", "too short"),
     ("a" * 64, "too regular"),
     ("ab" * 32, "too regular")],
)  # fmt: skip
def test_weak_or_placeholder_pseudonym_keys_are_refused(key, message, capsys):
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(environ={"RADWATCH_PSEUDONYM_KEY": key})
    assert key not in str(caught.value)  # the key is never echoed


def test_placeholder_key_through_the_cli_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "RADWATCH_DATA_DIR": str(tmp_path),
           "RADWATCH_PSEUDONYM_KEY": placeholder_from_example()}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "status"], env=env,
                            capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "placeholder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_files_looser_than_0600_are_refused(tmp_path, mode):
    key_file = tmp_path / "pseudonym-key"
    key_file.write_text(GOOD_KEY)
    key_file.chmod(mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600"):
        load_settings(environ={"RADWATCH_PSEUDONYM_KEY_FILE": str(key_file),
                               "RADWATCH_DATA_DIR": str(tmp_path)})  # fmt: skip
    key_file.chmod(0o400)
    s = load_settings(environ={"RADWATCH_PSEUDONYM_KEY_FILE": str(key_file),
                               "RADWATCH_DATA_DIR": str(tmp_path)})  # fmt: skip
    assert s.key_bytes() == GOOD_KEY.encode()


def test_generated_key_and_audit_signing_key_with_loose_modes_are_refused(tmp_path):
    s = Settings(data_dir=tmp_path)
    s.key_bytes()
    (tmp_path / "pseudonym.key").chmod(0o644)
    with pytest.raises(ConfigError, match="generated pseudonym key.*mode 0644"):
        s.key_bytes()
    (tmp_path / "pseudonym.key").chmod(0o600)
    signing = tmp_path / "audit-signing.key"
    signing.write_text("-----BEGIN PRIVATE KEY-----\n")
    signing.chmod(0o640)
    with pytest.raises(ConfigError, match="audit signing key.*mode 0640"):
        load_settings(environ={"RADWATCH_DATA_DIR": str(tmp_path)})
    elsewhere = tmp_path / "vault" / "signing.key"
    elsewhere.parent.mkdir()
    elsewhere.write_text("x")
    elsewhere.chmod(0o644)
    signing.chmod(0o600)
    with pytest.raises(ConfigError, match="audit signing key"):
        load_settings(environ={"RADWATCH_DATA_DIR": str(tmp_path),
                               "RADWATCH_AUDIT_KEY_FILE": str(elsewhere)})  # fmt: skip


# -- transport -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [{"RADWATCH_KAFKA_BOOTSTRAP": "kafka.example.org:9092"},
     {"RADWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:9092,kafka2:9092"},
     {"RADWATCH_KAFKA_BOOTSTRAP": "[2001:db8::1]:9092"},
     {"RADWATCH_KAFKA_BOOTSTRAP": "10.0.0.5:9092", "RADWATCH_KAFKA_SECURITY_PROTOCOL":
      "SASL_PLAINTEXT", "RADWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RADWATCH_KAFKA_SASL_USERNAME": "u", "RADWATCH_KAFKA_SASL_PASSWORD": "p"}],
)  # fmt: skip
def test_plaintext_kafka_to_a_remote_broker_is_refused_unless_allowed(env, caplog):
    with pytest.raises(ConfigError, match="Kafka over .*PLAINTEXT to a non-loopback broker"):
        load_settings(environ=env)
    safeguards._warned.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.safeguards"):
        load_settings(environ={**env, "RADWATCH_ALLOW_PLAINTEXT_KAFKA": "true"})
        load_settings(environ={**env, "RADWATCH_ALLOW_PLAINTEXT_KAFKA": "true"})
    warnings = [r for r in caplog.records if "allow_plaintext_kafka" in r.getMessage()]
    assert len(warnings) == 1  # once per process, not once per load


@pytest.mark.parametrize(
    "url",
    ["postgresql://svc:pw@db.example.org:5432/rw?sslmode=disable",
     "postgresql://svc:pw@db.example.org:5432/rw",  # libpq's default `prefer` may fall back
     "postgresql://svc:pw@10.1.2.3/rw?sslmode=allow",
     "host=db.example.org dbname=rw user=svc password=pw sslmode=disable",
     "postgresql://svc@localhost,db.example.org/rw?sslmode=prefer"],
)  # fmt: skip
def test_insecure_postgres_to_a_remote_host_is_refused_unless_allowed(url, caplog):
    with pytest.raises(ConfigError, match="PostgreSQL with sslmode=.* non-loopback") as caught:
        load_settings(environ={"RADWATCH_DATABASE_URL": url})
    assert "pw" not in str(caught.value).replace("password", "")  # no URL in the message
    safeguards._warned.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.safeguards"):
        load_settings(environ={"RADWATCH_DATABASE_URL": url,
                               "RADWATCH_ALLOW_INSECURE_POSTGRES": "1"})  # fmt: skip
    assert any("allow_insecure_postgres" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "env",
    [{"RADWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:9092"},
     {"RADWATCH_KAFKA_BOOTSTRAP": "localhost:9092,[::1]:9093"},
     {"RADWATCH_KAFKA_BOOTSTRAP": "kafka.example.org:9093", "RADWATCH_KAFKA_SECURITY_PROTOCOL":
      "SSL"},
     {"RADWATCH_DATABASE_URL": "postgresql://svc:pw@127.0.0.2:5432/rw?sslmode=disable"},
     {"RADWATCH_DATABASE_URL": "postgresql://svc@[::1]/rw"},
     {"RADWATCH_DATABASE_URL": "postgresql:///rw?host=/var/run/postgresql"},
     {"RADWATCH_DATABASE_URL": "dbname=rw user=svc"},  # unix socket
     {"RADWATCH_DATABASE_URL": "postgresql://svc@db.example.org/rw?sslmode=verify-full"},
     {"RADWATCH_DATABASE_URL": "postgresql://svc@db.example.org/rw?sslmode=require"},
     {}],  # embedded services: loopback
)  # fmt: skip
def test_loopback_and_encrypted_transport_are_accepted(env):
    load_settings(environ=env)


def test_pgsslmode_from_the_environment_counts_like_libpq():
    url = "postgresql://svc@db.example.org/rw"
    load_settings(environ={"RADWATCH_DATABASE_URL": url, "PGSSLMODE": "verify-full"})
    with pytest.raises(ConfigError, match="sslmode=disable"):
        load_settings(environ={"RADWATCH_DATABASE_URL": url, "PGSSLMODE": "disable"})
