"""`radwatch plan render`: the plan in force as a document, HTML and A4 PDF, looked at in Chromium.

The database holds a seeded stream (seed 5, 1,400 studies, drift_streams.insert_stream, no
shift). The default plan is rendered; then a reference is built (first 600 studies) and a plan
that changes the intended use, budget (180 days) and review cadence (30 days) is approved and
rendered. Each HTML file is
screenshotted by headless Chromium (the Debian package, as tests/monitor/reports/
test_report.py does) and cut to its first A4 page; the PNGs stay under test-artifacts/
(gitignored) for a person to look at. The PDFs are checked as files (A4 pages, the section
outline Chromium writes from the headings): no PDF rasteriser is installed here.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from conftest import REPO, run_radwatch
from drift_streams import CONFIG, MODEL, insert_stream
from PIL import Image
from test_report import ARTIFACTS, screenshot

from detectors.detectability import Detectability, Row, Setting
from detectors.false_alarm_budget import FalseAlarmBudget, Volume
from monitor.drift import reference
from monitor.plan import store
from monitor.plan.document import SIGNALS, default_plan, dump, parse
from monitor.reports import plan_document
from monitor.reports.plan_regulations import COVERS, SIGNAL_NAMES, SOURCES
from monitor.reports.plan_summary import ShownPlan

A4_PX = (794, 1123)  # 210 × 297 mm at 96 px/inch, Chromium's CSS pixels
BOTTOM_MARGIN_PX = 68  # the @page bottom margin, 18 mm: nothing prints there
AMBER = np.array([180, 83, 9])  # the warning box's border (#b45309)
SECTIONS = ["How this plan maps to the regulations",
            *[f"{i}. {title}" for i, (title, _) in enumerate(COVERS.values(), start=1)]]  # fmt: skip
TABLES = set(re.findall(r"CREATE TABLE (\w+)", "".join(
    p.read_text() for p in (REPO / "monitor/store/migrations").glob("*.sql"))))  # fmt: skip


class _Cells(HTMLParser):
    """The text of every table cell, and the visible text (scripts and styles excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("td", "th"):
            self._cell = []
        self._hidden += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None
        self._hidden -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)
            if self._cell is not None:
                self._cell.append(data)


def _parsed(document: str) -> _Cells:
    parser = _Cells()
    parser.feed(document)
    return parser


def _is_json_structure(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


def _pdf_facts(data: bytes) -> tuple[int, list[tuple[float, float]], list[str]]:
    """(pages, page sizes in points, outline titles) of a PDF Chromium (Skia) wrote."""
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    boxes = [(float(w), float(h)) for w, h in
             re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)]  # fmt: skip
    titles = []
    for raw in re.findall(rb"/Title\s*(\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f]*>)", data):
        if raw.startswith(b"<"):
            b = bytes.fromhex(raw[1:-1].decode())
            titles.append(
                b[2:].decode("utf-16-be") if b[:2] == b"\xfe\xff" else b.decode("latin-1")
            )
        else:
            titles.append(re.sub(rb"\\(.)", rb"\1", raw[1:-1]).decode("latin-1"))
    return pages, boxes, titles


def _first_page(html_file: Path, name: str, tmp_path: Path) -> np.ndarray:
    """Chromium's screenshot of the document, cut to its first A4 page (the page's body is
    180 mm wide and centred, with the print margins as padding, so the cut is the page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    full = tmp_path / f"{name}-full.png"
    screenshot(html_file, full, tmp_path / f"profile-{name}")
    image = Image.open(full).convert("RGB")
    left = (image.width - A4_PX[0]) // 2
    page = image.crop((left, 0, left + A4_PX[0], A4_PX[1]))
    page.paste((255, 255, 255), (0, A4_PX[1] - BOTTOM_MARGIN_PX, A4_PX[0], A4_PX[1]))
    png = ARTIFACTS / f"{name}-page1.png"
    page.save(png)
    return np.asarray(page)


def _amber_pixels(page: np.ndarray) -> int:
    return int((np.abs(page.astype(int) - AMBER).sum(axis=2) < 40).sum())


def _check_document(document: str, model: str) -> _Cells:
    parsed = _parsed(document)
    text = " ".join(parsed.text)
    for title in SECTIONS:
        assert f"{title}</h2>" in document, title
    # The regulatory mapping: every section says what it covers, with the sources listed.
    for topic in ("Art. 72(1)–(3) (post-market monitoring system and plan)",
                  "Art. 26(5) (deployer monitors, informs, suspends use)", "Art. 12 / 19 (logs)",
                  "Modification Protocol — data management practices, performance evaluation",
                  "update procedures; version control", "defined stop rules"):  # fmt: skip
        assert topic in text, topic
    assert document.count("<p class='covers'>Covers: ") == len(COVERS)
    assert all(source in text for source in SOURCES)
    # Every clause is numbered in order, by the name incidents cite.
    for i, clause in enumerate(default_plan(model).clauses(), start=1):
        assert f"<b>{i} · " in document and f">{clause.replace('.', '.<wbr>')}<" in document, clause
    assert parsed.cells and not [c for c in parsed.cells if _is_json_structure(c) or '":' in c]
    assert not [t for t in TABLES if "_" in t and t in text], "a raw table name is shown"
    return parsed


def test_default_and_approved_plans_render_to_html_and_pdf(database_url, settings, tmp_path):
    insert_stream(database_url, 1400, seed=5, onset=None)

    # The default plan: flagged as not approved, in a warning box, never as in force.
    html_file, pdf_file = tmp_path / "default.html", tmp_path / "default.pdf"
    for out in (html_file, pdf_file):
        said = run_radwatch(settings, "plan", "render", "--model", MODEL, "--out", str(out))
        assert "default plan, not approved" in said.stdout, said.stdout
    document = html_file.read_text()
    parsed = _check_document(document, MODEL)
    assert "<div class='box warning'><b>Default plan — not approved.</b>" in document
    assert "class='box approved'" not in document
    assert "none scheduled: the plan is not approved" in " ".join(parsed.text)
    assert "No approval recorded" in document and "<details>" not in document
    # What it cannot see: with no reference yet, the check cannot run, and the section says so.
    assert "no frozen drift reference" in document
    assert f"Run <code>radwatch plan check --model {MODEL}</code>" in document
    default_page = _first_page(html_file, "plan-default", tmp_path)

    # An approved plan: who approved it and when, the next review, the diff in the history.
    plan = parse(dump(default_plan(MODEL)).replace("version: default", "version: 2026-12")
                 .replace("As stated in the manufacturer's instructions for use.",
                          "Flags suspected lung nodules on adult chest radiographs (PA/AP) "
                          "for a radiologist's second look; never reported without one.")
                 .replace("days: 90.0", "days: 180.0")
                 .replace("cadence_days: 90", "cadence_days: 30"), model=MODEL)  # fmt: skip
    with psycopg.connect(database_url) as conn:
        info = reference.build(conn, model=MODEL, first=600, actor="test",
                               config=replace(CONFIG, online=False))  # fmt: skip
        store.approve(conn, plan, by="qa.lead", note="agreed at the AI committee")
        approved_at = store.in_force(conn, MODEL).approved_at
    assert approved_at is not None
    # In-process this time: the detectability check (seconds of resampling) runs once for both.
    html_file, pdf_file = tmp_path / "approved.html", tmp_path / "approved.pdf"
    with psycopg.connect(database_url) as conn:
        doc = plan_document.load(conn, MODEL, settings)
    for out in (html_file, pdf_file):
        plan_document.write(doc, out)
    document = html_file.read_text()
    parsed = _check_document(document, MODEL)
    text = " ".join(parsed.text)
    assert "class='box warning'><b>Default plan" not in document
    assert f"since {approved_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, approved by" in text
    assert f"{approved_at + timedelta(days=30):%Y-%m-%d}" in text  # the next review
    assert "At most 1 false incident(s) per 180 days" in text
    assert "Flags suspected lung nodules" in text
    assert f"In use: reference #{info.id}, 600 studies, built" in text
    # What it cannot see: the check ran on the reference; the strata without a detector of
    # their own (the reference fitted site and scanner only) are listed as not watched.
    assert "radwatch plan check" not in document and "<th>Smallest shift</th>" in document
    assert re.search(
        r"<td>scores</td><td>whole model</td><td>100%</td><td>\d+</td>"
        r"<td>[\d.]+ SD \(median → p\d+\)</td>",
        document,
    ), "no sized whole-model row"
    assert "sex = F, sex = M — every signal: the reference" in document
    [details] = re.findall(r"<details>.*?</details>", document, re.S)
    assert "Changes in version 2026-12 against default" in details
    assert "+  days: 180.0" in details and "agreed at the AI committee" in text
    approved_page = _first_page(html_file, "plan-approved", tmp_path)

    # Both first pages are drawn (text and tables), and only the default one carries the
    # amber warning box: a reader sees at a glance that the default is not approved.
    for page in (default_page, approved_page):
        grey = page.mean(axis=2)
        assert len(np.unique(grey)) > 32 and (grey < 200).mean() > 0.02
    assert _amber_pixels(default_page) > 1000 and _amber_pixels(approved_page) == 0

    # The PDFs: A4 pages, the sections in the outline, the plan's title.
    for name, version in (("default", "default"), ("approved", "2026-12")):
        data = (tmp_path / f"{name}.pdf").read_bytes()
        assert data.startswith(b"%PDF-")
        pages, boxes, titles = _pdf_facts(data)
        assert pages >= 3 and len(boxes) >= pages
        assert all(abs(w - 595.3) < 1.5 and abs(h - 841.9) < 1.5 for w, h in boxes), boxes
        assert [t for t in titles if t in SECTIONS] == SECTIONS, titles
        assert f"Post-market monitoring plan: {MODEL} {version}" in titles


def test_what_the_plan_cannot_see_is_a_table_of_words_and_numbers():
    """Section 7 from a detectability result (monitor/plan/check.py's type): the strata too
    small to watch are named in a warning, each row is words and numbers, never JSON; and
    every signal a plan can name has a reader's description."""
    assert set(SIGNAL_NAMES) == set(SIGNALS)
    setting = Setting(window=100, max_span_days=7.0, studies_per_day=2900.0, alpha=0.0291,
                      persistence=2)  # fmt: skip

    def row(kind: str, value: str, share: float, shift: float | None, reason: str = "") -> Row:
        return Row(signal="scores", stratum_kind=kind, stratum_value=value, share=share,
                   per_window=100 * share, per_day=2900 * share, watchable=shift is not None,
                   reason=reason, feature="nodule", min_shift_sd=shift, within_days=7.0,
                   median_to_percentile=None if shift is None else 62.0,
                   alpha=0.0291, test_alpha=0.01, persistence=2, power_needed=0.2)  # fmt: skip

    found = Detectability(
        model=MODEL, plan_version="default", reference_id=1,
        volume=Volume(2900.0, 2000.0, "400 studies over 0.14 days"),
        budget=FalseAlarmBudget(), setting=setting,
        rows=(row("all", "all", 1.0, 0.31), row("site", "north-general", 0.52, 0.55),
              row("site", "east-imaging", 0.24, None, "≈24 studies a window, below 30")),
        notes=("the volume is assumed",),
    )  # fmt: skip
    document = plan_document.render(_unsaved_document(detectability=found))
    parsed = _parsed(document)
    assert "(too small, not fitted, or no data; 1 of 3 signal × stratum pairs)" in document
    assert "<li>site = east-imaging — every signal: ≈24 studies a window, below 30</li>" in document
    assert "<td>scores</td><td>whole model</td><td>100%</td><td>100</td><td>0.31 SD " \
           "(median → p62)</td><td>leading feature nodule</td>" in document  # fmt: skip
    assert "<td>site = east-imaging</td>" not in document  # listed once, as not watched
    assert "2,900 studies a day" in document and "Method: Per signal" in document
    assert not [c for c in parsed.cells if _is_json_structure(c) or '":' in c]
    assert "radwatch plan check" not in document


def _unsaved_document(**kwargs) -> plan_document.PlanDocument:
    plan = default_plan(MODEL)
    derived: dict[str, Any] = {"drift_alpha": 0.05, "drift_open_after": 2, "performance_alpha": 0.05,
               "performance_open_after": 2, "cusum_arl0": 50400.0, "online_ert": None,
               "explanation": [], "derived_at": None}  # fmt: skip
    shown = ShownPlan(plan, None, None, "0" * 64, derived)
    return plan_document.PlanDocument(shown, None, (), generated_at=datetime.now(UTC), **kwargs)
