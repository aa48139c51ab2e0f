"""Allow-listed DICOM attributes and age bands (PS3.5 §6.2 AS value representation)."""

import pytest

from collectors.dicom_tags import age_band, normalise_tags


@pytest.mark.parametrize(
    ("age", "band"),
    [("000D", "0-17"), ("006M", "0-17"), ("017Y", "0-17"), ("018Y", "18-29"), ("044Y", "30-44"),
     ("059Y", "45-59"), ("074Y", "60-74"), ("090Y", "75+"), ("052W", "0-17"), ("bad", None)],
)  # fmt: skip
def test_age_band(age, band):
    assert age_band(age) == band


def test_only_allow_listed_attributes_survive():
    tags = {"PatientName": "DOE^JANE", "PatientID": "P1", "Manufacturer": "ACME",
            "WindowCenter": [40, 400], "PixelSpacing": ["0.2", "0.2"], "KVP": "nan",
            "StationName": "XR-ROOM-3", "PatientAge": "045Y"}  # fmt: skip
    out = normalise_tags(tags, lambda kind, value: f"pseudo({kind})")
    assert out == {"Manufacturer": "ACME", "WindowCenter": 40.0, "PixelSpacing": [0.2, 0.2],
                   "StationName": "pseudo(StationName)", "AgeBand": "45-59"}  # fmt: skip
