"""The audit trail against a real PostgreSQL: tampering of each kind, done as the superuser
past the triggers, is found at the right sequence number by the real `radwatch audit verify`;
the application role cannot rewrite; exports validate as FHIR R4 and carry no PHI."""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import io
import json
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from conftest import TEST_KEY, produce, run_radwatch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.types.json import Jsonb

from monitor.alerts import lifecycle
from monitor.audit import trail
from monitor.audit.checkpoint import (
    Checkpoint,
    checkpoint_if_due,
    create_checkpoint,
    key_id,
    merkle_root,
    read_checkpoint_file,
)
from monitor.audit.export import read_ndjson
from monitor.audit.trail import GENESIS, AuditRecord, chain_hash, read_records, record
from monitor.audit.verify import verify
from monitor.cli import UsageError
from monitor.commands import audit_cmd, compliance_report_cmd
from monitor.ingest.wiring import build_worker
from monitor.pilot.demo import audit_step
from monitor.store import db

N_ROWS = 30  # rows in every tampering scenario; tampering lands in the middle (seq 12..17)


def fill(url: str, n: int = N_ROWS) -> None:
    with db.connect(url, autocommit=True) as conn:
        for i in range(n):
            record(conn, actor="qa.lead" if i % 3 else "radwatch", action="drift.window",
                   entity_type="drift_window", entity_id=f"w{i}", entity_version="1",
                   outcome="drift" if i % 7 == 0 else "ok",
                   refs={"model_version": "1.4.2", "reference": "ab12"},
                   detail={"p_value": 0.01 * i, "n": 200 + i, "stat": float("nan") if i == 3
                           else 1e16, "decision": "drift" if i % 7 == 0 else "ok"})  # fmt: skip


def superuser(url: str) -> psycopg.Connection:
    """A superuser session that bypasses ordinary triggers (PostgreSQL replication role)."""
    conn = db.connect(url, autocommit=True)
    conn.execute("SET session_replication_role = replica")
    return conn


def radwatch(settings, *args: str) -> tuple[int, str]:
    """The audit commands' real argument parsing and handlers, in this process: a subprocess
    per call would import every command's dependencies (torch, sklearn) each time. The
    entry point itself is exercised by the tests that use `run_radwatch`."""
    parser = argparse.ArgumentParser(prog="radwatch")
    sub = parser.add_subparsers(dest="command", required=True)
    audit_cmd.register(sub)
    compliance_report_cmd.register(sub)
    ns = parser.parse_args(args)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = ns.handler(ns, settings)
        except UsageError as exc:
            return 2, str(exc)
    return code, out.getvalue() + err.getvalue()


def verify_cli(settings, *extra: str) -> tuple[int, str]:
    code, out = radwatch(settings, "audit", "verify", *extra)
    assert code in (0, 1), out
    return code, out


def rows(url: str) -> list[AuditRecord]:
    with db.connect(url) as conn:
        return list(read_records(conn))


def insert_raw(conn: psycopg.Connection, row: AuditRecord) -> None:
    conn.execute(
        f"INSERT INTO audit_events ({trail.COLUMNS}) VALUES "
        "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (row.seq, row.recorded_at, row.actor, row.action, row.entity_type, row.entity_id,
         row.entity_version, row.outcome, row.reason, Jsonb(dict(row.refs)),
         Jsonb(dict(row.detail)), row.prev_hash, row.row_hash),
    )  # fmt: skip


def rehash_from(conn: psycopg.Connection, start: int) -> None:
    """What a careful attacker does after a change: recompute every later hash and link."""
    prev = GENESIS
    for row in list(read_records(conn)):
        if row.seq >= start:
            fixed = replace(row, prev_hash=prev)
            new_hash = chain_hash(prev, fixed.content())
            conn.execute("UPDATE audit_events SET prev_hash = %s, row_hash = %s WHERE seq = %s",
                         (prev, new_hash, row.seq))  # fmt: skip
            prev = new_hash
        else:
            prev = row.row_hash


# -- the untouched trail ----------------------------------------------------------------------


def test_untouched_trail_verifies_with_checkpoints_via_the_cli(settings):
    fill(settings.database_url)
    code, sealed = radwatch(settings, "audit", "checkpoint", "--json")
    first = json.loads(sealed.splitlines()[-1])
    assert first["checkpoint"] == 1 and first["first_seq"] == 1
    fill(settings.database_url, 5)
    radwatch(settings, "audit", "checkpoint")
    fill(settings.database_url, 3)  # not yet checkpointed: still verified by the chain
    result = run_radwatch(settings, "audit", "verify", check=False)  # the real entry point
    assert result.returncode == 0, result.stderr[-2000:]
    assert "audit trail intact" in result.stdout and "2 checkpoints" in result.stdout
    key = settings.data_dir / "audit-signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(read_checkpoint_file(settings.data_dir / "audit-checkpoints.jsonl")) == 2
    with db.connect(settings.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()
        assert stored == (2,)
        # The key never enters the database.
        pem = key.read_text().split("-----")[2].strip()
        assert conn.execute(
            "SELECT count(*) FROM audit_events WHERE refs::text LIKE %s OR detail::text LIKE %s",
            (f"%{pem[:20]}%", f"%{pem[:20]}%"),
        ).fetchone() == (0,)
    with superuser(settings.database_url) as conn:
        tamper_changed(conn)
    result = run_radwatch(settings, "audit", "verify", check=False)
    assert result.returncode == 1 and "seq 14: changed" in result.stderr, result.stderr[-2000:]


def test_migrations_and_the_values_jsonb_rewrites_are_recorded_and_recompute(database_url):
    fill(database_url, 5)  # NaN and 1e16 come back from jsonb in another spelling
    trail = rows(database_url)
    migrated = [r.entity_id for r in trail if r.action == "schema.migrate"]
    assert migrated[:2] == ["0001_ingest", "0002_audit"]
    assert all(r.row_hash == r.computed_hash() for r in trail)


def test_configuration_change_is_recorded_once_per_change(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        config = {"batch_size": 500, "database_url": "postgresql://u:hunter2@db/x",
                  "sasl_plain_password": "hunter2", "pseudonym_key": TEST_KEY}  # fmt: skip
        trail.record_start(conn, component="collector", config=config)
        trail.record_start(conn, component="collector", config=config)
        trail.record_start(conn, component="collector", config={**config, "batch_size": 50})
    stored = rows(database_url)
    changes = [r for r in stored if r.action == "config.changed"]
    assert [c.detail["changed_keys"] for c in changes] == [sorted(config), ["batch_size"]]
    assert sum(r.action == "radwatch.start" for r in stored) == 3
    text = json.dumps([r.content() for r in stored])
    assert "hunter2" not in text and TEST_KEY not in text


def test_passwords_in_every_form_reach_no_audit_row(database_url, tmp_path):
    """A DSN password planted in each form a configuration can carry it is masked in
    `config.changed` and `radwatch.start` rows (and any detail), and the URL is kept."""
    from collectors.kafka_io import KafkaOptions
    from monitor.config import Settings

    planted = [f"pw-{form}-{uuid.uuid4().hex[:8]}" for form in range(9)]
    kafka = KafkaOptions(bootstrap="kafka:9093", group_id="g",
                         security={"security_protocol": "SASL_SSL",
                                   "sasl_plain_password": planted[5],
                                   "bootstrap_url": f"https://u:{planted[6]}@reg/x"})  # fmt: skip
    settings = Settings(
        database_url=f"postgresql://svc:{planted[0]}@db.example.org:5432/rw?sslmode=require",
        data_dir=tmp_path,
    )
    # Settings are typed (no free-form keys), so the forms a configuration mapping can carry
    # ride next to them, as a mapping: config_snapshot accepts both.
    config = {
        **asdict(settings),
        "extra": {
            "replica_url": f"postgresql://db2/rw?user=svc&password={planted[1]}&sslmode=require",
            "dsn": f"host=db3 port=5432 password={planted[2]} user=svc sslmode=require",
            "mirrors": ["postgresql://plain@db4/rw", [f"postgresql://u:{planted[3]}@db5/rw"]],
            "notes": f"fallback is host=db6 password='{planted[4]} x' dbname=rw",
            "kafka": kafka,
            "multi_host": f"postgresql://u:{planted[7]}@h1:5432,h2:5433/rw",
            "unencoded": f"postgresql://u:{planted[8]}/@x@h1/rw",
        },
    }
    with db.connect(database_url, autocommit=True) as conn:
        trail.record_start(conn, component="run", config=config)
        trail.record_start(conn, component="run", config={**config, "batch_size": 7})
        record(conn, actor="radwatch", action="radwatch.stop", entity_type="component",
               entity_id="run", reason=f"lost postgresql://u:{planted[0]}@db/x",
               detail={"error": f"host=x password={planted[1]}"})  # fmt: skip
        dumped = conn.execute("SELECT row_to_json(a)::text FROM audit_events a").fetchall()
    text = "\n".join(r[0] for r in dumped)
    leaked = [p for p in planted if p in text]
    assert not leaked, leaked
    stored = rows(database_url)
    start = [r for r in stored if r.action == "radwatch.start"][-1]
    config = start.detail["config"]
    assert config["database_url"] == (
        "postgresql://svc:***@db.example.org:5432/rw?sslmode=require")  # fmt: skip
    assert config["extra"]["kafka"]["bootstrap"] == "kafka:9093"
    assert "password=***" in config["extra"]["dsn"]
    changes = [r for r in stored if r.action == "config.changed"]
    assert len(changes) == 2 and changes[1].detail["changed_keys"] == ["batch_size"]
    assert all(r.row_hash == r.computed_hash() for r in stored)  # masked before hashing


# -- tampering, each kind, as the superuser past the triggers ---------------------------------


def tamper_changed(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE audit_events SET detail = jsonb_set(detail, '{p_value}', '0.99') "
                 "WHERE seq = 14")  # fmt: skip


def tamper_changed_actor(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE audit_events SET actor = 'someone.else' WHERE seq = 14")


def tamper_deleted(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM audit_events WHERE seq = 14")


def tamper_inserted(conn: psycopg.Connection) -> None:
    """A forged row at 14 with a well-formed hash linked to 13; later rows shifted by one."""
    trail = list(read_records(conn))
    conn.execute("DELETE FROM audit_events WHERE seq >= 14")
    forged = replace(trail[13], actor="forger", detail={"decision": "ok"},
                     prev_hash=trail[12].row_hash)  # fmt: skip
    forged = replace(forged, row_hash=forged.computed_hash())
    insert_raw(conn, forged)
    for row in trail[13:]:
        insert_raw(conn, replace(row, seq=row.seq + 1))


def tamper_inserted_garbage(conn: psycopg.Connection) -> None:
    """A forged row at 14 whose hash is made up; later rows shifted by one."""
    trail = list(read_records(conn))
    conn.execute("DELETE FROM audit_events WHERE seq >= 14")
    insert_raw(conn, replace(trail[13], actor="forger", prev_hash="f" * 64, row_hash="e" * 64))
    for row in trail[13:]:
        insert_raw(conn, replace(row, seq=row.seq + 1))


def tamper_swapped(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE audit_events SET seq = 1000000 WHERE seq = 15")
    conn.execute("UPDATE audit_events SET seq = 15 WHERE seq = 16")
    conn.execute("UPDATE audit_events SET seq = 16 WHERE seq = 1000000")


def tamper_deleted_and_renumbered(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM audit_events WHERE seq = 14")
    for seq in range(15, 500):
        conn.execute("UPDATE audit_events SET seq = seq - 1 WHERE seq = %s", (seq,))


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        (tamper_changed, 14, "changed"),
        (tamper_changed_actor, 14, "changed"),
        (tamper_deleted, 14, "missing"),
        (tamper_inserted, 14, "inserted"),
        (tamper_inserted_garbage, 14, "inserted"),
        (tamper_swapped, 15, "reordered"),
        (tamper_deleted_and_renumbered, 14, "missing"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "checkpointed"])
def test_tampering_is_found_at_the_right_seq(settings, tamper, seq, problem, sealed):
    fill(settings.database_url)
    if sealed:  # a signed checkpoint over the rows must not blur where the damage is
        with db.connect(settings.database_url, autocommit=True) as conn:
            create_checkpoint(conn, settings)
    with superuser(settings.database_url) as conn:
        tamper(conn)
    code, out = verify_cli(settings, "--json")
    assert code == 1, out
    result = json.loads(out[: out.rindex("}") + 1])
    assert (result["first_bad_seq"], result["problem"]) == (seq, problem), result
    assert f"seq {seq}: {problem}" in out


def test_rewrite_with_recomputed_chain_is_caught_by_the_signed_checkpoint(settings):
    fill(settings.database_url)
    with db.connect(settings.database_url, autocommit=True) as conn:
        create_checkpoint(conn, settings)
    fill(settings.database_url, 4)
    with superuser(settings.database_url) as conn:
        tamper_changed(conn)
        rehash_from(conn, 14)  # the chain alone now looks perfect
    code, out = verify_cli(settings, "--json")
    assert code == 1, out
    result = json.loads(out[: out.rindex("}") + 1])
    assert result["problem"] == "changed" and result["findings"][0]["checkpoint"] == 1
    assert result["first_bad_seq"] == 1  # the signed range that no longer matches starts at 1


def test_forged_checkpoint_is_a_bad_signature(settings):
    """The attacker rewrites row 14, re-hashes the chain and re-signs the checkpoint with a
    key of their own (they cannot read ours: it is not in the database)."""
    fill(settings.database_url)
    with db.connect(settings.database_url, autocommit=True) as conn:
        genuine = create_checkpoint(conn, settings)
    assert genuine is not None
    with superuser(settings.database_url) as conn:
        tamper_changed(conn)
        rehash_from(conn, 14)
        hashes = [r.row_hash for r in read_records(conn, last_seq=genuine.last_seq)]
        theirs = Ed25519PrivateKey.generate()
        forged = replace(genuine, merkle_root=merkle_root([bytes.fromhex(h) for h in hashes]).hex(),
                         last_row_hash=hashes[-1], key_id=key_id(theirs.public_key()),
                         signature="")  # fmt: skip
        forged = replace(forged, signature=base64.b64encode(
            theirs.sign(forged.signed_message())).decode())  # fmt: skip
        conn.execute("UPDATE audit_checkpoints SET merkle_root = %s, last_row_hash = %s, "
                     "key_id = %s, signature = %s WHERE id = 1",
                     (forged.merkle_root, forged.last_row_hash, forged.key_id,
                      forged.signature))  # fmt: skip
    code, out = verify_cli(settings, "--json")
    assert code == 1, out
    result = json.loads(out[: out.rindex("}") + 1])
    assert (result["first_bad_seq"], result["problem"]) == (1, "bad signature"), result
    # Even with our key's id copied, the signature does not verify.
    with superuser(settings.database_url) as conn:
        conn.execute("UPDATE audit_checkpoints SET key_id = %s WHERE id = 1", (genuine.key_id,))
    code, out = verify_cli(settings)
    assert code == 1 and "seq 1: bad signature" in out, out


def test_removed_tail_and_removed_checkpoint_are_missing(settings):
    fill(settings.database_url)
    with db.connect(settings.database_url, autocommit=True) as conn:
        checkpoint = create_checkpoint(conn, settings)
    assert checkpoint is not None
    with superuser(settings.database_url) as conn:
        conn.execute("DELETE FROM audit_events WHERE seq > 20")  # the tail, incl. seq 21..
    code, out = verify_cli(settings)
    assert code == 1 and "seq 21: missing" in out, out
    with superuser(settings.database_url) as conn:
        conn.execute("DELETE FROM audit_checkpoints")
    code, out = verify_cli(settings)  # the shipped checkpoint file still has it
    assert code == 1 and "seq 1: missing" in out, out


# -- protection in the database ---------------------------------------------------------------


def test_triggers_refuse_update_delete_truncate_even_for_the_superuser(database_url):
    fill(database_url, 3)
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events",
                      "TRUNCATE audit_events", "TRUNCATE audit_checkpoints"):  # fmt: skip
        with db.connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege,
                                                             match="append-only"):  # fmt: skip
            conn.execute(statement)


def test_application_role_can_append_but_not_rewrite(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE radwatch_app")
        record(conn, actor="radwatch", action="drift.window", entity_type="drift_window",
               entity_id="w1", outcome="ok")  # fmt: skip
        conn.execute("SELECT count(*) FROM inferences")
        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events",
                          "TRUNCATE audit_events", "UPDATE audit_checkpoints SET key_id = 'x'",
                          "DELETE FROM audit_checkpoints"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(statement)
        # Replica mode, the superuser's way past the triggers, is not the app's to set.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")


# -- exports ----------------------------------------------------------------------------------

SECRETS = ("PAT-SECRET-4711", "ACC-SECRET-0815", "1.2.826.0.1.3680043.99.4711",
           "Doe^Jane", "19580214")  # fmt: skip


def phi_event(i: int) -> bytes:
    doc = {
        "schema": "radwatch.inference.v1",
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"},
        "site": "north-general",
        "study": {"study_uid": f"{SECRETS[2]}.{i}", "accession": f"{SECRETS[1]}-{i}",
                  "patient_id": SECRETS[0], "series_uid": f"{SECRETS[2]}.{i}.1"},
        "dicom": {"Modality": "DX", "PatientName": SECRETS[3], "PatientBirthDate": SECRETS[4],
                  "PatientAge": "063Y", "PatientSex": "F"},
        "prediction": {"scores": {"nodule": 0.8}, "threshold": {"nodule": 0.5}},
    }  # fmt: skip
    return json.dumps(doc).encode()


def test_exports_validate_as_fhir_r4_and_carry_no_phi(settings, tmp_path):
    produce(settings, settings.inference_topic, [phi_event(i) for i in range(20)])
    produce(settings, settings.inference_topic, [b'{"schema": "radwatch.inference.v1", '
                                                 b'"patient_id": "PAT-SECRET-4711"}'])  # fmt: skip
    build_worker(settings).run(until_idle=3)  # the real collector: start/stop recorded
    fill(settings.database_url, 4)
    fhir, table = tmp_path / "audit.ndjson", tmp_path / "audit.csv"
    radwatch(settings, "audit", "export", "--format", "fhir", "--out", str(fhir))
    radwatch(settings, "audit", "export", "--format", "csv", "--out", str(table),
                 "--from", "2000-01-01", "--to", "2100-01-01")  # fmt: skip
    trail = rows(settings.database_url)
    events = list(read_ndjson(fhir))  # validated against the R4 AuditEvent definition
    exported = [e for e in trail if e.action != "audit.export"]
    assert len(events) == len(exported) and events[0].get_resource_type() == "AuditEvent"
    actions = {e.action for e in trail}
    assert {"radwatch.start", "radwatch.stop", "config.changed", "schema.migrate",
            "audit.export"} <= actions  # fmt: skip
    start_seq = next(r.seq for r in trail if r.action == "radwatch.start")
    start = next(e for e in events if e.id == f"radwatch-audit-{start_seq}")
    assert start.type.code == "110100" and start.subtype[0].code == "110120"
    with open(table, newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == len(trail) - 1  # everything before the CSV export itself
    assert [int(r["seq"]) for r in csv_rows] == list(range(1, len(trail)))
    # The exports are recorded, with the file's hash.
    recorded = [r for r in trail if r.action == "audit.export"]
    assert [r.detail["format"] for r in recorded] == ["fhir", "csv"]
    report = tmp_path / "report.html"
    code, _ = radwatch(settings, "compliance-report", "--model", "cxr-nodule",
                       "--period", "2026-11-01/2026-11-30", "--out", str(report))  # fmt: skip
    html_text = report.read_text()
    assert code == 0 and "hash chain intact; 0 of" in html_text and "1.4.2 (" in html_text
    for text in (fhir.read_text(), table.read_text(), json.dumps([r.content() for r in trail]),
                 html_text):  # fmt: skip
        for secret in (*SECRETS, TEST_KEY):
            assert secret not in text
    # A time range excludes what lies outside it.
    empty = tmp_path / "none.ndjson"
    radwatch(settings, "audit", "export", "--format", "fhir", "--out", str(empty),
                 "--from", "2000-01-01", "--to", "2000-01-02")  # fmt: skip
    assert empty.read_text() == ""


def test_checkpoint_file_round_trips(settings, tmp_path):
    fill(settings.database_url, 3)
    shipped = tmp_path / "elsewhere" / "cp.jsonl"
    radwatch(settings, "audit", "checkpoint", "--checkpoint-file", str(shipped))
    [entry] = read_checkpoint_file(shipped)
    assert isinstance(entry, Checkpoint) and entry.first_seq == 1
    code, out = verify_cli(settings, "--checkpoint-file", str(shipped))
    assert code == 0, out


def test_verify_without_the_public_key_cannot_trust_checkpoints(settings):
    fill(settings.database_url, 3)
    radwatch(settings, "audit", "checkpoint")
    code, out = verify_cli(settings, "--public-key", str(Path(settings.data_dir) / "nope.pub"))
    assert code == 1 and "bad signature" in out and "no trusted public key" in out


def test_compliance_report_names_who_did_what_for_this_model_only(settings, tmp_path):
    """The workflow in the report: the acknowledgement of this model's alert (who, note), not
    the other model's; an ill-formed period is a one-line usage error."""
    at, now = datetime(2026, 11, 10, tzinfo=UTC), lifecycle.AlertPolicy(open_after=1)
    with db.connect(settings.database_url, autocommit=True) as conn:
        for model in ("cxr-nodule", "other-model"):
            lifecycle.observe(conn, model=model, stratum_kind="all", stratum_value="all",
                              signal="scores", firing=True, window_end=at, actor="radwatch",
                              policy=now, details={"window_end": at.isoformat()})  # fmt: skip
        for alert in lifecycle.list_alerts(conn):
            mine = alert.model == "cxr-nodule"
            lifecycle.acknowledge(conn, alert.id, by="qa.lead" if mine else "other.lead",
                                  note="new scanner" if mine else "elsewhere")  # fmt: skip
    code, out = radwatch(settings, "compliance-report", "--model", "cxr-nodule", "--period",
                         "2026-11-01/2026-11-30", "--out", str(tmp_path / "r.html"))  # fmt: skip
    text = (tmp_path / "r.html").read_text()
    assert code == 0 and "1 incidents, 1 alerts" in out, out
    assert "qa.lead" in text and "new scanner" in text
    assert "other.lead" not in text and "elsewhere" not in text
    code, out = radwatch(settings, "compliance-report", "--model", "x", "--period", "2026-11-01",
                         "--out", str(tmp_path / "bad.html"))  # fmt: skip
    assert code == 2 and "FROM/TO" in out


def test_the_demo_audit_step_seals_verifies_and_writes_audit_ndjson(settings, tmp_path):
    fill(settings.database_url, 15)
    code = audit_step(settings, settings.database_url, tmp_path / "demo-out")
    assert code == 0
    events = list(read_ndjson(tmp_path / "demo-out" / "audit.ndjson"))
    # DICOM "Audit Log Used" (110101), our action code as the subtype.
    assert any(e.type.code == "110101" and e.subtype[0].code == "audit.checkpoint"
               and e.entity[0].name == "1" for e in events)  # fmt: skip
    with superuser(settings.database_url) as conn:
        tamper_changed(conn)
    assert audit_step(settings, settings.database_url, tmp_path / "again") == 1


def test_concurrent_writers_keep_the_sequence_gapless_and_the_chain_whole(database_url):
    """4 writers x 25 rows at once, some inside transactions that roll back: no gap, no fork."""
    import threading

    def writer(k: int) -> None:
        with db.connect(database_url) as conn:
            for i in range(25):
                conn.execute("SELECT 1")  # stands in for the decision's own write
                record(conn, actor=f"w{k}", action="drift.window", entity_type="drift_window",
                       entity_id=f"{k}-{i}", outcome="ok")  # fmt: skip
                if i % 5 == 4:
                    conn.rollback()  # the decision and its audit row go together
                else:
                    conn.commit()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trail = rows(database_url)
    assert [r.seq for r in trail] == list(range(1, len(trail) + 1))
    assert sum(r.action == "drift.window" for r in trail) == 4 * 20
    with db.connect(database_url) as conn:
        assert verify(conn, public_key=None, checkpoint_file=None).ok


def test_checkpoint_if_due_seals_only_when_due(settings):
    fill(settings.database_url, 2)
    with db.connect(settings.database_url, autocommit=True) as conn:
        first = checkpoint_if_due(conn, settings, every_s=3600)
        assert first is not None  # never sealed before: due
        fill(settings.database_url, 2)
        assert checkpoint_if_due(conn, settings, every_s=3600) is None  # too soon
        second = checkpoint_if_due(conn, settings, every_s=0)
        assert second is not None and second.first_seq == first.last_seq + 1
        # Only the audit.checkpoint row itself is new; sealing it is due again at once with 0.
        assert checkpoint_if_due(conn, settings, every_s=0) is not None
