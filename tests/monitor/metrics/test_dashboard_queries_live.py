"""Every dashboard query returns data from a real Prometheus scraping `radwatch metrics` ALONE.

After a small real run, done by one-shot commands that exit (simulate → collect → reference
build → live traffic with a shift and a malformed record → collect → detect --once →
performance --record), no collector is serving: only `radwatch metrics` is scraped, so every
ingest, dead-letter and latency panel must come from PostgreSQL (migration 0012's counters),
not from the memory of a collector process. The queries are read from the built dashboards
(dashboards.build, the same JSON as deploy/grafana/dashboards), every panel and annotation,
with Grafana's template variables resolved to "All", so panels added later are covered.

The alert rules are deploy/prometheus/rules with every `for:` cut to HOLD (support.
rules_with_short_holds): the "firing alerts" annotation reads Prometheus's own ALERTS series,
which holds a rule only once it fires, and sitting through RadwatchIncident's deployed 2 m
hold proves nothing promtool's unit tests (tests/deploy) do not. Scrapes every 2 s, rules
evaluated every second, so Prometheus has the data a few seconds after it starts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, produce, radwatch_cmd, run_radwatch, settings_env
from support import free_port, rules_with_short_holds

from collectors.kafka_io import make_producer
from collectors.simulator import stream
from dashboards import build, common

RULES = REPO / "deploy" / "prometheus" / "rules"
# Seeded and small: a drift reference of 400 studies (100-study windows), 300 live studies
# with a shift from the first (3 drift windows; 2 performance windows of 150).
N_REFERENCE = 400
N_LIVE = 300
SEED = 11
# Every alert's `for:` in the test's copy of the rules: pending first, firing HOLD later.
HOLD = "3s"
# Data arrives within a few scrapes and evaluations; the rest is headroom for a loaded machine.
DEADLINE_S = 90


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
    """The Debian package's Prometheus on a free port; start(target) → its base URL."""
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


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with variables at All) for every query."""
    return [(name, title, common.substitute(expr))
            for name, doc in build.as_dicts().items()
            for title, expr in common.panel_queries(doc)]  # fmt: skip


def test_every_dashboard_query_has_data_from_radwatch_metrics_alone(
    settings, tmp_path, prometheus
) -> None:
    images = tmp_path / "images"
    model = stream.MODEL["name"]
    # 1. A run, by commands that exit: reference period, reference, live shift, detection.
    publish(settings, stream.generate(N_REFERENCE, seed=SEED, images_dir=images))
    run_radwatch(settings, "collect", "--until-idle", "3")
    run_radwatch(settings, "reference", "build", "--model", model, "--first", str(N_REFERENCE),
                 "--window", "100", "--calibration-windows", "3", "--no-online")  # fmt: skip
    scenario = next((s for s in ("new_vendor", "software_update") if s in stream.SCENARIOS),
                    "none")  # fmt: skip
    publish(settings, stream.generate(N_LIVE, seed=SEED, images_dir=images, scenario=scenario,
                                      onset=0, start_index=N_REFERENCE))  # fmt: skip
    produce(settings, settings.inference_topic, [b"{not json"])
    run_radwatch(settings, "collect", "--until-idle", "3")
    run_radwatch(settings, "detect", "--once")
    run_radwatch(settings, "performance", "--record", "--reference-size", "300", "--window",
                 "150")  # fmt: skip

    # 2. Only `radwatch metrics`, scraped by Prometheus.
    addr = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "radwatch-metrics.log"
    proc = subprocess.Popen(
        radwatch_cmd("metrics", "--addr", addr, "--no-webhook", "--lag-interval", "1"),
        env=settings_env(settings), cwd=REPO, stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://{addr}/healthz", 120)
        base = prometheus(addr)
        queries = dashboard_queries()
        assert len(queries) >= 40
        empty = queries
        end = time.monotonic() + DEADLINE_S
        while empty and time.monotonic() < end:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            empty = [q for q in empty if not query(base, q[2])]
            time.sleep(1)
        print(f"\n{len(queries)} dashboard queries, {len(empty)} without data")
        assert not empty, (
            "queries without data from `radwatch metrics` alone:\n"
            + "\n".join(f"  {n} / {t}: {e}" for n, t, e in empty)
            + "\n--- radwatch metrics log ---\n"
            + log_path.read_text()[-3000:]
        )
        down = query(base, "radwatch_metrics_source_up == 0")
        assert not down, down
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
