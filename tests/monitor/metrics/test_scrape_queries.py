"""Every Grafana panel's query returns data from a real Prometheus scraping a real radwatch.

Grafana cannot be installed here, so this is the dashboards' end-to-end check: the synthetic
hospital publishes a reference period (simulate → collect → reference build), then
`radwatch run` (collector + detection + /metrics + webhook) takes live traffic with a
shift and one malformed record, while the Debian package's Prometheus scrapes it every
two seconds with radwatch's alert rules loaded. Each panel's PromQL, with Grafana's variables
resolved to "All", is sent to Prometheus's HTTP API and must return at least one series.

The rules are deploy/prometheus/rules with every `for:` cut to HOLD (support.
rules_with_short_holds), evaluated every second: the "firing alerts" annotation needs an alert
to fire, and the deployed holds (1 m and more) are promtool's to check (tests/deploy).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, produce, radwatch_cmd, run_radwatch, settings_env
from support import free_port, rules_with_short_holds

from collectors.kafka_io import make_producer
from collectors.simulator import stream
from dashboards import build, common

RULES = REPO / "deploy" / "prometheus" / "rules"
# Sizes, kept small for CI: a drift reference of 400 studies with 100-study windows, a
# performance reference of 300 with 150-study windows, then 300 live studies (3 drift
# windows, 2 performance windows). Seeded: the same studies every run.
N_REFERENCE = 400
N_LIVE = 300
SEED = 11
# Every alert's `for:` in the test's copy of the rules: pending first, firing HOLD later.
HOLD = "3s"
DEADLINE_S = 120


def wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


@pytest.fixture
def prometheus(tmp_path: Path):
    """Start Prometheus on a free port; returns start(target) → base URL."""
    procs: list[subprocess.Popen] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        rules = rules_with_short_holds(RULES, tmp_path / "rules", HOLD)
        config.write_text(
            "global: {scrape_interval: 2s, evaluation_interval: 1s}\n"
            f"rule_files: ['{rules}/*.rules.yml']\n"
            "scrape_configs:\n"
            "  - job_name: radwatch\n"
            "    scrape_timeout: 2s\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        log = (tmp_path / "prometheus.log").open("w")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/-/ready", 30)
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def publish(settings, studies) -> None:
    from conftest import kafka

    producer = make_producer(kafka(settings))
    try:
        stream.publish(producer, studies, settings.inference_topic, settings.label_topic)
        producer.flush(timeout=60)
    finally:
        producer.close()


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        doc = json.loads(reply.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def seed_incidents(database_url: str) -> None:
    """One open and one acknowledged incident, each with an alert, for a model outside the
    live stream (whose 300 studies open none in time): the incident and alert tables and the
    incident annotations have rows, and RadwatchIncidentAcknowledged fires (one HOLD after
    the first scrape), so Prometheus's ALERTS series (the operations dashboard's annotation)
    has one too."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # One active alert per model, stratum and signal (alerts_one_active): two signals.
        for state, signal in (("open", "acquisition"), ("acknowledged", "image_quality")):
            (incident,) = conn.execute(
                """INSERT INTO incidents (model_name, state, root_cause_kind, root_cause_value,
                       root_cause, shift_type, summary, recommended_action)
                   VALUES ('cxr-seeded', %s, 'scanner', 'ACME X1', 'scanner=ACME X1',
                           'acquisition', 'seeded', 'none') RETURNING id""", (state,),
            ).fetchone()  # fmt: skip
            conn.execute(
                """INSERT INTO alerts (model_name, stratum_kind, stratum_value, signal, state,
                       incident_id) VALUES ('cxr-seeded', 'scanner', 'ACME X1', %s, %s, %s)""",
                (signal, state, incident),
            )  # fmt: skip


def test_every_dashboard_panel_query_returns_series(settings, tmp_path, prometheus) -> None:
    images = tmp_path / "images"
    model = stream.MODEL["name"]
    # 1. A validated reference period, collected and frozen.
    publish(settings, stream.generate(N_REFERENCE, seed=SEED, images_dir=images))
    run_radwatch(settings, "collect", "--until-idle", "3")
    run_radwatch(settings, "reference", "build", "--model", model, "--first", str(N_REFERENCE),
                 "--window", "100", "--calibration-windows", "3", "--no-online")  # fmt: skip

    seed_incidents(settings.database_url)

    # 2. The pilot process, scraped every two seconds.
    port = free_port()
    addr = f"127.0.0.1:{port}"
    log = (tmp_path / "radwatch-run.log").open("w")
    run = subprocess.Popen(
        radwatch_cmd("run", "--addr", addr, "--detect-interval", "2", "--lag-interval", "1",
                     "--performance-reference", "300", "--performance-window", "150"),
        env=settings_env(settings), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://{addr}/healthz", 120)
        base = prometheus(addr)

        # 3. Live traffic with a shift after the reference, and one malformed record.
        scenario = next((s for s in ("new_vendor", "software_update") if s in stream.SCENARIOS),
                        "none")  # fmt: skip
        publish(settings, stream.generate(N_LIVE, seed=SEED, images_dir=images,
                                             scenario=scenario, onset=0,
                                             start_index=N_REFERENCE))  # fmt: skip
        produce(settings, settings.inference_topic, [b"{not json"])

        # 4. Every panel query, with variables at "All", until all return data (or time out).
        queries = [(name, title, common.substitute(expr))
                   for name, doc in build.as_dicts().items()
                   for title, expr in common.panel_queries(doc)]  # fmt: skip
        assert len(queries) >= 30
        empty = queries
        end = time.monotonic() + DEADLINE_S
        while empty and time.monotonic() < end:
            assert run.poll() is None, (tmp_path / "radwatch-run.log").read_text()[-3000:]
            empty = [q for q in empty if not query(base, q[2])]
            time.sleep(1)
        assert not empty, (
            "panels without data:\n"
            + "\n".join(f"  {n} / {t}: {e}" for n, t, e in empty)
            + "\n--- radwatch run log ---\n"
            + (tmp_path / "radwatch-run.log").read_text()[-4000:]
        )
        # The scrapes succeeded (one may time out on a loaded CI machine) and every state
        # section was readable.
        up = query(base, 'max_over_time(up{job="radwatch"}[1m])')
        assert [r["value"][1] for r in up] == ["1"]
        down = query(base, "radwatch_metrics_source_up == 0")
        assert not down, down
    finally:
        # 5. A clean SIGTERM: current batch finished, exit 0, within the grace period.
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
    assert code == 0, (tmp_path / "radwatch-run.log").read_text()[-3000:]
