"""The finding lexicon: which words in a chest radiograph report name which finding.

Data of the report labeler (collectors/labeler): `DEFAULT_LEXICON` serves
`default_labeler()`; a site or model replaces or extends it from a TOML/JSON file
(collectors.labeler.config). Terms come from the CheXpert labeler's mention phrases
(Irvin et al. 2019, AAAI 33:590; github.com/stanfordmlgroup/chexpert-labeler,
phrases/mention/*.txt) narrowed to the ten findings named here, with the Fleischner
Society glossary (Hansell et al. 2008, Radiology 246:697) for the definitions: a nodule is
a rounded opacity up to 3 cm, a mass one larger; consolidation is alveolar air replaced by
fluid or cells. `exclusions` are look-alike phrases that name something else ("mass
effect", "pericardial effusion"): matched like terms, so they hide the term inside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_FINDINGS = (
    "nodule", "mass", "pneumothorax", "pleural_effusion", "cardiomegaly",
    "consolidation", "atelectasis", "edema", "fracture", "pneumonia",
)  # fmt: skip

_TERMS: dict[str, tuple[str, ...]] = {
    # Fleischner: "nodule ... up to 3 cm"; CheXpert "Lung Lesion" nodule phrases.
    "nodule": ("nodule", "nodular opacity", "nodular density", "nodular densities",
               "nodular lesion", "micronodule", "nodularity"),
    # Fleischner: "mass ... larger than 3 cm"; CheXpert "Lung Lesion" mass/tumour phrases.
    "mass": ("mass", "mass lesion", "tumor", "tumour", "neoplasm"),
    "pneumothorax": ("pneumothorax", "pneumothoraces", "ptx", "hydropneumothorax"),
    "pleural_effusion": ("pleural effusion", "effusion", "pleural fluid", "hydrothorax",
                         "fluid in the ~ pleural space", "hydropneumothorax"),
    # CheXpert "Cardiomegaly" mention phrases, with one optional degree word ("mildly").
    "cardiomegaly": ("cardiomegaly", "cardiac enlargement", "enlarged heart",
                     "enlarged cardiac silhouette", "enlargement of the heart",
                     "enlargement of the cardiac silhouette", "heart is ~ enlarged",
                     "heart size is ~ enlarged", "heart size ~ enlarged",
                     "cardiac silhouette is ~ enlarged", "heart ~ enlarged",
                     "~ enlarged cardiomediastinal silhouette", "~ enlarged heart size",
                     "heart size is ~ increased", "increased heart size"),
    # Fleischner "consolidation"; CheXpert "Consolidation" phrases.
    "consolidation": ("consolidation", "consolidative opacity", "consolidative",
                      "consolidated"),
    # CheXpert "Atelectasis": atelectasis, atelectatic, collapse (of lung or lobe only).
    "atelectasis": ("atelectasis", "atelectases", "atelectatic", "lobar collapse",
                    "lung collapse", "collapsed lung", "collapse of the ~ lobe",
                    "collapse of the ~ ~ lobe", "lobe collapse"),
    # Edema as named; CheXpert's wider "Edema" class also counts vascular congestion and
    # heart failure, which are separate findings in the Fleischner glossary and here.
    "edema": ("edema", "oedema", "pulmonary edema", "interstitial edema",
              "alveolar edema", "edematous"),
    "fracture": ("fracture", "fx", "fractured", "fractures"),
    # CheXpert "Pneumonia": pneumonia, infection, infectious process.
    "pneumonia": ("pneumonia", "bronchopneumonia", "pneumonic", "infectious process",
                  "infection", "pneumonias"),
}  # fmt: skip

_EXCLUSIONS: dict[str, tuple[str, ...]] = {
    "mass": ("mass effect", "body mass", "muscle mass", "soft tissue mass effect"),
    "pleural_effusion": ("pericardial effusion", "joint effusion"),
    "edema": ("soft tissue edema", "subcutaneous edema", "bone marrow edema",
              "scalp edema"),
    "atelectasis": ("vertebral body collapse", "vertebral collapse"),
    "fracture": ("fracture fixation",),
}  # fmt: skip


def plural(word: str) -> str | None:
    """The English plural of a finding's head noun, None where it needs no rule."""
    if word.endswith(("s", "x", "sh", "ch")):
        return None if word.endswith(("is", "us")) else word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def with_plurals(phrases: tuple[str, ...]) -> tuple[str, ...]:
    """The phrases and, for each whose last word is a noun, its plural ("effusions")."""
    result = list(phrases)
    for phrase in phrases:
        head, _, last = phrase.rpartition(" ")
        if last.endswith(("ed", "ic", "ous", "ive", "atic")) or last in ("fx", "ptx"):
            continue
        many = plural(last)
        if many is not None:
            result.append(f"{head} {many}".strip())
    return tuple(dict.fromkeys(result))


@dataclass(frozen=True)
class Lexicon:
    """Finding → phrases naming it, and finding → look-alike phrases that do not."""

    terms: Mapping[str, tuple[str, ...]]
    exclusions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", MappingProxyType(dict(self.terms)))
        object.__setattr__(self, "exclusions", MappingProxyType(dict(self.exclusions)))

    @property
    def findings(self) -> tuple[str, ...]:
        return tuple(self.terms)

    def canonical(self) -> dict[str, object]:
        """A JSON-able form in a fixed order: what the fingerprint hashes."""
        return {
            "terms": {k: sorted(with_plurals(v)) for k, v in sorted(self.terms.items())},
            "exclusions": {k: sorted(v) for k, v in sorted(self.exclusions.items())},
        }

    def merged(self, other: Lexicon) -> Lexicon:
        """This lexicon with `other`'s phrases added (a site's synonyms on the default)."""
        terms = {k: tuple(dict.fromkeys(self.terms.get(k, ()) + other.terms.get(k, ())))
                 for k in dict.fromkeys([*self.terms, *other.terms])}  # fmt: skip
        exclusions = {
            k: tuple(dict.fromkeys(self.exclusions.get(k, ()) + other.exclusions.get(k, ())))
            for k in dict.fromkeys([*self.exclusions, *other.exclusions])
        }
        return Lexicon(terms, exclusions)


DEFAULT_LEXICON = Lexicon(_TERMS, _EXCLUSIONS)
