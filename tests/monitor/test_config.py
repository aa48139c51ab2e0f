"""Settings from defaults, a TOML file, RADWATCH_* variables and *_FILE secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from monitor.config import ConfigError, Settings, load_settings


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
    config.write_text('[radwatch]\ngroup_id = "from-toml"\nbatch_size = 50\nsite_notes = "x"\n')
    secret = tmp_path / "key"
    secret.write_text("file-secret-0123456789abcdef\n")
    env = {"RADWATCH_BATCH_SIZE": "75", "RADWATCH_PSEUDONYM_KEY_FILE": str(secret),
           "RADWATCH_DATA_DIR": str(tmp_path / "d")}  # fmt: skip
    s = load_settings(config, environ=env)
    assert s.group_id == "from-toml"
    assert s.batch_size == 75
    assert s.pseudonym_key == "file-secret-0123456789abcdef"
    assert s.data_dir == tmp_path / "d"
    assert s.extra == {"site_notes": "x"}


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
