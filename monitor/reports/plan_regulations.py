"""Which regulatory topics each section of the rendered monitoring plan covers, with sources.

Pure data for monitor/reports/plan_document.py (`radwatch plan render`): the sections of a
post-market monitoring plan, the EU AI Act / FDA / ACR–SIIM topics each one answers, the full
references, and the words a reader sees for the plan's signals and strata. A reading of the
texts, cited so that a reviewer can check it; not legal advice.
"""

from __future__ import annotations

from collections.abc import Mapping

# The sources the mapping cites (full references at the end of every rendered plan).
SOURCES: Mapping[str, str] = {
    "EU AI Act": "Regulation (EU) 2024/1689 of 13 June 2024 laying down harmonised rules on "
                 "artificial intelligence (Artificial Intelligence Act), OJ L, 12.7.2024.",
    "FDA PCCP": "FDA, Marketing Submission Recommendations for a Predetermined Change Control "
                "Plan for Artificial Intelligence-Enabled Device Software Functions, final "
                "guidance, December 2024.",
    "FDA AI-DSF": "FDA, Artificial Intelligence-Enabled Device Software Functions: Lifecycle "
                  "Management and Marketing Submission Recommendations, draft guidance, "
                  "January 2025.",
    "FDA RFC": "FDA, Request for Public Comment: Measuring and Evaluating Artificial "
               "Intelligence-enabled Medical Device Performance in the Real-World, "
               "30 September 2025.",
    "ACR–SIIM": "ACR–SIIM Practice Parameter for Imaging Artificial Intelligence, approved by "
                "the ACR Council at ACR 2026 (May 2026).",
    "21 CFR 11": "21 CFR Part 11, Electronic Records; Electronic Signatures, §11.10(e).",
    "Koch 2024": "Koch L.M., Baumgartner C.F., Berens P. Distribution shift detection for the "
                 "postmarket surveillance of medical AI algorithms: a retrospective simulation "
                 "study. npj Digital Medicine 7, 120 (2024).",
}  # fmt: skip

# Section → (title, the regulatory topics it covers as (source, topic)). Read with the sources
# above: the deployer's duties (AI Act Art. 26) and the provider's plan (Art. 72) both land here
# because a hospital running radwatch documents what it monitors for the provider's plan too.
COVERS: Mapping[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "use": ("Intended use and responsibility", (
        ("EU AI Act", "Art. 26(1)–(2) (use per the instructions for use; human oversight "
                      "assigned to competent persons)"),
        ("EU AI Act", "Art. 13(3)(b)(i) (intended purpose)"),
        ("ACR–SIIM", "governance group; inventory of AI tools with intended use"),
    )),
    "watched": ("What is watched", (
        ("EU AI Act", "Art. 72(1)–(2) (post-market monitoring system: collect, document and "
                      "analyse performance data over the lifetime)"),
        ("EU AI Act", "Art. 26(5) (deployer monitors operation)"),
        ("FDA PCCP", "Modification Protocol — data management practices, performance "
                     "evaluation"),
        ("FDA AI-DSF", "performance monitoring plan (data drift, subgroups)"),
        ("ACR–SIIM", "real-world performance and drift monitoring"),
    )),
    "budget": ("False-alarm budget and what it derives", (
        ("FDA RFC", "monitoring triggers: how thresholds are set"),
        ("FDA AI-DSF", "pre-specified, documented thresholds"),
        ("EU AI Act", "Art. 72(3) (the plan says how data are analysed)"),
    )),
    "incidents": ("Incident types: owner, severity, action", (
        ("EU AI Act", "Art. 26(5) (deployer informs the provider and authority of a risk)"),
        ("EU AI Act", "Art. 73 (serious incidents are reported)"),
        ("FDA RFC", "response protocols"),
        ("ACR–SIIM", "governance group; continuous quality improvement"),
    )),
    "stop": ("Stop rules", (
        ("EU AI Act", "Art. 26(5) (deployer monitors, informs, suspends use)"),
        ("EU AI Act", "Art. 14(4)(e) (human oversight can interrupt the system)"),
        ("ACR–SIIM", "defined stop rules"),
        ("FDA RFC", "response protocols"),
    )),
    "review": ("Review and retention", (
        ("EU AI Act", "Art. 72(1)–(3) (post-market monitoring system and plan)"),
        ("EU AI Act", "Art. 9(2)(c) (risk management uses post-market data)"),
        ("EU AI Act", "Art. 12 / 19 (logs); Art. 26(6) (deployer keeps logs ≥ 6 months)"),
        ("21 CFR 11", "§11.10(e) (audit trail kept as long as the records)"),
    )),
    "blind": ("What this plan cannot see", (
        ("FDA RFC", "performance metrics; real-world evaluation methods and their limits"),
        ("FDA AI-DSF", "subgroup performance"),
        ("Koch 2024", "some shifts need far more studies to detect than others"),
    )),
    "history": ("Approvals and version history", (
        ("EU AI Act", "Art. 72(3) and Annex IV(9) (the plan in the technical documentation)"),
        ("FDA PCCP", "update procedures; version control"),
        ("ACR–SIIM", "inventory with versions; governance approval"),
        ("21 CFR 11", "§11.10(e) (who changed what, when)"),
    )),
}  # fmt: skip

SIGNAL_NAMES: Mapping[str, str] = {
    "acquisition": "Acquisition: DICOM attributes (scanner, kVp, photometric interpretation …)",
    "image_quality": "Image quality measured on the pixels",
    "image_embedding": "Image content: embeddings from radwatch's fixed encoder",
    "model_embedding": "The model's own embeddings",
    "scores": "The model's output scores and calls",
    "performance": "Performance per window: realised (labelled) and estimated",
    "performance_cusum": "Performance per labelled study (Bernoulli CUSUM)",
    "discrepancy": "The AI's call against the radiologist's report, per study (discrepancy rate)",
}
STRATUM_NAMES: Mapping[str, str] = {"site": "site", "scanner": "scanner (make and model)",
                                    "view": "view position", "sex": "patient sex",
                                    "age_band": "age band"}  # fmt: skip
SHIFT_TITLES: Mapping[str, str] = {
    "acquisition": "Acquisition change", "population": "Population change",
    "prevalence": "Prevalence change", "integration": "Integration fault",
    "performance": "Performance drop", "unknown": "Unexplained shift",
}  # fmt: skip
