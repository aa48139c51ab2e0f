"""The collectors' exception family and the dead-letter reason codes its errors carry.

Sits below everything in collectors/ (it imports no collectors module): every exception class
defined in collectors/ derives from `CollectorError` (tests/collectors/test_collector_errors.py
checks it), so a caller can catch all of the input edge's own errors at once. Each keeps the
builtin or library base it had (an InvalidEvent is still a ValueError, BrokerUnavailable
still a KafkaError), so every existing `except` behaves as before.

`Reason` is here, not in collectors.events, because both the record path (events,
bounded_json) and the image path (images.resolver, images.dicom_reader) raise with it: kept
below them all, no module imports another just for its errors. Every error carries a
dead-letter `reason` code and a one-line message that never repeats the URI or an event's
values (they may carry identifiers, DESIGN.md §5).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable dead-letter reason codes (stable: dashboards and tests use them)."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    SCORE_NOT_FINITE = "score_not_finite"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    NUL_CHARACTER = "nul_character"
    # Decoding limits (ParseLimits): each has its own code.
    TOO_DEEP = "too_deep"
    NUMBER_TOO_LARGE = "number_too_large"
    STRING_TOO_LONG = "string_too_long"
    TOO_MANY_KEYS = "too_many_keys"
    BAD_UNICODE = "bad_unicode"
    # An unexpected exception while handling this one record (class name in the message).
    INTERNAL_ERROR = "internal_error"
    STORAGE_REJECTED = "storage_rejected"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    # Image-path reasons, decided by the image resolver and DICOM reader.
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_HTTP_ERROR = "image_http_error"
    IMAGE_TIMEOUT = "image_timeout"
    DICOM_TRUNCATED = "dicom_truncated"
    DICOM_NO_PIXELS = "dicom_no_pixels"
    DICOM_UNSUPPORTED_SYNTAX = "dicom_unsupported_syntax"
    DICOM_BAD_DIMENSIONS = "dicom_bad_dimensions"
    DICOM_INVALID = "dicom_invalid"  # not a DICOM/PNG/NPY object, or undecodable pixels
    # The fenced fetcher and the decoding limits (issue 13): each refusal its own code.
    IMAGE_FORBIDDEN = "image_forbidden"  # URI outside the roots / listed URLs, or a redirect
    DICOM_TOO_LARGE_INFLATED = "dicom_too_large_inflated"  # deflated dataset over the cap
    DICOM_TOO_MANY_PIXELS = "dicom_too_many_pixels"  # rows×columns×frames×samples over the cap
    IMAGE_DECODE_TIMEOUT = "image_decode_timeout"  # decoding ran past its time budget
    # DICOM SR results (collectors.dicom_results, radwatch dicom-listen): each refusal its own code.
    SR_INVALID = "sr_invalid"  # not a readable DICOM SR, or no TID 1500 measurement report
    SR_NO_FINDINGS = "sr_no_findings"  # no measurement group names a finding it can score
    SR_NO_MODEL = "sr_no_model"  # no algorithm id, device observer, or manufacturer to name it
    SR_NO_SOURCE_IMAGES = "sr_no_source_images"  # references no image (group or evidence)
    SR_SOURCES_MISSING = "sr_sources_missing"  # its images never arrived within the wait


class CollectorError(Exception):
    """Something the input edge refuses or cannot do, raised on purpose with a reason."""


# -- records (collectors.events, collectors.bounded_json) ---------------------------------------


class InvalidEvent(CollectorError, ValueError):
    """Raised inside the parser; turned into a `Rejection` at its boundary."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- images (collectors.images: the fetcher's sources and the DICOM reader) ----------------------


class ImageError(CollectorError):
    """An image could not be turned into pixels; `reason` is the dead-letter code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        # Errors cross process boundaries (decode workers): rebuild from reason and message.
        return (type(self), (self.reason, self.message))


class ResolveError(ImageError):
    """The bytes could not be fetched (file, DICOMweb, data: URI).

    `parkable`: the failure is the PACS's, not the study's (a timeout, a 5xx, a refused
    connection, refused credentials): the image stage parks the study for a later fetch
    instead of dead-lettering it.
    """

    def __init__(self, reason: Reason, message: str, *, parkable: bool = False) -> None:
        super().__init__(reason, message)
        self.parkable = parkable

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        # Pickled across decode worker processes and DataLoader workers: keep the keyword.
        return (_resolve_error, (self.reason, self.message, self.parkable))


def _resolve_error(reason: Reason, message: str, parkable: bool) -> ResolveError:
    return ResolveError(reason, message, parkable=parkable)


class DecodeError(ImageError):
    """The bytes were fetched but are not a decodable image (or break a decoding limit)."""
