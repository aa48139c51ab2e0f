"""Typed settings: the images/audit/embedders sections, unknown keys, one-line type errors.

monitor.config reads the TOML file and RADWATCH_* variables into one validated Settings;
these tests drive load_settings (and the CLI for the exit code) with real files.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.audit.checkpoint import key_paths
from monitor.audit.trail import config_snapshot
from monitor.config import (
    AuditSettings,
    ConfigError,
    EmbedderSettings,
    ImageSettings,
    Settings,
    load_settings,
)
from monitor.ingest.image_stage import ImageStageConfig, image_config

REPO = Path(__file__).resolve().parents[2]


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "radwatch.toml"
    path.write_text("[radwatch]\n" + text)
    return path


def test_flat_image_keys_a_table_and_variables_fill_the_images_section(tmp_path):
    config = toml(tmp_path, "image_size = 64\nimage_timeout_s = 1.5\n"
                            "[radwatch.images]\nworkers = 2\n")  # fmt: skip
    s = load_settings(config, environ={"RADWATCH_IMAGE_MAX_BYTES": "1000"})
    assert s.images == ImageSettings(size=64, timeout_s=1.5, workers=2, max_bytes=1000)
    stage = image_config(s)
    assert (stage.size, stage.timeout_s, stage.workers, stage.max_bytes) == (64, 1.5, 2, 1000)
    # What is not set keeps the decoder's default.
    assert stage.max_pixels == ImageStageConfig().max_pixels
    assert image_config(Settings()) == ImageStageConfig()


def test_the_same_image_setting_twice_is_refused(tmp_path):
    config = toml(tmp_path, "image_size = 64\n[radwatch.images]\nsize = 128\n")
    with pytest.raises(ConfigError, match="image_size is set twice"):
        load_settings(config, environ={})


def test_audit_paths_from_the_file_and_from_variables(tmp_path):
    config = toml(tmp_path, f'audit_checkpoint_file = "{tmp_path}/cp.jsonl"\n'
                            f'data_dir = "{tmp_path}/d"\n')  # fmt: skip
    env = {"RADWATCH_AUDIT_KEY_FILE": str(tmp_path / "k" / "sign.key")}
    s = load_settings(config, environ=env)
    assert s.audit == AuditSettings(key_file=tmp_path / "k" / "sign.key",
                                    checkpoint_file=tmp_path / "cp.jsonl")  # fmt: skip
    paths = key_paths(s)
    assert paths.private == tmp_path / "k" / "sign.key"
    assert paths.public == tmp_path / "k" / "sign.pub"
    assert paths.checkpoints == tmp_path / "cp.jsonl"
    defaults = key_paths(Settings(data_dir=tmp_path))
    assert defaults.private.parent == tmp_path and defaults.checkpoints.parent == tmp_path


def test_embedders_table_is_typed(tmp_path):
    config = toml(tmp_path, '[radwatch.embedders.site-r18]\npath = "/m/r18.pt"\n'
                            'arch = "resnet18"\ninput_size = [64, 64]\noutput_dim = 512\n')  # fmt: skip
    (entry,) = load_settings(config, environ={}).embedders.values()
    assert entry == EmbedderSettings(path=Path("/m/r18.pt"), output_dim=512, arch="resnet18",
                                     input_size=(64, 64))  # fmt: skip
    bad = toml(tmp_path, '[radwatch.embedders.x]\npath = "/a"\noutput_dim = 8\nintensity = "hdr"\n')
    with pytest.raises(ConfigError, match="embedders.x.intensity must be one of"):
        load_settings(bad, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [('site_notes = "x"\n', "unknown setting 'site_notes'"),
     ("batchsize = 5\n", "unknown setting 'batchsize'"),
     ("[radwatch.images]\nsizes = 5\n", "unknown setting 'images.sizes'"),
     ('[radwatch.embedders.x]\npath = "/a"\noutput_dim = 8\nwhy = 1\n',
      "unknown setting 'embedders.x.why'")],
)  # fmt: skip
def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(toml(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [('batch_size = "lots"\n', "batch_size must be an integer, got 'lots'"),
     ("group_id = 7\n", "group_id must be a string, got 7"),
     ('dicomweb_tls_verify = "maybe"\n', "dicomweb_tls_verify must be true or false"),
     ("image_size = 0\n", "image_size must be positive, got 0"),
     ('image_timeout_s = "soon"\n', "image_timeout_s must be a number"),
     ("audit_key_file = 3\n", "audit_key_file must be a path"),
     ('[radwatch.embedders.x]\npath = "/a"\n', "embedders.x.output_dim is required")],
)  # fmt: skip
def test_a_wrong_type_is_one_line_naming_the_setting(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(toml(tmp_path, text), environ={})
    assert "\n" not in str(caught.value)


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError, match="webhook_token must be a string") as caught:
        load_settings(toml(tmp_path, "webhook_token = 918273645546372819\n"), environ={})
    assert "918273645546372819" not in str(caught.value)


def test_unknown_key_through_the_cli_is_exit_2_and_one_line(tmp_path):
    config = toml(tmp_path, "image_sise = 64\n")
    env = {"PATH": "/usr/bin:/bin", "RADWATCH_DATA_DIR": str(tmp_path),
           "RADWATCH_CONFIG": str(config)}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "status"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "unknown setting 'image_sise'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_every_scalar_setting_may_come_from_a_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("a-bearer-token\n")
    (tmp_path / "n").write_text("42")
    s = load_settings(environ={"RADWATCH_DICOMWEB_TOKEN_FILE": str(token),
                               "RADWATCH_BATCH_SIZE_FILE": str(tmp_path / "n")})  # fmt: skip
    assert s.dicomweb_token == "a-bearer-token" and s.batch_size == 42


def test_settings_built_in_code_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("RADWATCH_BATCH_SIZE", "3")
    monkeypatch.setenv("RADWATCH_IMAGE_SIZE", "3")
    s = Settings(device="cpu")
    assert s.batch_size == 500 and s.images.size is None
    assert load_settings().batch_size == 3  # load_settings() reads os.environ


def test_replace_validates_and_dataclass_functions_still_work():
    s = Settings(device="cpu")
    assert s.replace(batch_size=7).batch_size == 7
    assert dataclasses.replace(s, batch_size=8).batch_size == 8  # callers of the dataclass
    assert "images" in {f.name for f in dataclasses.fields(Settings)}
    with pytest.raises(ValueError, match="batch_size"):
        s.replace(batch_size=0)
    with pytest.raises(ValueError, match="extra"):
        Settings(extra={"image_size": 64})  # the untyped bag is gone
    with pytest.raises(ValueError):
        s.batch_size = 9  # type: ignore[misc]  # frozen


def test_the_audit_snapshot_of_settings_holds_the_sections():
    s = Settings(pseudonym_key="k" * 40, images=ImageSettings(size=64),
                 embedders={"x": EmbedderSettings(path=Path("/m.pt"), output_dim=8)})  # fmt: skip
    snapshot = config_snapshot(s)
    assert snapshot["images"]["size"] == 64 and snapshot["pseudonym_key"] == "set"
    assert snapshot["embedders"]["x"]["output_dim"] == 8
    assert "extra" not in snapshot
