"""`radwatch studies resolve`: a study pseudonym back to its PACS identifiers, against a real
Orthanc holding synthetic studies (tests/pacs_servers.py) and the real PostgreSQL; audited
without the identifier; refused without the key."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid

import psycopg
import pytest
from conftest import REPO, radwatch_cmd, settings_env
from psycopg.types.json import Jsonb

from collectors.pseudonym import Pseudonymiser
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels


def _study(seed: int, index: int):
    plan = plan_study(seed, index)
    return plan, dicom_bytes(plan, stored_pixels(plan))


def _store_inference(url: str, key: str, plan) -> tuple[str, str]:
    """An inference of this study as the collector stores it: identifiers pseudonymised."""
    pseudo = Pseudonymiser(key.encode())
    study, accession = pseudo("study_uid", plan.study_uid), pseudo("accession",
                                                                   _accession(plan))  # fmt: skip
    event = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO inferences (event_id, content_hash, model_name, site, occurred_at,
                   study_pseudo, accession_pseudo, dicom, scores, thresholds, kafka_topic,
                   kafka_partition, kafka_offset)
               VALUES (%s, %s, 'cxr', 'north', %s, %s, %s, %s, %s, %s, 't', 0, 0)""",
            (event, hashlib.sha256(event.encode()).hexdigest(), plan.occurred_at, study,
             accession, Jsonb({}), Jsonb({"nodule": 0.3}), Jsonb({"nodule": 0.5})),
        )  # fmt: skip
    return study, accession


def _accession(plan) -> str:
    return f"SIMACC{plan.seed}{plan.index:07d}"  # as collectors/simulator/study.py writes it


def _resolve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(radwatch_cmd("studies", "resolve", *args), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _audit_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT actor, entity_id, outcome, to_jsonb(a)::text FROM audit_events a
               WHERE action = 'study.resolved' ORDER BY seq"""
        ).fetchall()


@pytest.fixture
def hospital(settings, pacs):
    """Three synthetic studies in the PACS, two of them (and one not in the PACS) stored."""
    plans = []
    for index in range(3):
        plan, raw = _study(31, index)
        pacs.upload(raw)
        plans.append(plan)
    missing, _ = _study(32, 0)  # stored by radwatch, never sent to this PACS
    stored = {p.study_uid: _store_inference(settings.database_url, settings.pseudonym_key, p)
              for p in (plans[1], plans[2], missing)}  # fmt: skip
    env = settings_env(settings) | {"RADWATCH_DICOMWEB_URLS": pacs.dicomweb}
    return plans, missing, stored, env


def test_resolves_study_and_accession_pseudonyms_through_the_pacs(settings, hospital) -> None:
    plans, _, stored, env = hospital
    target = plans[1]
    study_pseudo, accession_pseudo = stored[target.study_uid]
    result = _resolve(env, study_pseudo, "--by", "dr.lee")
    assert result.returncode == 0, result.stderr
    assert f"StudyInstanceUID: {target.study_uid}" in result.stdout
    assert f"AccessionNumber:  {_accession(target)}" in result.stdout
    # Never in the log (stderr), never in the audit row.
    assert target.study_uid not in result.stderr and _accession(target) not in result.stderr
    doc = json.loads(_resolve(env, accession_pseudo, "--by", "dr.lee", "--json").stdout)
    assert doc == {"pseudonym": accession_pseudo, "matched": "AccessionNumber",
                   "study_instance_uid": target.study_uid,
                   "accession_number": _accession(target)}  # fmt: skip
    rows = _audit_rows(settings.database_url)
    assert [(r[0], r[1], r[2]) for r in rows] == [("dr.lee", study_pseudo, "success"),
                                                 ("dr.lee", accession_pseudo, "success")]  # fmt: skip
    for row in rows:
        assert target.study_uid not in row[3] and _accession(target) not in row[3], row[3]
        assert json.loads(row[3])["detail"]["source"] == "dicomweb"


def test_no_match_is_exit_1_and_audited_as_not_found(settings, hospital) -> None:
    _, missing, stored, env = hospital
    study_pseudo, _ = stored[missing.study_uid]  # stored, but the PACS never had it
    result = _resolve(env, study_pseudo, "--by", "qa")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("radwatch: none of the PACS's")
    (row,) = _audit_rows(settings.database_url)
    assert row[:3] == ("qa", study_pseudo, "not_found")
    unknown = _resolve(env, "0" * 32, "--by", "qa")  # no stored inference: date unknown
    assert unknown.returncode == 2 and "give --candidates FILE" in unknown.stderr


def test_candidates_file_works_offline(settings, hospital, tmp_path) -> None:
    plans, missing, stored, env = hospital
    offline = {k: v for k, v in env.items() if k != "RADWATCH_DICOMWEB_URLS"}
    worklist = tmp_path / "worklist.txt"
    worklist.write_text(f"# export\n{_accession(plans[0])}\n{_accession(missing)}\n\n")
    result = _resolve(offline, stored[missing.study_uid][1], "--by", "qa",
                      "--candidates", str(worklist))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"AccessionNumber:  {_accession(missing)}" in result.stdout
    (row,) = _audit_rows(settings.database_url)
    detail = json.loads(row[3])["detail"]
    assert detail == {"source": "candidates", "candidates": 2, "matched": "AccessionNumber"}


def test_refused_in_one_line_without_the_key(settings, hospital, tmp_path) -> None:
    plans, _, stored, env = hospital
    keyless = {k: v for k, v in env.items() if k != "RADWATCH_PSEUDONYM_KEY"}
    keyless["RADWATCH_DATA_DIR"] = str(tmp_path / "empty")  # no generated key there either
    result = _resolve(keyless, stored[plans[1].study_uid][0], "--by", "qa")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "radwatch: no pseudonym key: set RADWATCH_PSEUDONYM_KEY (or _FILE) to the key the "
        "collectors use"]  # fmt: skip
    assert not (tmp_path / "empty" / "pseudonym.key").exists()  # none generated
    assert _audit_rows(settings.database_url) == []
