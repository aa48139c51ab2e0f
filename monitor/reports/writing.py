"""A model's report written to a file: what `radwatch report` and `radwatch demo` share.

The last step of the model report's flow (monitor/reports/model_report.py load →
monitor/reports/report_document.py render → write), with the
pseudonym key and the fenced image fetcher (for the atypical thumbnails) from the settings.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from monitor.config import Settings


def write_report(database_url: str, settings: Settings, model: str, out: Path, *,
                 start: datetime | None = None, end: datetime | None = None,
                 include_evidently: bool = True) -> Path:  # fmt: skip
    """Render `model`'s report over [start, end) to `out` (its folder created if missing)."""
    from monitor.ingest.image_stage import image_fetcher
    from monitor.reports import model_report, report_document

    data = model_report.load(database_url, model, start, end)
    document = report_document.render(data, pseudonym_key=settings.key_bytes(),
                                   include_evidently=include_evidently,
                                   images=image_fetcher(settings))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out
