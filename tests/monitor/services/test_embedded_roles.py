"""The embedded PostgreSQL of the pilot (issue 13): password authentication, generated
passwords kept private, and services connected as the least-privileged login, so the audit
trail's append-only protection holds on one box too."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest
from conftest import app_url

from monitor.audit import trail
from monitor.services import embedded as services
from monitor.store import db


def test_every_connection_needs_a_password(embedded, embedded_data_dir: Path):
    port = embedded.pg_port
    for user in (services.PG_USER, services.OWNER_USER, services.APP_USER):
        path = services.password_path(embedded_data_dir, user)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://{user}@127.0.0.1:{port}/postgres",
                            connect_timeout=5, password="wrong").close()  # fmt: skip
    # The socket too (no `trust` for local users): pg_hba.conf has no trust line at all.
    hba = (embedded_data_dir / "pg" / "pg_hba.conf").read_text()
    lines = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines and all(ln[-1] == "scram-sha-256" for ln in lines), lines
    assert "postgresql://radwatch_svc:***@" in str(services.services_status(embedded_data_dir))


def test_services_get_the_app_login_and_it_cannot_rewrite_the_audit_trail(embedded):
    url = embedded.database_url
    assert url is not None and url.startswith(f"postgresql://{services.APP_USER}:")
    db.migrate(embedded.owner_database_url)  # as `radwatch services up` + any service does
    with db.connect(url, autocommit=True) as conn:
        role = conn.execute("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()  # fmt: skip
        assert role == (False, False, False)
        trail.record(conn, actor="radwatch", action="drift.window", entity_type="drift_window",
                     entity_id="w1", outcome="ok")  # fmt: skip
        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events",
                          "TRUNCATE audit_events", "UPDATE audit_checkpoints SET key_id = 'x'",
                          "ALTER TABLE audit_events DISABLE TRIGGER USER"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # Replica mode, the superuser's way past the triggers, is not the app's to set.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")
    # Nor the owner's: it runs migrations, and is no superuser either.
    with (
        db.connect(embedded.owner_database_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SET session_replication_role = replica")


def test_the_app_login_does_its_work_on_a_test_database(embedded, database_url):
    """What the services do (ingest tables read/write, audit append) the app login may do."""
    url = app_url(embedded, database_url)
    with db.connect(url, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM inferences")
        trail.record(conn, actor="radwatch", action="drift.window", entity_type="drift_window",
                     entity_id="w2", outcome="ok")  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_events SET actor = 'x'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE app_may_not_create (x int)")
