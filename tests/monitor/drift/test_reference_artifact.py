"""Fitted references stored as data in PostgreSQL (issue 14): build → load gives the suite that
was fitted (identical scores); a changed byte is refused; a pickled reference (written here the
way older releases wrote it: a pickle naming each class by its module path before the detectors
moved) is refused with the command to run, and `radwatch reference migrate-pickles` converts
it, audited, into one that scores identically; a pickle naming anything else is refused.

Stream: tests/drift_streams.py's seeded generator (seed 5, 800 events), reference = first 600.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import sys
import types

import psycopg
import pytest
from conftest import run_radwatch, with_database
from drift_streams import CONFIG, MODEL, insert_stream

from detectors.drift import artifact
from detectors.drift.fitting import fit_suite
from monitor.drift import reference, reference_migration
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, fetch_events, to_sample


@pytest.fixture
def built(database_url: str):
    insert_stream(database_url, 800, seed=5, onset=None)
    with psycopg.connect(database_url) as conn:
        info = reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
        rows = fetch_events(conn, MODEL)
    fitted = fit_suite(to_sample(rows[:600]), CONFIG,
                       categorical_attributes=CATEGORICAL_ATTRIBUTES)  # fmt: skip
    return info, fitted, to_sample(rows[600:])


def _load(url: str):
    with psycopg.connect(url) as conn:
        loaded = reference.active(conn, MODEL)
    assert loaded is not None
    return loaded[1]


def test_stored_reference_is_data_and_scores_like_the_fitted_suite(database_url, built):
    info, fitted, window = built
    with psycopg.connect(database_url) as conn:
        fmt, blob, summary = conn.execute(
            "SELECT format, blob, manifest FROM drift_reference_artifacts WHERE reference_id = %s",
            (info.id,),
        ).fetchone()
    assert (fmt, blob, summary["schema"]) == ("manifest+npz", None, "radwatch.reference-artifact/1")
    loaded = _load(database_url)
    assert loaded.fingerprint == info.detector_fingerprint == fitted.fingerprint
    assert loaded.score(window, seed=2) == fitted.score(window, seed=2)
    assert loaded.online.update(window) == fitted.online.update(window)


def test_a_changed_byte_in_the_stored_arrays_is_refused(database_url, built):
    with psycopg.connect(database_url) as conn:
        conn.execute("""UPDATE drift_reference_artifacts
                        SET arrays = overlay(arrays placing '\\x00'::bytea from 200 for 1)""")
    with pytest.raises(reference.ReferenceError, match="hash mismatch"):
        _load(database_url)


def _store_as_pickle(url: str, ref_id: int, blob: bytes) -> None:
    """The row as releases before issue 14 wrote it (pickle + its SHA-256)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """UPDATE drift_reference_artifacts SET format = 'pickle', blob = %s, sha256 = %s,
                   manifest_json = NULL, arrays = NULL WHERE reference_id = %s""",
            (blob, hashlib.sha256(blob).hexdigest(), ref_id),
        )


def _legacy_pickle(suite) -> bytes:
    """The suite pickled as older releases wrote it: every class under the module path it had
    then (reference_migration.LEGACY_CLASSES), each old module a stand-in that exists only
    while pickling; the classes' own `__module__` is restored afterwards."""
    old_of: dict[tuple[str, str], tuple[str, str]] = {}
    for old, new in reference_migration.LEGACY_CLASSES.items():
        old_of.setdefault(new, old)  # a class that lived in two places: its first listed
    with pytest.MonkeyPatch.context() as patch:
        for (new_module, name), (old_module, _) in old_of.items():
            cls = getattr(importlib.import_module(new_module), name)
            patch.setattr(cls, "__module__", old_module)
            module = sys.modules.get(old_module)  # detectors.drift is a package today
            if module is None:
                module = types.ModuleType(old_module)
                patch.setitem(sys.modules, old_module, module)
            patch.setattr(module, name, cls, raising=False)
        return pickle.dumps(suite, protocol=pickle.HIGHEST_PROTOCOL)


def test_a_pickle_naming_the_old_module_paths_converts_to_identical_p_values(built):
    _, fitted, window = built
    blob = _legacy_pickle(fitted)
    for old in (b"detectors.alibi_backend", b"detectors.categorical", b"detectors.drift_score"):
        assert old in blob
    assert b"detectors.drift.suite" not in blob and b"detectors.drift.mmd" not in blob
    assert "detectors.alibi_backend" not in sys.modules  # the stand-ins are gone again
    suite = reference_migration.load_pickle(blob, hashlib.sha256(blob).hexdigest(), 1)
    converted = artifact.unpack(*artifact.pack(suite))
    assert converted.fingerprint == fitted.fingerprint
    before, after = fitted.score(window, seed=4), converted.score(window, seed=4)
    assert [r.p_value for v in after for r in v.results] == [
        r.p_value for v in before for r in v.results
    ]
    assert after == before  # adjusted p, statistics, effect sizes, atypical studies too
    assert converted.online.update(window) == fitted.online.update(window)


def test_a_pickle_naming_a_detectors_name_outside_the_legacy_classes_is_refused():
    # A function under today's path, and an old module's function (GLOBAL opcode by hand).
    for blob, named in ((pickle.dumps(artifact.unpack), "detectors.drift.artifact.unpack"),
                        (b"cdetectors.alibi_backend\nfit_suite\n.",
                         "detectors.alibi_backend.fit_suite")):  # fmt: skip
        with pytest.raises(reference.ReferenceError, match=f"refers to {named}: not converting"):
            reference_migration.load_pickle(blob, hashlib.sha256(blob).hexdigest(), 1)


def test_library_names_are_exact_so_no_attribute_path_reaches_os_or_a_loader():
    # torch and numpy import os: with a prefix allow-list, protocol 4's dotted names would
    # reach os.system through them. Each is named by hand (STACK_GLOBAL with a dotted name).
    for module, name in (("torch", "os.system"), ("numpy", "load"), ("torch", "load"),
                         ("torch.storage", "torch.load"), ("pathlib", "Path")):  # fmt: skip
        blob = pickle.dumps(0, protocol=4)[:2] + (
            b"\x8c" + bytes([len(module)]) + module.encode()
            + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93."
        )  # fmt: skip
        with pytest.raises(reference.ReferenceError, match=f"refers to {module}.{name}: not"):
            reference_migration.load_pickle(blob, hashlib.sha256(blob).hexdigest(), 1)


def test_pickled_reference_is_refused_then_migrated_by_the_command(database_url, built, settings):
    info, fitted, window = built
    blob = _legacy_pickle(fitted)
    _store_as_pickle(database_url, info.id, blob)
    with pytest.raises(reference.ReferenceError,
                       match="radwatch reference migrate-pickles"):  # fmt: skip
        _load(database_url)
    env = with_database(settings, database_url)
    out = run_radwatch(env, "reference", "migrate-pickles", "--model", MODEL).stdout
    assert f"reference {info.id} ({MODEL}): pickle {hashlib.sha256(blob).hexdigest()[:16]}" in out
    converted = _load(database_url)
    assert converted.score(window, seed=4) == fitted.score(window, seed=4)
    assert converted.online.update(window) == fitted.online.update(window)
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT actor, entity_id, refs->>'pickle_sha256' FROM audit_events "
            "WHERE action = 'reference.migrated'"
        ).fetchall()
        left = conn.execute(
            "SELECT count(*) FROM drift_reference_artifacts WHERE blob IS NOT NULL"
        ).fetchone()[0]
    assert audited == [(settings.actor, str(info.id), hashlib.sha256(blob).hexdigest())]
    assert left == 0
    again = run_radwatch(env, "reference", "migrate-pickles").stdout
    assert again.strip() == "no pickled reference to convert"


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        import os

        return (os.system, ("echo pwned",))


def test_migration_refuses_a_pickle_that_names_anything_else(database_url, built):
    info, _, _ = built
    _store_as_pickle(database_url, info.id, pickle.dumps(_Payload()))  # hash matches
    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(reference.ReferenceError, match="refers to (posix|os)\\.system"),
    ):
        reference_migration.migrate_pickles(conn, model=MODEL, actor="test")
