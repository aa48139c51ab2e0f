"""The Python API (monitor/api/) is the services' engine, not a second one.

The same seeded stream (tests/drift_streams.py: 1,400 studies, three sites, from study 1,000
a share of south-clinic studies from a never-seen vendor with shifted embeddings; reference =
first 600, windows of 100) goes once through PostgreSQL and `radwatch detect`'s scheduler and
once through `api.build_reference` / `api.score` from a DataFrame: every stored p-value,
adjusted p-value and status equals the offline one (exactly: same seeds, same code), and so do
α, the alerts (where, which signal, when, onset) and the incidents (root cause, shift type).
A reference fitted on a different selection gives different p-values (the comparison can
fail). The frames' columns are the documented ones; bad input is one line naming the column.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from drift_streams import CONFIG, MODEL, ONSET, insert_stream

from monitor import api
from monitor.api.frames import frame_from_rows
from monitor.drift import reference
from monitor.drift.replay import exchangeable_rows
from monitor.drift.scheduler import DetectionConfig, Scheduler
from monitor.drift.windows import fetch_events
from monitor.errors import ConfigError

# The online CVM detector is off: it is fed per study, not per window, and costs minutes.
SUITE = replace(CONFIG, online=False)
# A feature can have two tests (chi2 and new_value on one tag): the test is part of the key.
KEY = ["window", "stratum_kind", "stratum_value", "detector", "feature", "test"]


def keyed(results: pd.DataFrame) -> pd.DataFrame:
    return results.assign(test=results["test"].fillna(""))


@pytest.fixture(scope="module")
def small_rows():
    """600 no-shift studies (replay.exchangeable_rows, seed 3): 400 reference, 200 to score."""
    ref_rows = exchangeable_rows(3, 400, per_day=200)
    later = ref_rows[-1].occurred_at + timedelta(hours=1)
    return ref_rows, exchangeable_rows(3, 200, per_day=200, part=1, start=later)


@pytest.fixture
def detected(database_url: str):
    """The stream stored, its reference frozen and every window judged by the scheduler."""
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=SUITE, actor="test")
        rows = fetch_events(conn, MODEL)
    with Scheduler(database_url, DetectionConfig(), actor="test-detect") as scheduler:
        run = scheduler.run_once()
    assert len(run.windows) == 8  # (1400 - 600) / 100
    return database_url, frame_from_rows(rows)


def test_offline_scoring_equals_the_scheduler(detected):
    url, frame = detected
    db = api.connect(url)
    stored = db.drift_results(MODEL)
    ref = api.build_reference(frame.iloc[:600], model=MODEL, config=SUITE)
    scoring = api.score(ref, frame.iloc[600:])

    # α and persistence: the budget's, at the same observed volume.
    with psycopg.connect(url) as conn:
        settings = conn.execute("SELECT settings FROM false_alarm_budgets").fetchone()[0]
    assert scoring.alpha == settings["drift_alpha"]
    assert scoring.policy.open_after == settings["drift_open_after"]
    assert scoring.window_size == 100 and len(scoring.windows) == 8

    # Every result row, same p-values (exact: same seeds, same code path).
    assert len(stored) == len(scoring.results) > 400
    both = keyed(stored).merge(
        keyed(scoring.results), on=KEY, suffixes=("_db", "_api"), validate="1:1"
    )
    assert len(both) == len(stored)
    for column in ("p_value", "p_adjusted", "statistic", "effect_size", "unified_score"):
        db_values = both[f"{column}_db"].astype(float).to_numpy()
        api_values = both[f"{column}_api"].astype(float).to_numpy()
        assert np.array_equal(db_values, api_values, equal_nan=True), column
    assert (both["status_db"] == both["status_api"]).all()
    assert both["status_db"].eq("drift").any()  # the shift is seen: not a vacuous comparison

    # The alerts and incidents detection opened.
    alerts = db.alerts(MODEL)
    assert len(alerts) > 0
    where = ["stratum_kind", "stratum_value", "signal", "window_end", "onset"]
    assert sorted(map(tuple, alerts[where].to_numpy())) == sorted(
        map(tuple, scoring.alerts[where].to_numpy()))  # fmt: skip
    found, offline = db.incidents(MODEL), api.incidents(scoring)
    what = ["root_cause", "shift_type", "summary", "recommended_action"]
    assert sorted(map(tuple, found[what].to_numpy())) == sorted(
        map(tuple, offline[what].to_numpy())
    )
    assert any(r.startswith(("site=south-clinic", "scanner=")) for r in offline["root_cause"])

    # The comparison can fail: a reference fitted on another selection moves the p-values.
    other = api.score(api.build_reference(frame.iloc[1:601], model=MODEL, config=SUITE),
                      frame.iloc[601:])  # fmt: skip
    moved = keyed(stored).merge(keyed(other.results), on=KEY, suffixes=("_db", "_api"))
    assert not np.array_equal(moved["p_value_db"].astype(float),
                              moved["p_value_api"].astype(float), equal_nan=True)  # fmt: skip


def test_online_frames_have_the_documented_columns(detected):
    url, _ = detected
    db = api.connect(url)
    assert list(db.drift_results(MODEL).columns) == ["model", "reference_id", *api.RESULT_COLUMNS]
    refs = db.references()
    assert list(refs.columns) == list(api.REFERENCE_COLUMNS)
    assert refs["n_events"].tolist() == [600] and refs["active"].tolist() == [True]
    alerts = db.alerts(MODEL)
    documented = [c for c in api.ALERT_COLUMNS if c != "window"]
    assert list(alerts.columns[: len(documented)]) == documented
    assert alerts["incident"].notna().all()  # every drift alert belongs to an incident
    assert list(db.incidents().columns[: len(api.INCIDENT_COLUMNS)]) == list(api.INCIDENT_COLUMNS)
    assert list(db.performance(MODEL).columns) == list(api.PERFORMANCE_COLUMNS)
    assert db.alerts("no-such-model").empty and db.drift_results("no-such-model").empty


def test_offline_frames_have_the_documented_columns(small_rows):
    ref_rows, rows = small_rows
    ref = api.build_reference(frame_from_rows(ref_rows))
    scoring = api.score(ref, frame_from_rows(rows), alpha=0.05, open_after=1)
    assert list(scoring.results.columns) == list(api.RESULT_COLUMNS)
    assert list(scoring.alerts.columns) == list(api.ALERT_COLUMNS)
    assert list(scoring.incidents.columns) == list(api.INCIDENT_COLUMNS)
    assert list(scoring.windows.columns) == ["window", "window_start", "window_end",
                                             "n_events", "unified_score", "firing"]  # fmt: skip
    assert scoring.windows["n_events"].tolist() == [200] and scoring.alpha == 0.05
    assert set(ref.strata["stratum_kind"]) >= {"all", "site", "scanner", "sex", "age_band"}


def test_flat_columns_read_as_the_nested_ones(small_rows):
    """score_*/threshold_* and DICOM keyword columns are what the nested dicts hold."""
    ref_rows, rows = small_rows
    nested = frame_from_rows(rows)
    flat = nested.drop(columns=["scores", "thresholds", "dicom"])
    flat["score_nodule"] = [r.scores["nodule"] for r in rows]
    flat["threshold_nodule"] = [r.thresholds["nodule"] for r in rows]  # type: ignore[index]
    for tag in ("Modality", "Manufacturer", "ManufacturerModelName", "PhotometricInterpretation",
                "KVP", "PatientSex", "AgeBand"):  # fmt: skip
        flat[tag] = [r.dicom[tag] for r in rows]
    ref = api.build_reference(frame_from_rows(ref_rows))
    a = api.score(ref, nested, alpha=0.05).results
    b = api.score(ref, flat, alpha=0.05).results
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda f: f.drop(columns=["occurred_at"]), "occurred_at"),
        (lambda f: f.drop(columns=["scores"]), "scores"),
        (lambda f: f.assign(Manufacturor="ACME"), "Manufacturor"),
        (lambda f: f.assign(occurred_at="yesterday-ish"), "occurred_at"),
        (lambda f: f.assign(embedding="not a vector"), "embedding"),
        (lambda f: f.assign(scores=0.3), "scores"),
        (lambda f: f.assign(score_nodule="high", scores=None), "score_nodule"),
        (lambda f: f.assign(event_id="same"), "event_id"),
        (lambda f: f.assign(dicom=[[1, 2]] * len(f)), "dicom"),
    ],
)
def test_a_bad_column_is_one_line_naming_it(small_rows, change, column):
    ref_rows, _ = small_rows
    with pytest.raises(api.FrameError) as caught:
        api.build_reference(change(frame_from_rows(ref_rows)))
    message = str(caught.value)
    assert f"'{column}'" in message and "\n" not in message, message
    assert isinstance(caught.value, ValueError)


def test_other_refusals_are_one_line(small_rows, tmp_path):
    ref_rows, rows = small_rows
    frame = frame_from_rows(ref_rows)
    cases = [
        (lambda: api.build_reference(frame.iloc[:20]), "at least 50"),
        (lambda: api.build_reference(tmp_path / "missing.parquet"), "no parquet file"),
        (lambda: api.build_reference([1, 2]), "DataFrame or a parquet path"),
        (lambda: api.score(api.build_reference(frame), frame_from_rows(rows[:50])),
         "no complete window"),
        (lambda: api.simulate(10, scenario="meteor"), "unknown scenario 'meteor'"),
        (lambda: api.connect("postgresql://radwatch@127.0.0.1:1/radwatch").alerts(),
         "PostgreSQL at 127.0.0.1:1"),
    ]  # fmt: skip
    for call, fragment in cases:
        with pytest.raises(api.ApiError) as caught:
            call()
        assert fragment in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(ConfigError, match="must start with postgresql://, not mysql://"):
        api.connect("mysql://user:secret@db/radwatch")
