"""Shared fixtures: real embedded servers (tansu broker, PostgreSQL) for the whole test run.

One broker and one PostgreSQL server per session; every test gets its own database and
its own topic names and consumer group, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pacs_servers
import psycopg
import pytest

from collectors.kafka_io import KafkaOptions, ensure_topics, make_producer
from monitor.config import Settings
from monitor.services import embedded as services
from monitor.services import runtime

REPO = Path(__file__).resolve().parents[1]
TEST_KEY = "test-pseudonym-key-0123456789abcdef"

# Test tiers (markers registered in pyproject.toml). `slow`: over about 10 s on 2 cores,
# left out of `make test-fast` (`pytest -m "not slow"`); `make test` and .ci/run run all.
# Keyed here, in one list, from `--durations` runs: whole modules, or module::test (the name
# without its parameters). tests/test_tiers.py checks every entry names a real test.
SLOW = {
    "tests/monitor/drift/test_drift_power.py",  # ~8.5 min: detection power over many scenarios
    "tests/monitor/metrics/test_scrape_queries.py",  # Prometheus scraping a live pipeline
    "tests/monitor/ingest/test_fault_tolerance.py",  # workers killed, PostgreSQL restarted
    "tests/monitor/ingest/test_worker_faults.py",
    "tests/monitor/ingest/test_hostile_corpus.py",
    "tests/monitor/ingest/test_image_stage.py::test_simulate_feeds_a_running_collect",
    "tests/monitor/ingest/test_image_stage.py::test_bad_images_are_dead_lettered_with_reason_codes",
    "tests/monitor/ingest/test_image_stage.py::test_no_phi_reaches_postgres_logs_or_metrics",
    "tests/monitor/ingest/test_image_stage.py::test_a_pacs_outage_parks_studies_and_embed_parked_fetches_them",
    "tests/monitor/reports/test_report.py::test_report_renders_in_chromium",
    "tests/monitor/reports/test_model_report.py",  # the real engine, two reports, Chromium
    "tests/monitor/pilot/test_run.py::test_run_seals_checkpoints_when_due_and_at_shutdown",
    "tests/monitor/drift/test_scheduler.py::test_alert_opens_after_onset_names_stratum_signal_and_lifecycle",
    # From the first `-m "not slow"` run (2 cores under a load of ~3): 8 s and more.
    "tests/collectors/test_events_fuzz.py::test_extra_fields_of_any_shape_never_raise_and_keep_no_identifier_keys",
    "tests/monitor/drift/test_reference_artifact.py::test_pickled_reference_is_refused_then_migrated_by_the_command",
    "tests/detectors/drift/test_suite.py::test_no_shift_false_alarm_rate_and_no_alert",
    "tests/monitor/ingest/test_worker.py::test_collect_command_until_idle_and_status",
    "tests/monitor/ingest/test_worker.py::test_valid_stored_invalid_dead_lettered_with_reasons",
    "tests/monitor/ingest/test_embedding_stage.py::test_backfill_on_a_stored_stream_resumes_after_interruption",
    "tests/detectors/embedding/test_embedding.py::test_gpu_bench_refuses_without_cuda_and_its_cpu_path_runs",
    "tests/monitor/test_cli.py::test_services_up_status_migrate_down",
    "tests/monitor/test_cli.py::test_demo_runs_end_to_end_and_ends_with_its_incident",
    "tests/monitor/pilot/test_run.py::test_a_part_that_cannot_be_imported_stops_the_start",
    "tests/monitor/performance/test_performance_watch.py::test_simulator_prevalence_change_flags_the_estimate",
    "tests/monitor/performance/test_performance_watch.py::test_command_prints_estimated_beside_realised",
    "tests/monitor/performance/test_performance_watch.py::test_harmful_scenario_alerts_once_labels_arrive_benign_does_not",
    "tests/monitor/test_misconfiguration.py::test_read_only_commands_never_start_stopped_services",
    "tests/collectors/images/test_dicom_reader.py::test_a_deflate_bomb_is_refused_without_inflating_it",
    # Issues 15 and 16.
    "tests/monitor/drift/test_budget_calibration.py",  # 44 no-shift streams, one budget period
    "tests/monitor/plan/test_plan_check.py",  # the simulator through collect and reference build
    "tests/monitor/reports/test_plan_document.py::test_default_and_approved_plans_render_to_html_and_pdf",
    "tests/monitor/reports/test_compliance_document.py::test_compliance_report_is_a_document",
    "tests/monitor/plan/test_plan_commands.py",
    # Session 8: still over 40 s each after they were shortened.
    "tests/monitor/metrics/test_dashboard_queries_live.py",  # a run, then Prometheus waits
    "tests/monitor/metrics/test_scrape_scale.py::test_scrape_over_ten_million_events_is_under_100_ms",
}
# `integration`: the test uses the embedded broker/PostgreSQL (the `embedded` fixture), or its
# module starts other servers or subprocesses (Orthanc, Prometheus, Alertmanager, promtool,
# Chromium, a `radwatch` process).
INTEGRATION_MODULES = {
    "tests/collectors/images/test_dicomweb.py",
    "tests/dashboards/test_dashboards.py",
    "tests/deploy/test_alertmanager.py",
    "tests/deploy/test_deploy_files.py",
    "tests/deploy/test_deploy_security.py",
    "tests/deploy/test_prometheus_rules.py",
    "tests/detectors/embedding/test_embedding.py",
    "tests/monitor/test_cli.py",
    "tests/monitor/test_config.py",
    "tests/monitor/test_config_sections.py",
    "tests/monitor/metrics/test_http_edge.py",
    "tests/monitor/ingest/test_image_stage.py",
    "tests/monitor/reports/test_report.py",
    "tests/monitor/metrics/test_scrape_queries.py",
    "tests/monitor/plan/test_plan_check.py",
    "tests/monitor/plan/test_plan_commands.py",
    "tests/monitor/reports/test_plan_document.py",
    "tests/monitor/reports/test_inventory.py",
    "tests/test_layering.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.relative_to(REPO).as_posix()
        name = getattr(item, "originalname", item.name)
        if module in SLOW or f"{module}::{name}" in SLOW:
            item.add_marker(pytest.mark.slow)
        if module in INTEGRATION_MODULES or "embedded" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def embedded_data_dir() -> Iterator[Path]:
    # Not under pytest's tmp dir: pytest resets that tree to 0700 when another session starts,
    # which would lock out the unprivileged user PostgreSQL runs as when we are root.
    path = Path(tempfile.mkdtemp(prefix="radwatch-test-services-"))
    yield path.resolve()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded(embedded_data_dir: Path) -> Iterator[services.ServiceState]:
    state = services.services_up(embedded_data_dir)
    yield state
    services.services_down(embedded_data_dir)


def _admin_url(state: services.ServiceState) -> str:
    """The superuser, on the server's maintenance database (tests' tampering needs it)."""
    assert state.admin_database_url
    return state.admin_database_url


def _owner_url(state: services.ServiceState) -> str:
    assert state.owner_database_url
    return state.owner_database_url


def _on(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def fresh_database(state: services.ServiceState) -> str:
    """A new database on the embedded server, created and migrated as the owner login (as
    `radwatch db migrate` does); returns the superuser's URL for it, since tampering tests
    step past the triggers (`app_url` gives the services' least-privileged login)."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_owner_url(state), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    runtime.migrate_schema(_on(_owner_url(state), name))
    return _on(_admin_url(state), name)


def app_url(state: services.ServiceState, url: str) -> str:
    """The same database as `url`, as the application login the services use."""
    assert state.database_url
    return _on(state.database_url, url.rsplit("/", 1)[1])


@pytest.fixture
def database_url(embedded: services.ServiceState) -> str:
    return fresh_database(embedded)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pacs_servers.Orthanc]:
    """A real Orthanc PACS with DICOMweb, one per test module that asks for it."""
    with pacs_servers.orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def settings(embedded: services.ServiceState, database_url: str, tmp_path: Path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=embedded.bootstrap,
        database_url=database_url,
        data_dir=tmp_path / "data",
        # The test's own folder is the image root: tests write DICOM files anywhere under it.
        image_roots=str(tmp_path),
        inference_topic=f"t{suffix}.inferences",
        label_topic=f"t{suffix}.labels",
        interaction_topic=f"t{suffix}.interactions",
        deadletter_topic=f"t{suffix}.deadletter",
        group_id=f"t{suffix}-collectors",
        pseudonym_key=TEST_KEY,
        batch_size=500,
        poll_timeout_ms=200,
    )
    ensure_topics(kafka(s), [s.inference_topic, s.label_topic, s.interaction_topic,
                             s.deadletter_topic], 4)  # fmt: skip
    return s


def kafka(settings: Settings) -> KafkaOptions:
    assert settings.kafka_bootstrap
    return KafkaOptions(
        bootstrap=settings.kafka_bootstrap,
        group_id=settings.group_id,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )


def produce(
    settings: Settings, topic: str, values: list[bytes], keys: list[bytes] | None = None
) -> None:
    producer = make_producer(kafka(settings))
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=keys[i] if keys else None)
        producer.flush(timeout=60)
    finally:
        producer.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """The RADWATCH_* environment that reproduces `settings` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADWATCH_")}
    env.update(
        RADWATCH_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
        RADWATCH_DATABASE_URL=settings.database_url or "",
        RADWATCH_DATA_DIR=str(settings.data_dir),
        RADWATCH_INFERENCE_TOPIC=settings.inference_topic,
        RADWATCH_LABEL_TOPIC=settings.label_topic,
        RADWATCH_INTERACTION_TOPIC=settings.interaction_topic,
        RADWATCH_DEADLETTER_TOPIC=settings.deadletter_topic,
        RADWATCH_GROUP_ID=settings.group_id,
        RADWATCH_PSEUDONYM_KEY=settings.pseudonym_key or "",
        RADWATCH_BATCH_SIZE=str(settings.batch_size),
        RADWATCH_POLL_TIMEOUT_MS=str(settings.poll_timeout_ms),
        RADWATCH_BUDGET_INCIDENTS=str(settings.budget_incidents),
        RADWATCH_BUDGET_DAYS=str(settings.budget_days),
        PYTHONUNBUFFERED="1",
    )
    optional = {"RADWATCH_IMAGE_ROOTS": settings.image_roots,
                "RADWATCH_DICOMWEB_URLS": settings.dicomweb_urls}  # fmt: skip
    env.update({k: v for k, v in optional.items() if v is not None})
    return env


def radwatch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *args]


def run_radwatch(settings: Settings, *args: str, timeout: float = 300,
                 check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    result = subprocess.run(
        radwatch_cmd(*args), env=settings_env(settings), capture_output=True, text=True,
        timeout=timeout, cwd=REPO,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"radwatch {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def with_database(settings: Settings, url: str) -> Settings:
    return replace(settings, database_url=url)
