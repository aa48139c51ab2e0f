"""The detectors package's one exception family: every error raised in detectors/ is a
`DetectorError`.

Pure computation raises; monitor/ decides at its boundary (DESIGN.md §10): too little data
(`InsufficientDataError`) → an `insufficient_data` result, anything else → `error`, recorded
and logged with its cause. Sub-package errors that were `ValueError`s stay `ValueError`s too,
so existing `except` clauses catch what they caught.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Root of the detectors package's exceptions (one family per package, DESIGN.md §10)."""


class InsufficientDataError(DetectorError):
    """Too little data to fit or score; decided at the boundary as `insufficient_data`."""
