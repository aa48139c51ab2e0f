"""The report labeler's rules (collectors/labeler): NegEx/ConText cues and scopes, sections,
de-identification artifacts, evidence spans and the fingerprint."""

from __future__ import annotations

import hashlib

import pytest

from collectors.labeler import (
    DEFAULT_LEXICON,
    LabelerError,
    Lexicon,
    ReportLabeler,
    default_labeler,
)
from collectors.labeler.context import MAX_SCOPE_WORDS

LABELER = default_labeler()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # pre-negation (NegEx)
        ("No pneumothorax.", {"pneumothorax": 0}),
        ("There is no evidence of pleural effusion.", {"pleural_effusion": 0}),
        (
            "No evidence of focal consolidation, pleural effusion, or pneumothorax.",
            {"consolidation": 0, "pleural_effusion": 0, "pneumothorax": 0},
        ),
        # post-negation
        ("Pneumothorax is not seen.", {"pneumothorax": 0}),
        ("A fracture is not identified.", {"fracture": 0}),
        ("The left effusion has resolved.", {"pleural_effusion": 0}),
        # pseudo-negation: contains "no" but negates nothing
        ("No increase in the effusion.", {"pleural_effusion": 1}),
        ("No interval change in the right upper lobe nodule.", {"nodule": 1}),
        # uncertainty, before and after
        ("Possible nodule in the left apex.", {"nodule": -1}),
        ("Cannot exclude pneumonia.", {"pneumonia": -1}),
        ("Pneumonia cannot be excluded.", {"pneumonia": -1}),
        ("Right basilar opacity may represent atelectasis.", {"atelectasis": -1}),
        ("Pneumothorax?", {"pneumothorax": -1}),
        # termination ends the scope
        ("No effusion but there is consolidation.", {"pleural_effusion": 0, "consolidation": 1}),
        (
            "No pneumothorax; however, a small effusion is present.",
            {"pneumothorax": 0, "pleural_effusion": 1},
        ),
        # affirmed, plural, synonyms, degree words
        ("Bilateral pleural effusions.", {"pleural_effusion": 1}),
        ("Multiple pulmonary nodules.", {"nodule": 1}),
        ("Heart size is mildly enlarged.", {"cardiomegaly": 1}),
        ("Old healed rib fractures.", {"fracture": 1}),
        # exclusions: look-alikes name nothing
        ("Mass effect on the trachea.", {}),
        ("Small pericardial effusion.", {}),
        ("Lungs are clear.", {}),
    ],
)
def test_cues_and_scopes(text, expected):
    assert dict(LABELER.label(text).labels) == expected


def test_the_scope_is_the_sentence():
    labels = LABELER.label("No pneumothorax. Large left pleural effusion.").labels
    assert dict(labels) == {"pneumothorax": 0, "pleural_effusion": 1}


def test_impression_wins_over_findings():
    text = "FINDINGS: Small left pleural effusion.\nIMPRESSION: No pleural effusion."
    result = LABELER.label(text)
    assert dict(result.labels) == {"pleural_effusion": 0}
    span = result.evidence["pleural_effusion"]
    assert text[span.start : span.end] == "No pleural effusion."


def test_findings_and_impression_are_both_read():
    text = "FINDINGS: Mild cardiomegaly.\n\nIMPRESSION: Right lower lobe pneumonia."
    assert dict(LABELER.label(text).labels) == {"cardiomegaly": 1, "pneumonia": 1}


def test_indication_and_comparison_are_not_read():
    text = (
        "INDICATION: Rule out pneumonia, history of pneumothorax.\nCOMPARISON: Nodule "
        "follow-up.\nFINDINGS: The lungs are clear.\nIMPRESSION: Normal chest."
    )
    assert dict(LABELER.label(text).labels) == {}


def test_a_report_without_headers_is_read_whole():
    assert dict(LABELER.label("Small right pneumothorax.").labels) == {"pneumothorax": 1}


def test_deidentification_artifacts_are_tolerated():
    # OpenI-style "XXXX": neither a word of the scope nor a term.
    text = (
        "FINDINGS: There are no XXXX of a pleural effusion. XXXX XXXX XXXX pneumothorax "
        "is not seen.\nIMPRESSION: Normal chest x-XXXX. XXXX right lower lobe pneumonia."
    )
    labels = LABELER.label(text).labels
    assert dict(labels) == {"pleural_effusion": 0, "pneumothorax": 0, "pneumonia": 1}
    # A long run of redactions uses up no scope: the negation still reaches the term.
    redacted = "No " + "XXXX " * (MAX_SCOPE_WORDS + 2) + "pneumothorax."
    assert dict(LABELER.label(redacted).labels) == {"pneumothorax": 0}
    assert dict(LABELER.label("Chest x-XXXX XXXX.").labels) == {}


def test_evidence_is_the_sentence_offsets_and_hash():
    text = "FINDINGS: Heart normal. Small left pneumothorax.   "
    result = LABELER.label(text)
    span = result.evidence["pneumothorax"]
    assert text[span.start : span.end] == "Small left pneumothorax."
    assert span.sha256 == hashlib.sha256(b"Small left pneumothorax.").hexdigest()
    assert set(result.evidence) == set(result.labels)


def test_positive_mention_wins_within_a_section():
    # CheXpert's aggregation: any positive mention makes the finding positive.
    assert LABELER.label("No right effusion. Small left effusion.").labels == {
        "pleural_effusion": 1
    }
    assert LABELER.label("No nodule. Possible nodule.").labels == {"nodule": -1}


def test_findings_restrict_the_labels():
    text = "Cardiomegaly. No pneumothorax."
    assert dict(LABELER.label(text, findings=["pneumothorax"]).labels) == {"pneumothorax": 0}
    with pytest.raises(LabelerError, match="not in the lexicon: spleen"):
        LABELER.label(text, findings=["spleen"])


def test_the_result_is_frozen():
    result = LABELER.label("Cardiomegaly.")
    with pytest.raises(TypeError):
        result.labels["cardiomegaly"] = 0  # type: ignore[index]


def test_the_fingerprint_follows_the_lexicon():
    same = ReportLabeler(DEFAULT_LEXICON)
    assert same.fingerprint == LABELER.fingerprint and len(same.fingerprint) == 64
    extra = DEFAULT_LEXICON.merged(Lexicon({"nodule": ("spiculated opacity",)}))
    assert ReportLabeler(extra).fingerprint != LABELER.fingerprint
    assert ReportLabeler(DEFAULT_LEXICON, version="9.9").fingerprint != LABELER.fingerprint
    assert LABELER.describe() == {"name": "radwatch-context", "version": LABELER.version,
                                  "fingerprint": LABELER.fingerprint}  # fmt: skip


def test_a_site_lexicon_changes_what_is_found():
    labeler = ReportLabeler(DEFAULT_LEXICON.merged(Lexicon({"nodule": ("spiculated opacity",)})))
    assert dict(labeler.label("Spiculated opacities in the left upper lobe.").labels) == {
        "nodule": 1
    }
    assert dict(LABELER.label("Spiculated opacities in the left upper lobe.").labels) == {}


def test_an_empty_lexicon_is_refused():
    with pytest.raises(LabelerError):
        ReportLabeler(Lexicon({}))
    with pytest.raises(LabelerError):
        ReportLabeler(Lexicon({"nodule": ()}))
