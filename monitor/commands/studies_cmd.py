"""`radwatch studies resolve PSEUDONYM --by WHO`: a study pseudonym back to its PACS identifiers.

The command edge of monitor/studies.py. Needs the pseudonym key the collectors use (never
generated here: without it the command refuses in one line), the database (the event date,
and the audit row), and the allow-listed PACS (RADWATCH_DICOMWEB_URLS and its auth settings)
unless `--candidates FILE` lists the studies to try. The identifier found is printed to
stdout only: never logged, never audited.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from monitor.commands.arguments import non_negative_int
from monitor.commands.output import add_json_flag, emit, key_values
from monitor.config import Settings

EXIT_OK, EXIT_NOT_FOUND = 0, 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "studies", help="turn a study pseudonym back into its accession / Study Instance UID",
        description="For an authorised user with the pseudonym key. Example: radwatch studies "
        "resolve 3f2a…9c --by dr.lee (asks the PACS in RADWATCH_DICOMWEB_URLS); radwatch "
        "studies resolve 3f2a…9c --by dr.lee --candidates worklist.txt",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    resolve = actions.add_parser(
        "resolve", help="find the study a pseudonym names (audited; printed, never logged)",
        description="Pseudonyms are keyed hashes and cannot be inverted: the PACS is asked for "
        "the studies around the study's event date and each is pseudonymised with the key "
        "until one matches. Exit 1 when none does.",
    )  # fmt: skip
    resolve.add_argument("pseudonym", metavar="PSEUDONYM",
                         help="a study or accession pseudonym, as alerts and reports show it")  # fmt: skip
    resolve.add_argument("--by", required=True, help="who asks (recorded in the audit trail)")
    resolve.add_argument("--candidates", type=Path, metavar="FILE",
                         help="a worklist export, one accession or Study Instance UID per line, "
                         "tried instead of asking the PACS (offline use)")  # fmt: skip
    resolve.add_argument("--days", type=non_negative_int, default=1,
                         help="search the PACS this many days either side of the event dates "
                         "(default 1)")  # fmt: skip
    add_json_flag(resolve)
    resolve.set_defaults(handler=_resolve)


def _resolve(args: argparse.Namespace, settings: Settings) -> int:
    from collectors.pseudonym import Pseudonymiser
    from monitor.errors import UsageError
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db
    from monitor.studies import (
        StudyLookupError,
        audit_lookup,
        candidates_from_lines,
        event_dates,
        match,
        search_window,
    )

    if not args.by.strip():
        raise UsageError("--by must name who asks (it is recorded in the audit trail)")
    key = _key(settings)
    lines = _read_candidates(args.candidates) if args.candidates else None
    if lines is None and not settings.dicomweb_base_urls():
        raise UsageError("no PACS to ask: set RADWATCH_DICOMWEB_URLS or give --candidates FILE")
    url = resolve_endpoints(settings, read_only=True, broker=False).database_url
    with db.connect(url) as conn:
        if lines is not None:
            source, candidates = "candidates", _Counted(candidates_from_lines(lines))
        else:
            dates = event_dates(conn, args.pseudonym)
            if dates is None:
                raise UsageError("no stored inference carries that pseudonym, so its date is "
                                 "unknown; give --candidates FILE")  # fmt: skip
            source = "dicomweb"
            candidates = _Counted(_from_pacs(settings, search_window(dates, args.days)))
        try:
            found = match(args.pseudonym, Pseudonymiser(key), candidates)
        except StudyLookupError as exc:
            raise UsageError(str(exc)) from exc
        audit_lookup(conn, actor=args.by.strip(), pseudonym=args.pseudonym, source=source,
               candidates=candidates.seen, found=found)  # fmt: skip
    if found is None:
        what = "the listed candidates" if lines is not None else "the PACS's studies of those dates"
        print(f"radwatch: none of {what} ({candidates.seen}) has that pseudonym under this key",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOT_FOUND
    emit(found.as_dict(), args.json, indent=2, render=lambda d: key_values(
        [("StudyInstanceUID", d["study_instance_uid"]), ("AccessionNumber", d["accession_number"]),
         ("matched", d["matched"])]))  # fmt: skip
    return EXIT_OK


def _key(settings: Settings) -> bytes:
    """The configured pseudonym key, or the one generated into the data dir; never a new one
    (a fresh key would match nothing, and silently)."""
    from monitor.errors import UsageError

    if not settings.pseudonym_key and not (settings.data_dir / "pseudonym.key").exists():
        raise UsageError("no pseudonym key: set RADWATCH_PSEUDONYM_KEY (or _FILE) to the key the "
                         "collectors use")  # fmt: skip
    return settings.key_bytes()


def _read_candidates(path: Path) -> list[str]:
    from monitor.errors import UsageError

    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --candidates {path}: "
                         f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from exc  # fmt: skip


def _from_pacs(settings: Settings, window: tuple) -> Iterator:
    from collectors.images.byte_budget import ByteBudget
    from collectors.images.dicomweb import DicomWebClient
    from monitor.ingest.image_stage import image_fetcher
    from monitor.studies import qido_candidates

    # The image stage's fenced client and settings (allow-list, auth, TLS, deadline, size cap).
    policy = image_fetcher(settings).policy
    client = DicomWebClient(policy.base_urls, policy.auth, timeout_s=policy.timeout_s,
                            max_bytes=policy.max_bytes, tries=policy.tries)  # fmt: skip
    yield from qido_candidates(client, settings.dicomweb_base_urls(), window[0], window[1],
                               ByteBudget(policy.inflight_bytes))  # fmt: skip


class _Counted:
    """Candidates counted as they are tried (the audit row says how many were)."""

    def __init__(self, items: Iterable) -> None:
        self._items, self.seen = iter(items), 0

    def __iter__(self) -> Iterator:
        for item in self._items:
            self.seen += 1
            yield item
