"""An HTML report printed to PDF by headless Chromium: what `radwatch plan render FILE.pdf` uses.

The last step of a report's flow (load → render → write), beside monitor/reports/writing.py:
the self-contained HTML page is printed by the `chromium` command (the Debian package the
tests also screenshot with) in its own throwaway profile, with no network (the page needs
none) and with the headings as the PDF's outline. The page sets its own paper (`@page`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from monitor.errors import RadwatchError

PRINT_TIMEOUT_S = 120


class PrintError(RadwatchError):
    """The document cannot be written as asked: a file type other than HTML or PDF, or no
    PDF (Chromium not installed, failed, or wrote nothing)."""


def print_pdf(document: str, out: Path) -> None:
    """Print a self-contained HTML document to `out` as PDF (paper size from its `@page`)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise PrintError("a PDF needs Chromium (the `chromium` command); write .html "
                         "instead and print it from a browser")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="radwatch-print-") as tmp:
        page = Path(tmp) / "document.html"
        page.write_text(document, encoding="utf-8")
        pdf = Path(tmp) / "document.pdf"
        try:
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={Path(tmp) / 'profile'}",
                 "--no-pdf-header-footer", "--generate-pdf-document-outline",
                 f"--print-to-pdf={pdf}", page.as_uri()],
                check=True, capture_output=True, timeout=PRINT_TIMEOUT_S,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise PrintError(f"Chromium could not print the document ({type(exc).__name__})"
                             ) from exc  # fmt: skip
        if not pdf.exists() or pdf.stat().st_size == 0:
            raise PrintError("Chromium wrote no PDF")
        shutil.copyfile(pdf, out)
