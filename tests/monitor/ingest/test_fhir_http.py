"""The FHIR HTTP endpoint (monitor/ingest/fhir_http.py) with a real HTTP client and the broker."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from report_messages import MARKERS, diagnostic_report
from test_hl7_listener import consume_all, serving

from collectors.reports_in import FhirLimits
from monitor.config import Settings
from monitor.ingest.fhir_http import FhirEndpoint
from monitor.ingest.report_labels import ModelFindings, SinkResources

TOKEN = "fhir-test-token-0123456789"
MODELS = (ModelFindings("cxr-effusion", ("pleural_effusion",)),)


@pytest.fixture
def endpoint(settings: Settings) -> Iterator[FhirEndpoint]:
    resources = SinkResources(settings, MODELS)
    server = FhirEndpoint(resources.sink, TOKEN, "127.0.0.1", 0, FhirLimits(max_line_bytes=20_000))
    try:
        with serving(server):
            yield server
    finally:
        resources.close()


def post(server: FhirEndpoint, body: bytes, *, token: str | None = TOKEN,
         path: str = "/fhir") -> tuple[int, dict]:  # fmt: skip
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/fhir+json"})  # fmt: skip
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_post_publishes_refuses_and_authenticates(
    settings: Settings, endpoint: FhirEndpoint
) -> None:
    report = json.dumps(diagnostic_report()).encode()
    assert post(endpoint, report, token=None)[0] == 401
    assert post(endpoint, report, token="wrong-token-0123456789")[0] == 401
    assert post(endpoint, report, path="/other")[0] == 404
    assert post(endpoint, b"x" * 30_000)[0] == 413
    status, doc = post(endpoint, report)
    assert status == 200 and doc["resourceType"] == "OperationOutcome"
    status, doc = post(endpoint, b"{not json")
    assert status == 422 and doc["issue"][0]["diagnostics"].startswith("not_json")
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": diagnostic_report(rid="ok", accession="ACC-9")},
        {"resource": diagnostic_report(rid="bad", accession=None)}]}  # fmt: skip
    assert post(endpoint, json.dumps(bundle).encode(), path="/fhir/Bundle")[0] == 422

    labels = consume_all(settings, settings.label_topic, expect=2)
    assert [json.loads(v)["labels"] for v in labels] == [{"pleural_effusion": 1}] * 2
    dead = [json.loads(v) for v in consume_all(settings, settings.deadletter_topic, expect=2)]
    assert sorted(d["reason"] for d in dead) == ["no_accession", "not_json"]
    text = b"\n".join(labels).decode() + json.dumps(dead)
    assert not [m for m in MARKERS if m.lower() in text.lower()]
