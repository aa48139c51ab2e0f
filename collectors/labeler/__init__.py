"""The report labeler: radiology report text → per-finding labels with offsets and hashes.

Between the report sources (HL7 v2 ORU, FHIR DiagnosticReport, `radwatch labels derive`)
and the label events they publish: NegEx/ConText rules (collectors.labeler.context) over a
chest-radiography lexicon (collectors.labeler.lexicon), configurable per site and model
(collectors.labeler.config). Report text is PHI: it never leaves collectors/ except as the
numbers and SHA-256 hashes of `ReportLabels`.
"""

from collectors.labeler.config import (
    LabelerConfig,
    config_from_mapping,
    load_labeler_config,
    to_label_values,
)
from collectors.labeler.labeler import (
    LABELER_VERSION,
    LabelerError,
    ReportLabeler,
    ReportLabels,
    Span,
    default_labeler,
)
from collectors.labeler.lexicon import DEFAULT_FINDINGS, DEFAULT_LEXICON, Lexicon

__all__ = [
    "DEFAULT_FINDINGS",
    "DEFAULT_LEXICON",
    "LABELER_VERSION",
    "LabelerConfig",
    "LabelerError",
    "Lexicon",
    "ReportLabeler",
    "ReportLabels",
    "Span",
    "config_from_mapping",
    "default_labeler",
    "load_labeler_config",
    "to_label_values",
]
