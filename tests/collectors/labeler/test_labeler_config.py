"""Labeler configuration from TOML/JSON files (collectors.labeler.config) and the mapping of
derived labels to the 0/1 values a label event carries (`to_label_values`)."""

from __future__ import annotations

import json

import pytest

from collectors.labeler import (
    LabelerConfig,
    LabelerError,
    ReportLabels,
    default_labeler,
    load_labeler_config,
    to_label_values,
)

SITE_TOML = """
name = "north-general-cxr"
[terms]
nodule = ["spiculated opacity"]
[exclusions]
nodule = ["nodular contour"]
[score_map]
nodule_prob = "nodule"
ptx = "pneumothorax"
[models.cxr-ptx]
not_mentioned_negative = false
score_map = { p = "pneumothorax" }
"""


def test_to_label_values_drops_uncertain_and_fills_not_mentioned():
    result = ReportLabels({"nodule": 1, "pneumothorax": -1, "edema": 0})
    findings = ["nodule", "pneumothorax", "edema", "mass"]
    assert to_label_values(result, findings) == {"nodule": 1, "edema": 0, "mass": 0}
    assert to_label_values(result, findings, not_mentioned_negative=False) == {
        "nodule": 1, "edema": 0,
    }  # fmt: skip


def test_a_toml_file_extends_the_default_lexicon(tmp_path):
    path = tmp_path / "labeler.toml"
    path.write_text(SITE_TOML)
    config = load_labeler_config(path)
    assert config.name == "north-general-cxr" and config.not_mentioned_negative
    assert config.findings == ("nodule", "pneumothorax")
    labeler = config.labeler()
    assert labeler.fingerprint != default_labeler().fingerprint
    result = labeler.label("Spiculated opacity, right apex. Nodular contour of the hilum.")
    assert dict(result.labels) == {"nodule": 1}
    assert config.label_values(result) == {"nodule": 1, "pneumothorax": 0}
    assert "cardiomegaly" in labeler.findings  # the default terms are still there


def test_a_models_table_overrides_the_top(tmp_path):
    path = tmp_path / "labeler.toml"
    path.write_text(SITE_TOML)
    config = load_labeler_config(path, model="cxr-ptx")
    assert dict(config.score_map) == {"p": "pneumothorax"}
    assert not config.not_mentioned_negative
    assert config.label_values(ReportLabels({})) == {}
    assert load_labeler_config(path, model="other").findings == ("nodule", "pneumothorax")


def test_a_json_file_may_replace_the_default_lexicon(tmp_path):
    path = tmp_path / "labeler.json"
    path.write_text(json.dumps({"extend_default": False, "terms": {"nodule": ["nodule"]}}))
    config = load_labeler_config(path)
    assert config.findings == ("nodule",)
    assert dict(config.labeler().label("Cardiomegaly. Nodule.").labels) == {"nodule": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("terms = 3", "terms must be a table"),
        ('[terms]\nnodule = "nodule"', "must be a list of non-empty strings"),
        ('[score_map]\nx = "spleen"', "score_map names findings not in the lexicon: spleen"),
        ("colour = 1", "unknown keys colour"),
        ("not_mentioned_negative = 1", "must be true or false"),
        ("[terms", "not valid TOML"),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "labeler.toml"
    path.write_text(content)
    with pytest.raises(LabelerError, match=message):
        load_labeler_config(path)


def test_a_missing_file_is_a_labeler_error(tmp_path):
    with pytest.raises(LabelerError, match="cannot read labeler config"):
        load_labeler_config(tmp_path / "absent.toml")


def test_the_config_is_frozen():
    config = LabelerConfig()
    with pytest.raises(AttributeError):
        config.name = "x"  # type: ignore[misc]
