"""Per-site and per-model labeler configuration: lexicon, score-name mapping, and what a
finding that the report does not mention counts as.

Read by `radwatch labels derive --lexicon FILE` and by the report listeners before they
build a labeler (collectors.labeler.labeler). A TOML or JSON file:

    name = "north-general-cxr"      # optional; the labeler's name in its fingerprint
    extend_default = true           # add to the default lexicon (false: replace it)
    not_mentioned_negative = true   # a model's finding the report never names counts as 0
    [terms]                         # finding -> phrases naming it (plurals added)
    nodule = ["nodular opacity", "spiculated opacity"]
    [exclusions]                    # finding -> look-alike phrases naming something else
    mass = ["mass effect"]
    [score_map]                     # the model's score name -> finding
    nodule_prob = "nodule"
    [models.cxr-nodule]             # per model: the same keys, over the ones above
    score_map = { p_nodule = "nodule" }
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from collectors.labeler.labeler import DEFAULT_NAME, LabelerError, ReportLabeler, ReportLabels
from collectors.labeler.lexicon import DEFAULT_LEXICON, Lexicon

_KEYS = frozenset({"name", "extend_default", "not_mentioned_negative", "terms", "exclusions",
                   "score_map", "models"})  # fmt: skip


@dataclass(frozen=True)
class LabelerConfig:
    """What one model's labels are derived with."""

    lexicon: Lexicon = DEFAULT_LEXICON
    name: str = DEFAULT_NAME
    score_map: Mapping[str, str] = field(default_factory=dict)
    not_mentioned_negative: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_map", MappingProxyType(dict(self.score_map)))
        unknown = sorted(set(self.score_map.values()) - set(self.lexicon.findings))
        if unknown:
            raise LabelerError(f"score_map names findings not in the lexicon: {', '.join(unknown)}")

    @property
    def findings(self) -> tuple[str, ...]:
        """The model's findings: those its scores map to, else every lexicon finding."""
        if self.score_map:
            return tuple(dict.fromkeys(self.score_map.values()))
        return self.lexicon.findings

    def labeler(self) -> ReportLabeler:
        return ReportLabeler(self.lexicon, name=self.name)

    def label_values(self, result: ReportLabels) -> dict[str, int]:
        """`to_label_values` with this configuration's findings and not-mentioned rule."""
        return to_label_values(result, self.findings, self.not_mentioned_negative)


def to_label_values(
    result: ReportLabels, findings: Iterable[str], not_mentioned_negative: bool = True
) -> dict[str, int]:
    """The 0/1 labels a label event carries (wire contract v1): uncertain (-1) is left out;
    a finding the report does not mention is 0 when `not_mentioned_negative`, else left out.
    """
    values: dict[str, int] = {}
    for finding in findings:
        value = result.labels.get(finding)
        if value is None:
            if not_mentioned_negative:
                values[finding] = 0
        elif value in (0, 1):
            values[finding] = value
    return values


def load_labeler_config(path: str | Path, model: str | None = None) -> LabelerConfig:
    """The configuration in a .toml or .json file, with `[models.<model>]` over the top."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise LabelerError(f"cannot read labeler config {file}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw) if file.suffix.lower() == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LabelerError(f"labeler config {file} is not valid {_kind(file)}: {exc}") from exc
    return config_from_mapping(doc, model, where=str(file))


def config_from_mapping(doc: Any, model: str | None = None, where: str = "config") -> LabelerConfig:
    """A LabelerConfig from an already-parsed document (see the module docstring)."""
    top = _table(doc, where)
    models = _table(top.get("models", {}), f"{where}: models")
    merged = dict(top)
    if model is not None and model in models:
        merged.update(_table(models[model], f"{where}: models.{model}"))
    unknown = sorted(set(merged) - _KEYS)
    if unknown:
        raise LabelerError(f"{where}: unknown keys {', '.join(unknown)}")
    lexicon = Lexicon(_phrases(merged.get("terms", {}), f"{where}: terms"),
                      _phrases(merged.get("exclusions", {}), f"{where}: exclusions"))  # fmt: skip
    if _flag(merged, "extend_default", True, where):
        lexicon = DEFAULT_LEXICON.merged(lexicon)
    score_map = _table(merged.get("score_map", {}), f"{where}: score_map")
    if not all(isinstance(v, str) for v in score_map.values()):
        raise LabelerError(f"{where}: score_map values must be finding names")
    name = merged.get("name", DEFAULT_NAME)
    if not isinstance(name, str) or not name:
        raise LabelerError(f"{where}: name must be a non-empty string")
    return LabelerConfig(lexicon, name, score_map,
                         _flag(merged, "not_mentioned_negative", True, where))  # fmt: skip


def _kind(file: Path) -> str:
    return "JSON" if file.suffix.lower() == ".json" else "TOML"


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LabelerError(f"{where} must be a table/object")
    return value


def _flag(doc: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise LabelerError(f"{where}: {key} must be true or false")
    return value


def _phrases(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    table = _table(value, where)
    result: dict[str, tuple[str, ...]] = {}
    for finding, phrases in table.items():
        if not isinstance(phrases, list) or not all(
            isinstance(p, str) and p.strip() for p in phrases
        ):
            raise LabelerError(f"{where}.{finding} must be a list of non-empty strings")
        result[finding] = tuple(" ".join(p.lower().split()) for p in phrases)
    return result
