"""TID 1500 SRs built with highdicom → model, scores or calls, source images, and the event.

Covers the default mapping (algorithm identification, device observer, manufacturer), the
probability units, call-only groups, the evidence fallback, per-model overrides, each refusal's
reason, and (Hypothesis) that no malformed dataset raises anything but SrMappingError.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from datetime import UTC, datetime

import pydicom
import pytest
from dicom_sr_objects import PHI_MARKERS, ct_series, measurement_sr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code

from collectors.dicom_results import ModelOverrides, SrMappingError, inference_event, map_sr
from collectors.errors import Reason
from collectors.events import InferenceEvent, parse_record
from collectors.pseudonym import Pseudonymiser

PSEUDONYM = Pseudonymiser(b"k" * 32)
IMAGES = ct_series(2)
SR = measurement_sr(IMAGES)


def one(sr: Dataset, **overrides: ModelOverrides):
    (result,) = map_sr(sr, overrides)
    return result


def test_algorithm_identification_names_the_model_and_the_probability_is_the_score() -> None:
    result = one(SR)
    assert (result.model_name, result.model_version) == ("NoduleNet", "2.1.0")
    assert result.scores == {"nodule": pytest.approx(0.83)}
    assert result.calls == () and result.thresholds == {}
    # The group's source images, with series from the evidence sequence.
    assert [s.sop_uid for s in result.sources] == [im.SOPInstanceUID for im in IMAGES]
    assert {s.series_uid for s in result.sources} == {IMAGES[0].SeriesInstanceUID}
    assert result.study_uid == IMAGES[0].StudyInstanceUID


def test_device_observer_name_when_no_algorithm_identification() -> None:
    assert one(measurement_sr(IMAGES, algorithm=None)).model_name == "nodule-device"


def test_manufacturer_and_model_name_when_no_algorithm_and_no_device_observer() -> None:
    sr = measurement_sr(IMAGES, algorithm=None, observer_name=None)
    assert one(sr).model_name == "AIVendor NN-CT"


@pytest.mark.parametrize(
    ("value", "unit", "score"),
    [(42, Code("%", "UCUM", "percent"), 0.42), (0.3, Code("{probability}", "UCUM", "p"), 0.3)],
)
def test_percent_and_probability_units(value: float, unit: Code, score: float) -> None:
    assert one(measurement_sr(IMAGES, value=value, unit=unit)).scores == {
        "nodule": pytest.approx(score)
    }


def test_a_group_without_a_probability_records_a_call() -> None:
    result = one(measurement_sr(IMAGES, value=None))
    assert result.scores == {"nodule": 1.0}
    assert result.calls == ("nodule",) and result.thresholds == {"nodule": 0.5}


@pytest.mark.parametrize(
    ("presence", "score"),
    [(Code("272519000", "SCT", "Absent"), 0.0), (Code("2667000", "SCT", "Absent"), 0.0),
     (Code("121054", "DCM", "Absent"), 0.0), (Code("52101004", "SCT", "Present"), 1.0),
     (Code("121053", "DCM", "Present"), 1.0)],
)  # fmt: skip
def test_a_call_is_negative_where_the_group_says_the_finding_is_absent(
    presence: Code, score: float
) -> None:
    result = one(measurement_sr(IMAGES, value=None, presence=presence))
    assert result.scores == {"nodule": score}
    assert result.calls == ("nodule",) and result.thresholds == {"nodule": 0.5}


def test_a_probability_is_the_score_whatever_the_presence_row_says() -> None:
    absent = Code("272519000", "SCT", "Absent")
    assert one(measurement_sr(IMAGES, presence=absent)).scores == {"nodule": pytest.approx(0.83)}


def test_a_measurement_in_another_unit_is_not_a_score() -> None:
    result = one(measurement_sr(IMAGES, value=12.0, unit=Code("mm", "UCUM", "millimeter")))
    assert result.calls == ("nodule",)


def test_finding_meaning_in_snake_case_and_evidence_when_groups_name_no_image() -> None:
    sr = measurement_sr(IMAGES, finding=Code("36118008", "SCT", "Pneumothorax, Tension"),
                        group_sources=False)  # fmt: skip
    result = one(sr)
    assert list(result.scores) == ["pneumothorax_tension"]
    assert [s.sop_uid for s in result.sources] == [im.SOPInstanceUID for im in IMAGES]


def test_per_model_overrides_rename_and_set_thresholds() -> None:
    overrides = ModelOverrides.from_mapping({
        "name": "lung-ct", "version": "9", "findings": {"SCT:27925004": "lung_nodule"},
        "thresholds": {"lung_nodule": 0.7},
    })  # fmt: skip
    result = one(SR, NoduleNet=overrides)
    assert (result.model_name, result.model_version) == ("lung-ct", "9")
    assert result.scores == {"lung_nodule": pytest.approx(0.83)}
    assert result.thresholds == {"lung_nodule": 0.7}


def test_overrides_can_name_the_score_concept_and_unit() -> None:
    sr = measurement_sr(IMAGES, value=7.0, unit=Code("{score}", "UCUM", "score"))
    overrides = ModelOverrides.from_mapping({"score_units": {"{score}": 0.1}})
    assert one(sr, NoduleNet=overrides).scores == {"nodule": pytest.approx(0.7)}
    only_other = ModelOverrides.from_mapping({"score_concepts": ["DCM:999999"]})
    assert one(SR, NoduleNet=only_other).calls == ("nodule",)
    with pytest.raises(ValueError, match="unknown key"):
        ModelOverrides.from_mapping({"treshold": 1})


def _without(ds: Dataset, *names: str) -> Dataset:
    out = copy.deepcopy(ds)
    for name in names:
        delattr(out, name)
    return out


@pytest.mark.parametrize(
    ("sr", "reason"),
    [
        (IMAGES[0], Reason.SR_INVALID),  # an image is no SR
        (_without(SR, "ContentSequence"), Reason.SR_INVALID),
        (_without(SR, "StudyInstanceUID"), Reason.SR_INVALID),
        (measurement_sr(IMAGES, value=150, unit=Code("%", "UCUM", "percent")),
         Reason.SCORE_OUT_OF_RANGE),
        (_without(measurement_sr(IMAGES, algorithm=None, observer_name=None),
                  "Manufacturer", "ManufacturerModelName"), Reason.SR_NO_MODEL),
        (_without(measurement_sr(IMAGES, group_sources=False),
                  "CurrentRequestedProcedureEvidenceSequence"), Reason.SR_NO_SOURCE_IMAGES),
    ],
)  # fmt: skip
def test_what_cannot_be_mapped_is_refused_with_its_reason(sr: Dataset, reason: Reason) -> None:
    with pytest.raises(SrMappingError) as caught:
        map_sr(sr)
    assert caught.value.reason == reason
    for marker in PHI_MARKERS:
        assert marker not in caught.value.message


def test_a_group_without_a_finding_leaves_nothing_to_score() -> None:
    sr = copy.deepcopy(SR)
    group = _groups(sr)[0]
    group.ContentSequence = DicomSequence(
        [i for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue != "121071"]
    )
    with pytest.raises(SrMappingError) as caught:
        map_sr(sr)
    assert caught.value.reason == Reason.SR_NO_FINDINGS


def _groups(sr: Dataset) -> list[Dataset]:
    (measurements,) = [
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
    ]
    return list(measurements.ContentSequence)


def test_the_event_is_contract_v1_and_the_collector_pseudonymises_it() -> None:
    result = one(SR)
    doc = inference_event(
        result, image=result.sources[0], image_uri="file:///data/images/x.dcm",
        image_header=IMAGES[0], pseudonym=PSEUDONYM, received_at=datetime.now(UTC), site="north",
    )  # fmt: skip
    assert doc["study"]["accession"] == IMAGES[0].AccessionNumber  # raw: the contract
    parsed = parse_record(json.dumps(doc).encode(), default_schema="radwatch.inference.v1",
                          pseudonym=PSEUDONYM, max_bytes=1 << 20)  # fmt: skip
    assert isinstance(parsed, InferenceEvent), parsed
    assert parsed.model_name == "NoduleNet" and parsed.scores == {"nodule": pytest.approx(0.83)}
    assert parsed.dicom["Manufacturer"] == "ScanCo" and parsed.dicom["Modality"] == "CT"
    assert parsed.study.study == PSEUDONYM("study_uid", IMAGES[0].StudyInstanceUID)
    for marker in PHI_MARKERS:
        assert marker not in repr(parsed)
    # The same SR and model: the same event id (a re-sent SR is stored once).
    again = inference_event(result, image=result.sources[0], image_uri="file:///x.dcm",
                            image_header=None, pseudonym=PSEUDONYM,
                            received_at=datetime.now(UTC))  # fmt: skip
    assert again["event_id"] == doc["event_id"]
    assert result.sr_sop_uid not in doc["event_id"]


# -- malformed datasets ------------------------------------------------------------------------


def _items(ds: Dataset, out: list[tuple[Dataset, int]]) -> list[tuple[Dataset, int]]:
    """Every (dataset, tag) in the SR, sequences included, so Hypothesis can damage any."""
    for element in ds:
        out.append((ds, element.tag))
        if element.VR == "SQ":
            for item in element.value:
                _items(item, out)
    return out


GARBAGE = st.one_of(
    st.none(), st.text(max_size=20), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True), st.just(""), st.just([]),
)  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the damaged values
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_datasets_raise_only_the_mapping_error(data: st.DataObject) -> None:
    sr = copy.deepcopy(SR)
    elements = _items(sr, [])
    picks = data.draw(st.lists(st.integers(0, len(elements) - 1), min_size=1, max_size=6))
    for index in picks:
        ds, tag = elements[index]
        if tag not in ds:
            continue
        if data.draw(st.booleans()):
            del ds[tag]
        else:
            try:
                ds[tag].value = data.draw(GARBAGE)
            except Exception:  # noqa: BLE001, S112 - pydicom refused the value itself: skip it
                continue
    try:
        results = map_sr(sr)
    except SrMappingError as exc:
        assert isinstance(exc.reason, Reason)
    else:
        assert all(0.0 <= v <= 1.0 for r in results for v in r.scores.values())


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=8)),
                     min_size=1, max_size=4))  # fmt: skip
def test_damaged_bytes_raise_only_the_mapping_error(cuts: list[tuple[int, bytes]]) -> None:
    buffer = io.BytesIO()
    SR.save_as(buffer)
    raw = bytearray(buffer.getvalue())
    for offset, junk in cuts:
        raw[offset % len(raw) : offset % len(raw) + len(junk)] = junk
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(raw)), force=True)
    except Exception:  # noqa: BLE001 - not even DICOM: the listener refuses it before mapping
        return
    with contextlib.suppress(SrMappingError):
        map_sr(ds)
