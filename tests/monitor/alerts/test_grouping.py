"""Grouping alerts into incidents (monitor.alerts.grouping), on hand-made alerts shaped like the
scheduler's and the performance watch's details: nesting, onset tolerance, root cause, every
shift type, and a statement that quotes findings but never a study pseudonym."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts import grouping
from monitor.alerts.grouping import AlertFacts, assess, belongs, choose, nested, shift_type

T0 = datetime(2026, 11, 7, 6, 15, tzinfo=UTC)
WINDOW = timedelta(hours=4)
SITES = {"ACME X1": ["north-general"], "ACME X2": ["east-imaging"],
         "Borealis B-200": ["south-clinic", "north-general"]}  # fmt: skip


def finding(feature: str, summary: str = "", p: float = 1e-6, effect: float = 0.5,
            current: str = "", reference: str = "",
            new_values: tuple[str, ...] = ()) -> dict:  # fmt: skip
    return {"feature": feature, "test": "chi2", "adjusted_p": p, "p_value": p,
            "effect_size": effect, "summary": summary or f"{feature} moved",
            "current": current, "reference": reference, "new_values": list(new_values)}  # fmt: skip


def alert(i: int, stratum: str, signal: str, *features: dict, onset: datetime = T0,
          tests: tuple[dict, ...] = (), model: str = "cxr-nodule", **extra) -> AlertFacts:  # fmt: skip
    kind, value = stratum.split("=", 1)
    # A firing whole-signal test at p = 1e-6 unless the alert says otherwise.
    tests = tests or ({"detector": f"test:{signal}", "status": "drift", "adjusted_p": 1e-6},)
    details = {"signal": signal, "stratum": stratum, "window_start": onset.isoformat(),
               "window_end": (onset + WINDOW).isoformat(), "top_features": list(features),
               "tests": list(tests), "atypical_ids": ["study-secret-00042"], **extra}  # fmt: skip
    return AlertFacts(i, model, kind, value, signal, onset, details)


SOFTWARE = finding("SoftwareVersions", "SoftwareVersions: '5.0.1' 100% of window, never seen "
                   "in reference", p=0.0, effect=1.0, new_values=("5.0.1",))  # fmt: skip
SPECIFICITY = {"findings": {"nodule": {"worst_test": {"metric": "specificity", "reference": 1.0,
                                                     "window": 0.77, "p_value": 8e-7}}},
               "degraded_findings": ["nodule"]}  # fmt: skip


def software_update() -> list[AlertFacts]:
    """One scanner's update: 5 signals at scanner, site and whole model, plus performance."""
    out, i = [], 0
    for stratum in ("all=all", "site=north-general", "scanner=ACME X1"):
        for signal in ("acquisition", "image_quality", "scores", "model_embedding"):
            i += 1
            feats = (SOFTWARE,) if signal == "acquisition" else ()
            out.append(alert(i, stratum, signal, *feats, onset=T0 + timedelta(hours=i % 3)))
    out.append(alert(99, "scanner=ACME X1", "performance", **SPECIFICITY))
    return out


def group(alerts: list[AlertFacts]) -> list[list[AlertFacts]]:
    incidents: list[list[AlertFacts]] = []
    for a in alerts:
        pick = choose(a, incidents, SITES)
        if pick is None:
            incidents.append([a])
        else:
            incidents[pick].append(a)
    return incidents


def test_a_scanner_update_is_one_incident_rooted_at_the_scanner():
    incidents = group(software_update())
    assert len(incidents) == 1 and len(incidents[0]) == 13
    found = assess(incidents[0], SITES)
    assert (found.root_cause, found.shift_type) == ("scanner=ACME X1", "acquisition")
    assert found.onset == T0
    text = found.summary
    assert text.startswith("scanner ACME X1 at north-general: SoftwareVersions: '5.0.1'"), text
    assert "since 2026-11-07 06:15 UTC" in text
    assert "nodule specificity 0.77 vs 1.00 in reference" in text
    assert "the site and whole-model alerts follow from it" in text
    assert "study-secret" not in text  # pseudonyms stay in the alerts, never in the statement
    assert found.recommended_action == grouping.RECOMMENDED_ACTIONS["acquisition"]


def test_nesting_whole_model_site_scanner_and_population_strata():
    a, site, scanner = ("all", "all"), ("site", "north-general"), ("scanner", "ACME X1")
    assert nested(a, site, SITES) and nested(site, scanner, SITES) and nested(a, scanner, SITES)
    assert not nested(("site", "south-clinic"), scanner, SITES)  # X1 never produced there
    assert nested(("site", "south-clinic"), ("scanner", "Borealis B-200"), SITES)
    assert not nested(site, ("site", "south-clinic"), SITES)  # sibling sites
    assert not nested(scanner, ("scanner", "ACME X2"), SITES)
    assert nested(("age_band", "0-17"), ("site", "south-clinic"), SITES)  # cuts across
    assert nested(("site", "x"), ("scanner", "never seen"), SITES)  # unknown: benefit of doubt


def test_separate_shifts_make_separate_incidents():
    # Another site, another model, or an onset days later: not the same incident.
    first = [alert(1, "site=north-general", "acquisition", SOFTWARE)]
    assert not belongs(alert(2, "site=south-clinic", "acquisition", SOFTWARE), first, SITES)
    assert not belongs(alert(3, "all=all", "scores", model="other"), first, SITES)
    late = alert(4, "all=all", "scores", onset=T0 + timedelta(days=3))
    assert not belongs(late, first, SITES)
    # Within the tolerance: a day at least, or two of the alert's windows when longer.
    assert belongs(alert(5, "all=all", "scores", onset=T0 + timedelta(hours=23)), first, SITES)
    long_window = alert(6, "all=all", "scores", onset=T0 + timedelta(hours=40),
                        window_start=(T0 + timedelta(hours=40)).isoformat(),
                        window_end=(T0 + timedelta(hours=60)).isoformat())  # fmt: skip
    assert grouping.tolerance(long_window) == timedelta(hours=40)
    assert belongs(long_window, first, SITES)
    # An alert joins the incident whose onset is nearest when two fit.
    near = [alert(7, "all=all", "acquisition", onset=T0 + timedelta(hours=20))]
    assert choose(alert(8, "all=all", "scores", onset=T0 + timedelta(hours=18)),
                  [first, near], SITES) == 1  # fmt: skip


def test_root_cause_is_the_most_specific_stratum():
    assert grouping.root_stratum([alert(1, "all=all", "scores")]) == ("all", "all")
    assert grouping.root_stratum([alert(1, "all=all", "scores"),
                                  alert(2, "site=south-clinic", "acquisition")]) \
        == ("site", "south-clinic")  # fmt: skip
    assert grouping.root_stratum([alert(1, "all=all", "acquisition"),
                                  alert(2, "age_band=0-17", "acquisition")]) \
        == ("age_band", "0-17")  # fmt: skip
    children = [alert(1, "all=all", "acquisition", finding("AgeBand", "AgeBand: '0-17' 40% of "
                                                          "window, never seen in reference")),
                alert(2, "age_band=0-17", "performance", **SPECIFICITY)]  # fmt: skip
    found = assess(children, SITES)
    assert (found.root_cause, found.shift_type) == ("age_band=0-17", "population")
    # The band's own alert has no attribute finding: the whole model's reading is quoted.
    assert found.summary.startswith("age band 0-17: AgeBand: '0-17' 40% of window"), found.summary
    two = [alert(1, "sex=F", "acquisition"), alert(2, "age_band=0-17", "acquisition")]
    assert grouping.root_stratum(two) == ("all", "all")


SHIFT_CASES = [
    # A never-seen vendor at one site: device attributes lead.
    ([alert(1, "site=south-clinic", "acquisition",
            finding("Manufacturer", new_values=("Zenith Medical",))),
      alert(2, "site=south-clinic", "model_embedding")], "acquisition"),
    # Images moved at one scanner with no tag changed (e.g. a new processing curve).
    ([alert(1, "scanner=ACME X1", "image_embedding")], "acquisition"),
    ([alert(1, "scanner=ACME X1", "image_quality",
            finding("rows", reference="median 256", current="median 128"))], "acquisition"),
    # Children, lateral views, sex: population, even with images and scores moving.
    ([alert(1, "all=all", "acquisition", finding("AgeBand")),
      alert(2, "all=all", "image_embedding"), alert(3, "all=all", "scores")], "population"),
    ([alert(1, "all=all", "acquisition", finding("ViewPosition", p=1e-9),
            finding("KVP", p=1e-3))], "population"),
    # The positive-call rate moved, the images did not (or barely: more positive studies), and
    # a borderline attribute rode along (the demo's prevalence_change, seed 1).
    ([alert(1, "all=all", "scores", finding("call:nodule", p=8.7e-14)),
      alert(2, "all=all", "model_embedding"),
      alert(3, "all=all", "acquisition", finding("PatientSex", p=0.046)),
      alert(4, "all=all", "image_embedding",
            tests=({"detector": "mmd:image_embedding", "status": "drift", "adjusted_p": 0.012},))],
     "prevalence"),
    # A weak attribute finding alone still names its kind.
    ([alert(1, "all=all", "acquisition", finding("KVP", p=0.02))], "acquisition"),
    # Inverted images: MONOCHROME1 written, or intensities mirrored, or a tag gone missing.
    ([alert(1, "scanner=ACME X2", "acquisition", finding("KVP", p=1e-12),
            finding("PhotometricInterpretation", p=1e-3)),
      alert(2, "scanner=ACME X2", "performance", **SPECIFICITY)], "integration"),
    ([alert(1, "all=all", "image_quality",
            finding("mean", reference="median 0.3", current="median 0.69"))], "integration"),
    ([alert(1, "all=all", "acquisition",
            finding("KVP", current="'(missing)' 40% of window"))], "integration"),
    # Labels show harm with no input shift.
    ([alert(1, "site=east-imaging", "performance", **SPECIFICITY)], "performance"),
    ([alert(1, "all=all", "performance", **SPECIFICITY),
      alert(2, "all=all", "scores")], "performance"),
    # Nothing to go on: the online detector alone, or images moving everywhere.
    ([alert(1, "all=all", "online")], "unknown"),
    ([alert(1, "all=all", "image_embedding")], "unknown"),
]  # fmt: skip
SHIFT_IDS = ["vendor", "images-at-scanner", "binning", "paediatric", "lateral", "prevalence", "weak-tag",
             "monochrome1", "mirrored-intensity", "missing-tag", "performance",
             "performance-with-scores", "online-only", "images-everywhere"]  # fmt: skip


@pytest.mark.parametrize(("alerts", "expected"), SHIFT_CASES, ids=SHIFT_IDS)
def test_shift_types(alerts, expected):
    root = grouping.root_stratum(alerts)
    assert shift_type(alerts, root) == expected
    found = assess(alerts, SITES)
    assert found.shift_type == expected and found.recommended_action
    assert f"({expected} shift, {len(alerts)} alert" in found.summary


def test_whole_signal_readings_and_recommended_actions_from_a_table():
    mmd = alert(1, "site=south-clinic", "model_embedding",
                tests=({"detector": "mmd:model_embedding", "status": "drift",
                        "summary": "standardised MMD² 12.3"},))  # fmt: skip
    found = assess([mmd], SITES, actions={"unknown": "call the vendor"})
    assert "mmd:model_embedding: standardised MMD² 12.3" in found.summary
    assert found.summary.startswith("site south-clinic: ")
    assert found.recommended_action == "call the vendor"
    assert set(grouping.RECOMMENDED_ACTIONS) == set(grouping.SHIFT_TYPES)
    with pytest.raises(ValueError, match="at least one alert"):
        assess([], SITES)
