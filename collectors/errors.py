"""The image path's exception family: what the fetcher and the DICOM reader raise.

Shared by collectors.images.resolver (fetching) and collectors.images.dicom_reader (decoding), so
neither imports the other for its errors. Every error carries a dead-letter `reason` code and
a one-line message that never repeats the URI (it may carry identifiers, DESIGN.md §5).
"""

from __future__ import annotations

from collectors.events import Reason


class ImageError(Exception):
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
