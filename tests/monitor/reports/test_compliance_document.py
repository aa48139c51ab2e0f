"""`radwatch compliance-report`: the post-market surveillance report as a document, looked at
in headless Chromium.

The database holds a seeded stream (seed 5, 1,400 studies from 2026-11-01, drift_streams.
insert_stream, a new vendor at south-clinic from study 1,000), a frozen reference (first 600
studies), an approved plan, two incidents of the period (one acknowledged and resolved, one
whose stop rule holds, decided), an alert whose data and life lie outside the period, and
performance results for four subgroups over two windows. The report is rendered to HTML and
PDF; Chromium screenshots the first A4 page (test-artifacts/compliance-page1*.png, for a person
to look at) and measures, in a copy of the page with a small script, every element's right edge
against the page's text width (180 mm: A4 less 15 mm margins) and the visible text. Checked:
no raw table name or JSON in the visible text, every incident and alert of the period and
only those, the audit statement honest before and after `radwatch audit checkpoint`, no table
wider than the page, and a PDF with A4 pages.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from conftest import REPO, run_radwatch
from drift_streams import CONFIG, MODEL, insert_stream
from PIL import Image
from psycopg.types.json import Jsonb

from monitor.alerts import governance, incidents, lifecycle
from monitor.audit.verify import verify_configured
from monitor.drift import reference
from monitor.plan import store
from monitor.plan.document import default_plan
from monitor.reports import compliance
from monitor.reports.compliance_data import AlertRow
from monitor.reports.compliance_sections import MAX_ALERTS, workflow_section
from monitor.store import db

ARTIFACTS = REPO / "test-artifacts"
A4_PX = (794, 1123)  # 210 × 297 mm at 96 px/inch, Chromium's CSS pixels
TEXT_WIDTH_PX = 180 / 25.4 * 96  # A4 less the 15 mm side margins of the document's @page
AMBER = np.array([180, 83, 9])  # the warning box's border (#b45309)
MIGRATIONS = "".join(p.read_text() for p in (REPO / "monitor/store/migrations").glob("*.sql"))
TABLES = set(re.findall(r"CREATE (?:TABLE|VIEW) (\w+)", MIGRATIONS))
PERIOD = "2026-11-01/2026-11-30"
T0 = datetime(2026, 11, 7, 6, 0, tzinfo=UTC)
NOW = lifecycle.AlertPolicy(open_after=1, resolve_after=1)
VENDOR = [{"feature": "Manufacturer", "adjusted_p": 0.0, "effect_size": 0.4,
           "summary": "Manufacturer: 'Zenith Medical' 40% of window, never seen in reference",
           "new_values": ["Zenith Medical"]}]  # fmt: skip
INVERTED = [{"feature": "PhotometricInterpretation", "adjusted_p": 0.0, "effect_size": 0.9,
             "summary": "PhotometricInterpretation: 'MONOCHROME1' 90% of window, never seen "
                        "in reference", "new_values": ["MONOCHROME1"]}]  # fmt: skip
# Measures the page as Chromium lays it out: what sticks out of the text column, each
# table's own overflow, and the text a reader sees (innerText).
MEASURE = """<script>
const body = document.body.getBoundingClientRect();
const out = {bodyWidth: body.width, wider: [], tables: []};
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width && (r.right > body.right + 0.5 || r.left < body.left - 0.5))
    out.wider.push(el.tagName + ' ' + Math.round(r.width) + ': ' + el.innerText.slice(0, 60));
}
for (const t of document.querySelectorAll('table'))
  out.tables.push([t.scrollWidth, t.clientWidth, t.getBoundingClientRect().width]);
out.text = document.body.innerText;
const pre = document.createElement('pre'); pre.id = 'measured';
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium (Debian package) is required"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--hide-scrollbars", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def measure(html_file: Path, tmp_path: Path) -> dict:
    """Chromium's layout of the page at A4 width: overflowing elements, tables, visible text."""
    probe = tmp_path / f"measure-{html_file.stem}.html"
    probe.write_text(html_file.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _chromium("--dump-dom", f"--window-size={A4_PX[0]},{A4_PX[1]}", probe.as_uri(),
                    profile=tmp_path / "profile-measure").stdout  # fmt: skip
    found = re.search(r"<pre id=\"measured\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text.replace("&quot;", '"'))


def first_page(html_file: Path, name: str, tmp_path: Path) -> np.ndarray:
    """The screenshot of the page at A4 width, cut to its first A4 page; kept as an artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    full = tmp_path / f"{name}-full.png"
    _chromium(f"--screenshot={full}", f"--window-size={A4_PX[0]},{A4_PX[1] * 3}",
              html_file.as_uri(), profile=tmp_path / f"profile-{name}")  # fmt: skip
    image = Image.open(full).convert("RGB")
    image.crop((0, 0, A4_PX[0], A4_PX[1])).save(ARTIFACTS / f"{name}-page1.png")
    image.save(ARTIFACTS / f"{name}-pages1-3.png")
    return np.asarray(image.crop((0, 0, A4_PX[0], A4_PX[1])))


def _pdf_pages(data: bytes) -> tuple[int, list[tuple[float, float]]]:
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    boxes = [(float(w), float(h)) for w, h in
             re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)]  # fmt: skip
    return pages, boxes


def _amber_pixels(page: np.ndarray) -> int:
    return int((np.abs(page.astype(int) - AMBER).sum(axis=2) < 40).sum())


def _observe(conn, stratum: str, features, hours: float, signal: str = "acquisition"):
    kind, value = stratum.split("=", 1)
    end = T0 + timedelta(hours=hours)
    return lifecycle.observe(conn, model=MODEL, stratum_kind=kind, stratum_value=value,
                             signal=signal, firing=True, window_end=end, actor="radwatch-detect",
                             policy=NOW, enrich=lambda: {"onset": end},
                             details={"window_start": (end - timedelta(hours=4)).isoformat(),
                                      "window_end": end.isoformat(),
                                      "top_features": features})  # fmt: skip


def _performance(conn) -> None:
    """Two windows of 500 studies, four subgroups, three metrics each (what the performance
    watch stores): ACME X1's specificity 0.74 against ≥ 0.92 elsewhere, flagged."""
    strata = [("all", "all", 0.93), ("site", "north-general", 0.94),
              ("site", "south-clinic", 0.92), ("scanner", "ACME X1", 0.74)]  # fmt: skip
    for index in (1, 2):
        start = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(days=3 * index)
        for kind, value, spec in strata:
            for metric, v in (("sensitivity", 0.88), ("specificity", spec), ("auroc", 0.91)):
                worse = value == "ACME X1" and metric == "specificity"
                conn.execute(
                    """INSERT INTO performance_results (model_name, finding, window_kind,
                           window_index, window_start, window_end, stratum_kind, stratum_value,
                           metric, status, n_inferences, n_labelled, n_positive, realised,
                           realised_lower, realised_upper, realised_n, degraded,
                           subgroup_worse, details)
                       VALUES (%s, 'nodule', 'count:500', %s, %s, %s, %s, %s, %s, 'ok', 500,
                               420, 80, %s, %s, %s, 420, %s, %s, %s)""",
                    (MODEL, index, start, start + timedelta(days=3), kind, value, metric, v,
                     v - 0.05, min(1.0, v + 0.04), worse and index == 2, worse,
                     Jsonb({"complete": True})),
                )  # fmt: skip


def fill(url: str) -> dict[str, list[int]]:
    insert_stream(url, 1400, seed=5, onset=1000)
    plan = default_plan(MODEL).model_copy(update={"version": "2026-11"})
    with db.connect(url, autocommit=True) as conn:
        reference.build(conn, model=MODEL, first=600, actor="qa.lead",
                        config=replace(CONFIG, online=False))  # fmt: skip
        store.approve(conn, plan, by="qa.lead", note="agreed at the AI committee")
        assert _observe(conn, "scanner=ZR-7", VENDOR, 0)
        assert _observe(conn, "site=south-clinic", VENDOR, 1)
        assert _observe(conn, "all=all", INVERTED, 30, signal="scores")
        vendor, inverted = incidents.list_incidents(conn)
        assert inverted.stop_rule == "integration-fault"
        incidents.acknowledge(conn, vendor.id, by="qa.lead", note="Zenith scanner installed")
        incidents.resolve(conn, vendor.id, by="qa.lead", note="reference rebuilt with Zenith")
        governance.decide(conn, inverted.id, decision="suspend", by="ai.governance",
                          reason="PACS router sends MONOCHROME1")  # fmt: skip
        # An alert of another period: its data (2025) and its life (opened and resolved in
        # 2025) both lie outside November 2026.
        old = datetime(2025, 3, 1, tzinfo=UTC)
        assert lifecycle.observe(conn, model=MODEL, stratum_kind="site",
                                 stratum_value="east-imaging", signal="image_quality",
                                 firing=True, window_end=old, actor="radwatch-detect",
                                 policy=NOW, enrich=lambda: {"onset": old},
                                 details={"window_end": old.isoformat()})  # fmt: skip
        [stale] = [a for a in lifecycle.list_alerts(conn, model=MODEL)
                   if a.stratum_value == "east-imaging"]  # fmt: skip
        lifecycle.resolve(conn, stale.id, by="qa.lead", note="old")
        conn.execute(
            """UPDATE alerts SET opened_at = %s, resolved_at = %s, first_window_end = %s,
                        last_window_end = %s WHERE id = %s""",
            (old, old, old, old, stale.id),
        )
        conn.execute("UPDATE incidents SET opened_at = %s, resolved_at = %s, onset = %s "
                     "WHERE id = (SELECT incident_id FROM alerts WHERE id = %s)",
                     (old, old, old, stale.id))  # fmt: skip
        _performance(conn)
        ids = {"incidents": [vendor.id, inverted.id], "stale_alert": [stale.id],
               "alerts": [a.id for a in lifecycle.list_alerts(conn, model=MODEL)
                          if a.id != stale.id]}  # fmt: skip
    return ids


def check_document(html_file: Path, ids: dict[str, list[int]], tmp_path: Path) -> dict:
    seen = measure(html_file, tmp_path)
    text = seen["text"]
    # Human words only: no table name (one-word names like "alerts" are English words, so
    # those only as a heading or label of their own), no JSON object or list.
    assert not sorted(t for t in TABLES if "_" in t and t in text), "a raw table name is shown"
    assert not [line for line in text.splitlines() if line.strip() in TABLES]
    assert '{"' not in text and "['" not in text and '": ' not in text
    # Every table inside the page's text width, nothing sticking out of it.
    assert abs(seen["bodyWidth"] - TEXT_WIDTH_PX) < 2, seen["bodyWidth"]
    assert seen["tables"] and all(
        scroll <= client + 1 and width <= TEXT_WIDTH_PX + 1
        for scroll, client, width in seen["tables"]
    ), seen["tables"]
    assert not seen["wider"], seen["wider"][:5]
    # Every incident and alert of the period, and not the one of another period.
    for i in ids["incidents"]:
        assert f"Incident #{i} — " in text, i
    for a in ids["alerts"]:
        assert re.search(rf"#{a} ", text), a
    assert not re.search(rf"#{ids['stale_alert'][0]}\b", text)
    assert "Image quality measured" not in text  # the stale alert's signal
    return seen


def test_compliance_report_is_a_document(settings, database_url, tmp_path):
    ids = fill(database_url)
    html_file, pdf_file = tmp_path / "compliance.html", tmp_path / "compliance.pdf"
    for out in (html_file, pdf_file):
        said = run_radwatch(settings, "compliance-report", "--model", MODEL, "--period",
                            PERIOD, "--out", str(out))  # fmt: skip
        assert "2 incidents, 3 alerts" in said.stdout and "0 of" in said.stdout, said.stdout
    seen = check_document(html_file, ids, tmp_path)
    text = seen["text"]
    # The summary page: period, versions and sites, the plan and its approval, states,
    # subgroups with intervals and the outlier flagged, the audit trail as it is.
    summary = text.split("1. Monitoring plan")[0]
    assert "2026-11-01 to 2026-11-30 (UTC, whole days)" in summary
    assert "1.4.2 (1,400 studies)" in summary
    assert "east-imaging, north-general, south-clinic" in summary
    assert "version 2026-11, approved by qa.lead on" in summary
    # By state: the vendor incident resolved with its two alerts; the inverted-image one
    # decided (suspend) but still open, with its alert.
    for state, n_incidents, n_alerts in (("Open", 1, 1), ("Acknowledged", 0, 0),
                                         ("Resolved", 1, 2), ("All", 2, 3)):  # fmt: skip
        assert re.search(rf"{state}\s+{n_incidents}\s+{n_alerts}\n", summary), state
    assert re.search(
        r"Incident #\d+, Integration fault at whole model, open since .* UTC; use "
        r"suspended by ai.governance on ",
        summary,
    )
    assert "scanner (make and model) = ACME X1" in summary and "0.74\n(0.69–0.78)" in summary
    assert "worse than the other strata; degraded in 1 of 2 windows" in summary
    assert "Audit trail: hash chain intact; 0 of" in summary and "rows under a signed " \
        "checkpoint" in summary and "Audit trail intact;" not in text  # fmt: skip
    # The workflow (who, when, note) and the decisions, in words.
    for words in ("Zenith scanner installed", "reference rebuilt with Zenith",
                  "Decided: suspend use", "PACS router sends MONOCHROME1",
                  "Plan version 2026-11 approved", "agreed at the AI committee",
                  "Kolmogorov–Smirnov test", "Reference #1 (in use)", "Sign-off",
                  "Appendix A. Every fitted detector"):  # fmt: skip
        assert words in text, words
    page = first_page(html_file, "compliance", tmp_path)
    grey = page.mean(axis=2)
    assert len(np.unique(grey)) > 32 and (grey < 200).mean() > 0.02  # drawn, not blank
    assert _amber_pixels(page) > 1000  # the unsealed trail's warning is on the first page

    # The PDF: A4 pages, several (the sections start on new pages).
    data = pdf_file.read_bytes()
    pages, boxes = _pdf_pages(data)
    assert data.startswith(b"%PDF-") and pages >= 5 and len(boxes) >= pages, pages
    assert all(abs(w - 595.3) < 1.5 and abs(h - 841.9) < 1.5 for w, h in boxes), boxes

    # Sealed: the statement counts the rows under the checkpoint, and the warning is gone.
    run_radwatch(settings, "audit", "checkpoint")
    with db.connect(database_url) as conn:
        v = verify_configured(conn, settings)
        assert v.ok and v.checkpoints == 1
        document = compliance.load(conn, MODEL, datetime(2026, 11, 1, tzinfo=UTC),
                                   datetime(2026, 12, 1, tzinfo=UTC), v)  # fmt: skip
    sealed = tmp_path / "sealed.html"
    compliance.write(document, sealed)
    seen = check_document(sealed, ids, tmp_path)
    assert (f"Audit trail intact; {v.checkpointed_through:,} of {v.rows:,} rows under a "
            "signed checkpoint") in seen["text"]  # fmt: skip
    assert "0 of" not in seen["text"].split("Incidents and alerts")[0]
    assert _amber_pixels(first_page(sealed, "compliance-sealed", tmp_path)) == 0


def test_a_long_alert_list_says_what_it_leaves_out():
    """More alerts than the document lists one by one: it says how many, and where the rest is."""
    at = datetime(2026, 11, 3, tzinfo=UTC)
    alerts = tuple(AlertRow(i, "scores", "all", "all", "resolved", at, at, at, None, None, None,
                            None, "radwatch", at, None) for i in range(1, MAX_ALERTS + 6))  # fmt: skip

    class Data:  # only what the section reads
        start, end, incidents = at, at + timedelta(days=1), ()

    Data.alerts = alerts  # type: ignore[attr-defined]
    section = workflow_section(Data)  # type: ignore[arg-type]
    assert f"Showing {MAX_ALERTS} of {MAX_ALERTS + 5} alerts" in section
    assert "radwatch audit export --format csv --from 2026-11-03T00:00:00Z" in section
    assert f"<b>#{MAX_ALERTS}</b>" in section and f"<b>#{MAX_ALERTS + 1}</b>" not in section
