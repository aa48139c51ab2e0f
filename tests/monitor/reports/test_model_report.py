"""The model report read as a QA engineer reads it, rendered in headless Chromium.

The real engine runs on a seeded stream (tests/monitor/reports/report_stream.py: seed 5, 2,400
studies, 70% labelled; from study 1,400 a never-seen Zenith Medical scanner at south-clinic on
which the model's score says nothing): reference, drift scheduler, performance watch, one
incident acknowledged. The report of the whole period and `radwatch report --from --to` of a
later period are written, parsed and screenshotted (PNG under test-artifacts/, gitignored, for
a person to look at). Checks: the verdict comes first and names the scanner, the harm and the
action; every incident and alert of the period has its card (by id) and none outside it; each
figure's data spans at least 80% of its time axis; the cards list only significant evidence;
Evidently's columns are sorted drifted-first, its verdict explained, its classification report
named after the finding.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import psycopg
import report_stream
from conftest import run_radwatch
from drift_streams import MODEL
from PIL import Image
from test_report import ARTIFACTS, screenshot

from monitor.reports import writing

PERIOD = (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
MIN_SHARE = 0.8  # the data must fill at least this share of every figure's time axis


class _Page(HTMLParser):
    """What the checks read: the figures' extents, the cards' ids, the verdict, the text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.cards: dict[str, set[int]] = {}  # card id → the alert ids it shows
        self.order: list[str] = []  # ids of verdict, cards, figures in page order
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-axis-from" in a:
            self.figures[a["id"]] = a
        if "data-alerts" in a:
            self.cards[a["id"]] = {int(x) for x in a["data-alerts"].split()}
        if a.get("id"):
            self.order.append(a["id"])
        self._hidden += tag in ("style", "title", "svg", "iframe")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "title", "svg", "iframe")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _expected(url: str, start: datetime | None, end: datetime | None) -> tuple[set, set]:
    """Alerts whose event-time span (onset, else first firing window; to the last window)
    meets the period, and the incidents holding them: straight from the tables."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT id, incident_id FROM alerts WHERE model_name = %(m)s
                 AND (%(e)s::timestamptz IS NULL
                      OR coalesce(onset, first_window_end, opened_at) < %(e)s)
                 AND (%(s)s::timestamptz IS NULL
                      OR coalesce(last_window_end, first_window_end, opened_at) >= %(s)s)""",
            {"m": MODEL, "s": start, "e": end},
        ).fetchall()
    return {r[0] for r in rows}, {r[1] for r in rows if r[1] is not None}


def _check_figures(page: _Page) -> None:
    assert {"timeline", "performance"} <= set(page.figures), list(page.figures)
    for name, f in page.figures.items():
        axis = [datetime.fromisoformat(f[k]) for k in ("data-axis-from", "data-axis-to")]
        data = [datetime.fromisoformat(f[k]) for k in ("data-data-from", "data-data-to")]
        share = (data[1] - data[0]) / (axis[1] - axis[0])
        assert share >= MIN_SHARE, (name, share, f)
        assert axis[0] <= data[0] and data[1] <= axis[1], (name, f)


def _check_cards(page: _Page, alerts: set[int], incidents: set[int]) -> None:
    shown_incidents = {int(c.split("-")[1]) for c in page.cards if c.startswith("incident-")}
    assert shown_incidents == incidents, (shown_incidents, incidents)
    shown_alerts = set().union(*page.cards.values()) if page.cards else set()
    assert shown_alerts == alerts, (shown_alerts, alerts)


def test_model_report_reads_in_two_minutes(settings, database_url: str, tmp_path: Path) -> None:
    report_stream.build(database_url)
    alerts, incidents = _expected(database_url, None, None)
    assert len(incidents) == 2 and len(alerts) >= 5, (alerts, incidents)

    # The whole stored history, in process (the command's own function), Evidently included.
    out = writing.write_report(database_url, settings, MODEL, tmp_path / "report.html")
    html = out.read_text()
    page = _page(html)
    text = " ".join(" ".join(page.text).split())
    # The verdict is the first thing after the title: what, where, since when, harm, action.
    assert page.order[0] == "verdict", page.order[:3]
    verdict = text[text.index("Verdict.") : text.index("Incidents (")]
    for words in ("acquisition changed", "scanner Zenith Medical ZR-7", "since 2026-11-",
                  "The model is harmed there", "AUROC", "What to do:", "incident #"):  # fmt: skip
        assert words in verdict, (words, verdict)
    _check_cards(page, alerts, incidents)
    _check_figures(page)
    assert "strata" in page.figures  # small multiples of the strata that moved
    # Only significant contributors: every adjusted p a card shows is below the drift α.
    shown_p = [float(p) for p in re.findall(r"adj\. p (\S+?),", text)]
    assert shown_p and max(shown_p) < 0.05, shown_p
    # The subgroup table marks the harmed scanner, and not the scanners the model still reads.
    rows = re.findall(r"<tr class='(\w*)'><td class='l'>scanner</td><td class='l'>([^<]+)<", html)
    marked = {value for cls, value in rows if cls == "outlier"}
    assert marked == {"Zenith Medical ZR-7"}, rows
    # Evidently: drifted columns first, its verdict explained, the finding named.
    columns = re.findall(r"<tr class='(drifted|)'><td class='l'>(\w+)</td>",
                         html[html.index("id='evidently-columns'") :])  # fmt: skip
    flags = [cls == "drifted" for cls, _ in columns]
    assert flags and flags[0] and flags == sorted(flags, reverse=True), columns
    assert "Manufacturer" in [c for cls, c in columns if cls]
    assert "share" not in verdict and "at least 50% of the columns drift" in text
    assert "classification report for nodule" in text

    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "model-report.png"
    png.unlink(missing_ok=True)
    screenshot(out, png, tmp_path / "chromium-profile")
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert image.shape[:2] == (2000, 1280)
    # The verdict's red border (harm: #c53030) is drawn in the first screenful's top quarter.
    red = (abs(image[:500, :, 0] - 0xC5) < 12) & (abs(image[:500, :, 1] - 0x30) < 12) & (
        abs(image[:500, :, 2] - 0x30) < 12)  # fmt: skip
    assert red.sum() > 500, red.sum()

    # A later period through the command: every section keeps to it.
    start, end = PERIOD
    later = tmp_path / "later.html"
    run_radwatch(settings, "report", "--model", MODEL, "--from", start.isoformat(), "--to",
                 end.isoformat(), "--out", str(later), "--no-evidently", timeout=400)  # fmt: skip
    page = _page(later.read_text())
    alerts_in, incidents_in = _expected(database_url, start, end)
    assert incidents_in < incidents and alerts_in < alerts  # the period leaves some out
    _check_cards(page, alerts_in, incidents_in)
    _check_figures(page)
    for f in page.figures.values():
        assert datetime.fromisoformat(f["data-axis-from"]) == start
        assert datetime.fromisoformat(f["data-data-from"]) >= start
    png = ARTIFACTS / "model-report-period.png"
    png.unlink(missing_ok=True)
    screenshot(later, png, tmp_path / "chromium-profile-2")
    assert png.exists()
